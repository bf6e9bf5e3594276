"""pyflanneld: the node network daemon that does flanneld's job for the cross-node pod network."""
