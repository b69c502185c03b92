"""Registry model -> Envoy resources (Cluster, ClusterLoadAssignment, Listener, RouteConfiguration)."""
