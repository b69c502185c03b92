"""Generated from protos/ by `make protos`: the Istio messages xdscp serves over MCP."""
