"""Versioned, pre-serialized resources per node group, and the watchers streams wait on."""
