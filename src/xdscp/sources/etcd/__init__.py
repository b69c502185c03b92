"""``kind: etcd`` and the etcd client and list+watch mirror the embedded registry's etcd store shares."""
