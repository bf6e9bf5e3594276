"""Tests of pyflanneld (`overlay/`) against a real etcd and real network namespaces."""
