"""The iptables rules flanneld keeps (CROSS-NODE.md section 2, "Traffic rules").

FLANNEL-FWD (filter, jumped to from FORWARD) accepts everything from and to the cluster
network, so a FORWARD policy of DROP (Docker's) does not cut pod traffic. With ``--ip-masq``,
FLANNEL-POSTRTG (nat, from POSTROUTING) masquerades traffic that leaves the cluster network and
never pod-to-pod traffic, in flannel's order. Each chain is rewritten as one
``iptables-restore --noflush`` transaction (declaring a chain there flushes it), then read back;
every resync compares the chain with that reading and rewrites it when someone changed it, and
puts a deleted jump back. Rules stay when the daemon exits, as flannel's do.

The iptables commands come from netplugins' wrapper (the same ``-w`` lock handling the CNI
plugins use); they block, so the daemon runs them in a worker thread.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from netplugins.errors import NetPluginError
from netplugins.iptables import IPTables, format_rule
from overlay.errors import TrafficError

log = logging.getLogger(__name__)

FORWARD_CHAIN = "FLANNEL-FWD"
MASQ_CHAIN = "FLANNEL-POSTRTG"
FORWARD_COMMENT = "flanneld forward"
MASQ_COMMENT = "flanneld masq"
# kube-proxy marks packets it wants masqueraded itself (KUBE-MARK-MASQ).
KUBE_PROXY_MARK = "0x4000/0x4000"
MULTICAST = "224.0.0.0/4"


def forward_rules(network: ipaddress.IPv4Network) -> list[list[str]]:
    tag = ["-m", "comment", "--comment", FORWARD_COMMENT]
    return [
        ["-s", str(network), *tag, "-j", "ACCEPT"],
        ["-d", str(network), *tag, "-j", "ACCEPT"],
    ]


def masquerade_rules(
    network: ipaddress.IPv4Network, subnet: ipaddress.IPv4Network, random_fully: bool
) -> list[list[str]]:
    net, own = str(network), str(subnet)
    tag = ["-m", "comment", "--comment", MASQ_COMMENT]
    masq = ["-j", "MASQUERADE", *(["--random-fully"] if random_fully else [])]
    return [
        ["-m", "mark", "--mark", KUBE_PROXY_MARK, *tag, "-j", "RETURN"],
        # Pod to pod, either direction: never masqueraded.
        ["-s", own, "-d", net, *tag, "-j", "RETURN"],
        ["-s", net, "-d", own, *tag, "-j", "RETURN"],
        # From outside to our pods (e.g. a NodePort): kept as it is.
        ["!", "-s", net, "-d", own, *tag, "-j", "RETURN"],
        # Pods to outside the cluster network (multicast exempt).
        ["-s", net, "!", "-d", MULTICAST, *tag, *masq],
        # The node itself to remote pods: the source must be routable in the overlay.
        ["!", "-s", net, "-d", net, *tag, *masq],
    ]


@dataclass(frozen=True)
class ChainSpec:
    table: str
    chain: str
    rules: list[list[str]]
    hook: str  # the built-in chain that jumps to ours
    comment: str

    def jump(self) -> list[str]:
        return ["-m", "comment", "--comment", self.comment, "-j", self.chain]


class TrafficRules:
    def __init__(
        self,
        network: ipaddress.IPv4Network,
        subnet: ipaddress.IPv4Network,
        *,
        forward: bool,
        masquerade: bool,
        random_fully: bool,
        iptables: IPTables | None = None,
    ) -> None:
        self.ipt = iptables or IPTables(4)
        self.random_fully = random_fully
        self.network = network
        self.subnet = subnet
        self.masquerade = masquerade
        self.forward = forward
        self.written: dict[str, list[list[str]]] = {}

    def specs(self) -> list[ChainSpec]:
        specs = []
        if self.forward:
            specs.append(
                ChainSpec(
                    "filter", FORWARD_CHAIN, forward_rules(self.network), "FORWARD", FORWARD_COMMENT
                )
            )
        if self.masquerade:
            rules = masquerade_rules(self.network, self.subnet, self.random_fully)
            specs.append(ChainSpec("nat", MASQ_CHAIN, rules, "POSTROUTING", MASQ_COMMENT))
        return specs

    def _unwanted(self) -> list[ChainSpec]:
        """Our chains a previous run made that this configuration does not want."""
        wanted = {spec.chain for spec in self.specs()}
        every = [
            ChainSpec("filter", FORWARD_CHAIN, [], "FORWARD", FORWARD_COMMENT),
            ChainSpec("nat", MASQ_CHAIN, [], "POSTROUTING", MASQ_COMMENT),
        ]
        return [spec for spec in every if spec.chain not in wanted]

    def _write(self, spec: ChainSpec) -> None:
        lines = [f":{spec.chain} - [0:0]", *(format_rule(spec.chain, r) for r in spec.rules)]
        self.ipt.restore(spec.table, lines)

    def _ensure(self, spec: ChainSpec) -> None:
        current = (
            self.ipt.rules(spec.table, spec.chain)
            if self.ipt.chain_exists(spec.table, spec.chain)
            else None
        )
        if current is None or current != self.written.get(spec.chain):
            if spec.chain in self.written:
                log.warning(
                    "%s/%s was changed behind our back: restoring it", spec.table, spec.chain
                )
            try:
                self._write(spec)
            except NetPluginError:
                if not (self.random_fully and spec.chain == MASQ_CHAIN):
                    raise
                # An iptables or kernel without --random-fully: masquerade without it.
                log.warning("iptables refused --random-fully; masquerading without it")
                self.random_fully = False
                spec = next(s for s in self.specs() if s.chain == MASQ_CHAIN)
                self._write(spec)
            self.written[spec.chain] = self.ipt.rules(spec.table, spec.chain)
        if not self.ipt.exists(spec.table, spec.hook, spec.jump()):
            if spec.chain in self.written and current is not None:
                log.warning("jump from %s to %s was missing: restoring it", spec.hook, spec.chain)
            self.ipt.insert_unique(spec.table, spec.hook, spec.jump(), 1)

    def sync(self) -> None:
        """Apply (or restore) every rule; blocking, run it in a thread."""
        try:
            for spec in self._unwanted():
                if self.ipt.chain_exists(spec.table, spec.chain):
                    log.info("removing %s/%s left by an earlier run", spec.table, spec.chain)
                    self.ipt.delete_rule(spec.table, spec.hook, spec.jump())
                    self.ipt.delete_chain(spec.table, spec.chain)
            for spec in self.specs():
                self._ensure(spec)
        except NetPluginError as exc:
            raise TrafficError(f"failed to apply iptables rules: {exc}") from exc
