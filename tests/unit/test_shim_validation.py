"""PodSandboxConfig validation: what passes, and what is refused with which message."""

from __future__ import annotations

import pytest

from cri_api import api_pb2
from shim.config import ShimConfig, parse_args
from shim.errors import InvalidArgumentError
from shim.sandbox.validation import validate_sandbox_config


def _config(**meta: object) -> api_pb2.PodSandboxConfig:
    fields: dict[str, object] = {"name": "web-0", "namespace": "default", "uid": "u-1"}
    fields.update(meta)
    return api_pb2.PodSandboxConfig(metadata=api_pb2.PodSandboxMetadata(**fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "config",
    [
        _config(),
        _config(name="a.b-c", uid="3f0c2a8e-1b2c-4d5e-8f90-123456789abc"),
        _config(name="a" * 253),
        # critest's names, upper case and all: naming rules are the API server's job.
        _config(name="PodSandbox-for-create-test-8c9e", namespace="Ns_1", uid="any uid/ok"),
        _config(name="ünïcode", namespace="n", uid="u"),
        api_pb2.PodSandboxConfig(
            metadata=_config().metadata,
            hostname="web-0",
            dns_config=api_pb2.DNSConfig(servers=["fd00::10"], searches=["svc.cluster.local."]),
        ),
    ],
)
def test_accepted(config: api_pb2.PodSandboxConfig) -> None:
    validate_sandbox_config(config, "")


@pytest.mark.parametrize(
    ("config", "handler", "message"),
    [
        (api_pb2.PodSandboxConfig(), "", "no metadata"),
        (_config(), "kata", "runtime handler 'kata'"),
        (_config(name=""), "", "metadata.name is empty"),
        (_config(namespace=""), "", "metadata.namespace is empty"),
        (_config(uid=""), "", "metadata.uid is empty"),
        (_config(name="a;b"), "", "metadata.name 'a;b' contains ';'"),
        (_config(name="a\x00b"), "", "metadata.name 'a.x00b' contains"),
        (_config(name="web\n"), "", "metadata.name 'web.n' contains"),
        (_config(uid="u\x7f"), "", "metadata.uid"),
        (_config(namespace="x=y"), "", "metadata.namespace 'x=y'"),
        (_config(uid="u;K8S_POD_NAME=x"), "", "metadata.uid"),
        (_config(name="a" * 254), "", "254 bytes long (at most 253)"),
        (_config(namespace="é" * 127), "", "254 bytes long"),
        (
            api_pb2.PodSandboxConfig(metadata=_config().metadata, hostname="bad host"),
            "",
            "hostname",
        ),
        (
            api_pb2.PodSandboxConfig(metadata=_config().metadata, hostname="web-0\n"),
            "",
            "hostname",
        ),
        (
            api_pb2.PodSandboxConfig(
                metadata=_config().metadata,
                port_mappings=[api_pb2.PortMapping(container_port=70000)],
            ),
            "",
            "port_mappings[0].container_port 70000",
        ),
        (
            api_pb2.PodSandboxConfig(
                metadata=_config().metadata,
                port_mappings=[api_pb2.PortMapping(container_port=1, host_port=-1)],
            ),
            "",
            "port_mappings[0].host_port -1",
        ),
        (
            api_pb2.PodSandboxConfig(
                metadata=_config().metadata,
                dns_config=api_pb2.DNSConfig(searches=["bad domain"]),
            ),
            "",
            "dns_config.searches",
        ),
        (
            api_pb2.PodSandboxConfig(metadata=_config().metadata, labels={"": "x"}),
            "",
            "non-empty keys",
        ),
    ],
)
def test_rejected(config: api_pb2.PodSandboxConfig, handler: str, message: str) -> None:
    with pytest.raises(
        InvalidArgumentError,
        match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)"),
    ):
        validate_sandbox_config(config, handler)


def test_config_command_line_round_trip() -> None:
    config = ShimConfig(
        endpoint="unix:///tmp/x.sock",
        cni_bin_dirs=("/a", "/b"),
        cni_plugin_timeout=2.5,
        cni_warm_plugins=False,
        log_level="debug",
    )
    assert parse_args(config.to_args()) == config
    assert parse_args([]) == ShimConfig()
