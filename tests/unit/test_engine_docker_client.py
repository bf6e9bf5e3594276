"""The Docker client's set-up: no per-call environment look-ups on a unix socket."""

from __future__ import annotations

from shim.engine.docker_engine import DockerInfraRuntime


def test_a_unix_socket_client_ignores_proxy_settings() -> None:
    engine = DockerInfraRuntime("unix:///run/cri-shim-test-nothing-here.sock", owner="test")
    assert engine.client.trust_env is False


def test_a_tcp_client_keeps_the_environment_s_proxy_settings() -> None:
    engine = DockerInfraRuntime("tcp://127.0.0.1:1", owner="test")
    assert engine.client.trust_env is True
