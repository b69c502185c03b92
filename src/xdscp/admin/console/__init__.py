"""The web console under ``/ui/``: services and instances, proxies' sync state, sources, pushes."""
