"""cri-shim's own CNI plugins, drop-in replacements for the reference binaries.

Types: ``loopback``, ``bridge``, ``host-local``, ``portmap``, ``flannel``, ``ptp``,
``tuning``, ``bandwidth``. Each module is ``load_conf`` + ``cmd_add`` / ``cmd_del`` /
``cmd_check`` (+ ``cmd_gc`` / ``cmd_status`` where SPEC 1.1 gives them meaning; bridge and ptp
pass both to their IPAM, GC after dropping stale masquerade rules,
:func:`netplugins.delegation.ipam_backed_spec`) and a ``PLUGIN``
spec; :mod:`netplugins.skel` turns CNI_* and stdin into a call and prints the result or the
error object.

- ``python -m netplugins install DIR [TYPE...]`` writes one executable per type into DIR (a
  script running this interpreter; never /opt/cni/bin without --allow-opt-cni-bin). They
  work for any runtime, exec'd like the Go binaries.
- Inside a runtime that uses cnilib, :class:`netplugins.warm.WarmExecutor` runs them in a
  pre-forked worker (:mod:`netplugins.worker`) instead: same input and output, no interpreter
  start-up per call.
- A plugin that delegates (bridge/ptp -> IPAM, flannel -> bridge) runs a delegate that is one of
  ours in-process and execs anything else (:mod:`netplugins.delegation`).
- pyroute2 is imported only by :mod:`netplugins.netlink`; namespace switching and sysctls are in
  :mod:`netplugins.nsenter`, iptables in :mod:`netplugins.iptables`.
"""
