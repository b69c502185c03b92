"""xdscp: a Python xDS control plane that turns service registries into Envoy config."""

__version__ = "0.1.0"
