"""Local processes on loopback: a real Envoy and named HTTP upstreams (demo, tests, benchmarks)."""
