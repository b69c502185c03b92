"""The registry model every source produces and translation consumes."""
