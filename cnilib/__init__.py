"""cnilib: the runtime side of the CNI specification (0.3.0 to 1.1.0), like Go's libcni.

Layout follows libcni's split:
- `conf`: find, parse and validate network configuration lists;
- `types`: RuntimeConf, NetworkConfig(List), Result and friends;
- `invoke`: find and run one plugin binary (timeout, error decoding);
- `api`: CNIConfig runs a whole list (ADD/DEL/CHECK/GC/STATUS, negotiation, locking);
- `cache`: libcni's on-disk result cache (cniCacheV1);
- `delegate`: helpers for plugins that call other plugins;
- `cli`: the `cnitool` command.
Errors all derive from `errors.CNIError`. docs/cni-conformance.md maps every runtime
obligation of the spec to the test that proves it.
"""
