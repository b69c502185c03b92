"""Registry sources: each watches one registry and feeds the Registry full snapshots or changes."""
