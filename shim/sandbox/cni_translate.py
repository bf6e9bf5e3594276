"""Pure translations from CRI objects to what CNI plugins are given."""

from __future__ import annotations

from typing import Any

from cri_api import api_pb2

_PROTOCOLS = {api_pb2.TCP: "tcp", api_pb2.UDP: "udp", api_pb2.SCTP: "sctp"}


def cni_args(meta: api_pb2.PodSandboxMetadata, sandbox_id: str) -> list[tuple[str, str]]:
    """CNI_ARGS as dockershim sent them. IgnoreUnknown=1 comes first: plugins that do not know
    the K8S_* keys fail with code 999 without it. Values were validated to be free of ';' '='."""
    return [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", meta.namespace),
        ("K8S_POD_NAME", meta.name),
        ("K8S_POD_INFRA_CONTAINER_ID", sandbox_id),
        ("K8S_POD_UID", meta.uid),
    ]


def port_mappings(config: api_pb2.PodSandboxConfig) -> list[dict[str, Any]]:
    """The `portMappings` capability. A mapping without a host port publishes nothing."""
    mappings = []
    for m in config.port_mappings:
        if m.host_port <= 0:
            continue
        entry: dict[str, Any] = {
            "hostPort": m.host_port,
            "containerPort": m.container_port,
            "protocol": _PROTOCOLS[m.protocol],
        }
        if m.host_ip:
            entry["hostIP"] = m.host_ip
        mappings.append(entry)
    return mappings


def ip_ranges(pod_cidrs: list[str]) -> list[list[dict[str, str]]]:
    """The `ipRanges` capability: one range set per pod CIDR (dual stack gives two)."""
    return [[{"subnet": cidr}] for cidr in pod_cidrs]


def dns_capability(dns: api_pb2.DNSConfig) -> dict[str, list[str]]:
    return {
        "servers": list(dns.servers),
        "searches": list(dns.searches),
        "options": list(dns.options),
    }


def capability_args(config: api_pb2.PodSandboxConfig, pod_cidrs: list[str]) -> dict[str, Any]:
    """Every capability the runtime can supply; cnilib passes each plugin only those it declares."""
    args: dict[str, Any] = {"portMappings": port_mappings(config)}
    if pod_cidrs:
        args["ipRanges"] = ip_ranges(pod_cidrs)
    if config.HasField("dns_config"):
        args["dns"] = dns_capability(config.dns_config)
    return args


def resolv_conf(dns: api_pb2.DNSConfig) -> str:
    lines = [f"nameserver {s}" for s in dns.servers]
    if dns.searches:
        lines.append("search " + " ".join(dns.searches))
    if dns.options:
        lines.append("options " + " ".join(dns.options))
    return "\n".join(lines) + "\n"


def split_pod_cidrs(pod_cidr: str) -> list[str]:
    """UpdateRuntimeConfig's pod_cidr is a comma-separated list in dual-stack clusters."""
    return [c.strip() for c in pod_cidr.split(",") if c.strip()]
