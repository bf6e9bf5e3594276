"""The iptables rules pyflanneld keeps: flannel's exact order, and restoring what was changed."""

from __future__ import annotations

import ipaddress
import shlex

from netplugins.errors import IptablesFailure
from netplugins.iptables import IPTables
from overlay.traffic import MASQ_CHAIN, TrafficRules, forward_rules, masquerade_rules

NET = ipaddress.IPv4Network("10.244.0.0/16")
OWN = ipaddress.IPv4Network("10.244.3.0/24")


def test_masquerade_rules_in_flannels_order() -> None:
    rules = [" ".join(r) for r in masquerade_rules(NET, OWN, random_fully=True)]
    tag = "-m comment --comment flanneld masq"
    assert rules == [
        f"-m mark --mark 0x4000/0x4000 {tag} -j RETURN",
        f"-s 10.244.3.0/24 -d 10.244.0.0/16 {tag} -j RETURN",
        f"-s 10.244.0.0/16 -d 10.244.3.0/24 {tag} -j RETURN",
        f"! -s 10.244.0.0/16 -d 10.244.3.0/24 {tag} -j RETURN",
        f"-s 10.244.0.0/16 ! -d 224.0.0.0/4 {tag} -j MASQUERADE --random-fully",
        f"! -s 10.244.0.0/16 -d 10.244.0.0/16 {tag} -j MASQUERADE --random-fully",
    ]
    plain = masquerade_rules(NET, OWN, random_fully=False)
    assert all("--random-fully" not in r for r in plain)


def test_forward_rules_accept_the_cluster_network() -> None:
    assert [r[:2] + r[-2:] for r in forward_rules(NET)] == [
        ["-s", "10.244.0.0/16", "-j", "ACCEPT"],
        ["-d", "10.244.0.0/16", "-j", "ACCEPT"],
    ]


class FakeIPTables(IPTables):
    """Chains as lists of rules; restore understands ':CHAIN' (flush) and '-A CHAIN ...'."""

    def __init__(self, refuse_random_fully: bool = False) -> None:
        super().__init__(4)
        self.chains: dict[tuple[str, str], list[list[str]]] = {
            ("filter", "FORWARD"): [],
            ("nat", "POSTROUTING"): [],
        }
        self.refuse_random_fully = refuse_random_fully
        self.restores = 0

    def restore(self, table: str, lines: list[str]) -> None:
        if self.refuse_random_fully and any("--random-fully" in line for line in lines):
            raise IptablesFailure("iptables-restore failed", "unknown option --random-fully")
        self.restores += 1
        for line in lines:
            if line.startswith(":"):
                self.chains[(table, line[1:].split()[0])] = []
            else:
                words = shlex.split(line)
                self.chains[(table, words[1])].append(words[2:])

    def chain_exists(self, table: str, chain: str) -> bool:
        return (table, chain) in self.chains

    def rules(self, table: str, chain: str) -> list[list[str]]:
        return [list(r) for r in self.chains.get((table, chain), [])]

    def exists(self, table: str, chain: str, rule: list[str]) -> bool:
        return rule in self.chains.get((table, chain), [])

    def insert_unique(self, table: str, chain: str, rule: list[str], position: int = 1) -> None:
        if not self.exists(table, chain, rule):
            self.chains[(table, chain)].insert(position - 1, rule)

    def delete_rule(self, table: str, chain: str, rule: list[str]) -> None:
        while rule in self.chains.get((table, chain), []):
            self.chains[(table, chain)].remove(rule)

    def delete_chain(self, table: str, chain: str) -> None:
        self.chains.pop((table, chain), None)


def _rules(masq: bool, ipt: FakeIPTables) -> TrafficRules:
    return TrafficRules(NET, OWN, forward=True, masquerade=masq, random_fully=True, iptables=ipt)


def test_sync_writes_once_then_restores_what_changed() -> None:
    ipt = FakeIPTables()
    traffic = _rules(True, ipt)
    traffic.sync()
    assert ipt.chains[("filter", "FORWARD")][0][-1] == "FLANNEL-FWD"
    assert ipt.chains[("nat", "POSTROUTING")][0][-1] == MASQ_CHAIN
    assert len(ipt.chains[("nat", MASQ_CHAIN)]) == 6
    writes = ipt.restores
    traffic.sync()
    assert ipt.restores == writes  # nothing changed, nothing rewritten
    ipt.chains[("nat", MASQ_CHAIN)].pop()
    ipt.chains[("filter", "FORWARD")].clear()
    traffic.sync()
    assert ipt.restores == writes + 1
    assert len(ipt.chains[("nat", MASQ_CHAIN)]) == 6
    assert ipt.chains[("filter", "FORWARD")][0][-1] == "FLANNEL-FWD"


def test_without_ip_masq_an_earlier_masquerade_chain_goes() -> None:
    ipt = FakeIPTables()
    _rules(True, ipt).sync()
    _rules(False, ipt).sync()
    assert ("nat", MASQ_CHAIN) not in ipt.chains
    assert ipt.chains[("nat", "POSTROUTING")] == []
    assert ("filter", "FLANNEL-FWD") in ipt.chains


def test_falls_back_without_random_fully() -> None:
    ipt = FakeIPTables(refuse_random_fully=True)
    traffic = _rules(True, ipt)
    traffic.sync()
    assert not traffic.random_fully
    assert len(ipt.chains[("nat", MASQ_CHAIN)]) == 6
