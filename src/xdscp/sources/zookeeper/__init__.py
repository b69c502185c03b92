"""``kind: zookeeper``: Dubbo providers registered in ZooKeeper."""
