"""CRI → CNI translations: tables of inputs and the exact values plugins are given."""

from __future__ import annotations

from typing import Any

import pytest

from cri_api import api_pb2
from shim.sandbox.cni_translate import (
    capability_args,
    cni_args,
    port_mappings,
    resolv_conf,
    split_pod_cidrs,
)


def test_cni_args_order_and_keys() -> None:
    meta = api_pb2.PodSandboxMetadata(name="web", namespace="prod", uid="u-1", attempt=2)
    assert cni_args(meta, "abc") == [
        ("IgnoreUnknown", "1"),
        ("K8S_POD_NAMESPACE", "prod"),
        ("K8S_POD_NAME", "web"),
        ("K8S_POD_INFRA_CONTAINER_ID", "abc"),
        ("K8S_POD_UID", "u-1"),
    ]


@pytest.mark.parametrize(
    ("mappings", "expected"),
    [
        ([], []),
        ([api_pb2.PortMapping(container_port=80, host_port=0)], []),
        (
            [api_pb2.PortMapping(container_port=80, host_port=8080)],
            [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}],
        ),
        (
            [
                api_pb2.PortMapping(
                    protocol=api_pb2.UDP, container_port=53, host_port=5353, host_ip="127.0.0.1"
                )
            ],
            [{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}],
        ),
        (
            [api_pb2.PortMapping(protocol=api_pb2.SCTP, container_port=9, host_port=9)],
            [{"hostPort": 9, "containerPort": 9, "protocol": "sctp"}],
        ),
    ],
)
def test_port_mappings(mappings: list[api_pb2.PortMapping], expected: list[dict[str, Any]]) -> None:
    assert port_mappings(api_pb2.PodSandboxConfig(port_mappings=mappings)) == expected


@pytest.mark.parametrize(
    ("pod_cidr", "expected"),
    [
        ("", []),
        ("10.244.1.0/24", ["10.244.1.0/24"]),
        ("10.244.1.0/24, fd00:1::/64", ["10.244.1.0/24", "fd00:1::/64"]),
    ],
)
def test_split_pod_cidrs(pod_cidr: str, expected: list[str]) -> None:
    assert split_pod_cidrs(pod_cidr) == expected


def test_capability_args_full() -> None:
    config = api_pb2.PodSandboxConfig(
        port_mappings=[api_pb2.PortMapping(container_port=80, host_port=81)],
        dns_config=api_pb2.DNSConfig(servers=["10.0.0.10"], searches=["a.b"], options=["ndots:2"]),
    )
    assert capability_args(config, ["10.1.0.0/24", "fd00::/64"]) == {
        "portMappings": [{"hostPort": 81, "containerPort": 80, "protocol": "tcp"}],
        "ipRanges": [[{"subnet": "10.1.0.0/24"}], [{"subnet": "fd00::/64"}]],
        "dns": {"servers": ["10.0.0.10"], "searches": ["a.b"], "options": ["ndots:2"]},
    }


def test_capability_args_minimal() -> None:
    assert capability_args(api_pb2.PodSandboxConfig(), []) == {"portMappings": []}


@pytest.mark.parametrize(
    ("dns", "text"),
    [
        (api_pb2.DNSConfig(servers=["1.1.1.1"]), "nameserver 1.1.1.1\n"),
        (
            api_pb2.DNSConfig(
                servers=["1.1.1.1", "::1"], searches=["x.y", "y"], options=["ndots:5", "edns0"]
            ),
            "nameserver 1.1.1.1\nnameserver ::1\nsearch x.y y\noptions ndots:5 edns0\n",
        ),
    ],
)
def test_resolv_conf(dns: api_pb2.DNSConfig, text: str) -> None:
    assert resolv_conf(dns) == text
