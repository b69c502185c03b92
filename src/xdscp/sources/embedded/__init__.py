"""``kind: embedded``: xdscp as a service registry of its own (Nacos-compatible API, health checks)."""
