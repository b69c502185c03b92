"""Worker processes: more cores for fan-out, one owner of the registry."""
