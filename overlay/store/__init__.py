"""The stores pyflanneld keeps its network config and subnet leases in.

`kv` holds the store-neutral data types, errors and the `KVStore` protocol; `etcd` is the
client of etcd's v3 JSON gateway that implements it. The daemon talks to the protocol only, so a
second store (the Kubernetes API, CROSS-NODE.md §4) or an in-memory fake can take its place.
"""
