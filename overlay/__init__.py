"""pyflanneld: the node network daemon (flanneld's job) for the cross-node half of the pod network."""
