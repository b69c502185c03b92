"""``kind: nacos``: a Nacos server followed over HTTP polling or gRPC subscriptions, and Nacos' wire protocol."""
