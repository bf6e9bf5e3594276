"""cnilib.delegate (owned with netplugins): delegate lookup, environment, errors; fake executor."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from cnilib import delegate
from cnilib.errors import PluginError, PluginNotFoundError


class FakeExecutor:
    def __init__(self, code: int, stdout: bytes) -> None:
        self.code, self.stdout = code, stdout
        self.calls: list[tuple[str, dict[str, str], bytes]] = []

    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        self.calls.append((path, dict(env), stdin))
        return self.code, self.stdout, b""


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    plugin = tmp_path / "host-local"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    return tmp_path


def _env(bin_dir: Path) -> dict[str, str]:
    return {"CNI_COMMAND": "ADD", "CNI_PATH": f"/nonexistent:{bin_dir}", "CNI_IFNAME": "eth0"}


def test_delegate_add_parses_the_result(bin_dir: Path) -> None:
    result = {"cniVersion": "0.4.0", "ips": [{"version": "4", "address": "10.202.0.2/24"}]}
    fake = FakeExecutor(0, json.dumps(result).encode())
    got = delegate.delegate_add("host-local", b"{}", env=_env(bin_dir), executor=fake)
    assert str(got.ips[0].address) == "10.202.0.2/24"
    path, env, stdin = fake.calls[0]
    assert path == str(bin_dir / "host-local") and stdin == b"{}"
    assert env["CNI_COMMAND"] == "ADD" and env["CNI_IFNAME"] == "eth0"


@pytest.mark.parametrize("call", [delegate.delegate_del, delegate.delegate_check])
def test_delegate_del_and_check_override_the_command(call: object, bin_dir: Path) -> None:
    fake = FakeExecutor(0, b"")
    assert callable(call)
    call("host-local", b"{}", env=_env(bin_dir), executor=fake)
    expected = "DEL" if call is delegate.delegate_del else "CHECK"
    assert fake.calls[0][1]["CNI_COMMAND"] == expected


def test_delegate_error_object_passes_through(bin_dir: Path) -> None:
    body = {"cniVersion": "1.0.0", "code": 11, "msg": "try later", "details": "busy"}
    fake = FakeExecutor(1, json.dumps(body).encode())
    with pytest.raises(PluginError) as err:
        delegate.delegate_del("host-local", b"{}", env=_env(bin_dir), executor=fake)
    assert (err.value.code, err.value.msg, err.value.details) == (11, "try later", "busy")


def test_delegate_not_in_cni_path(bin_dir: Path) -> None:
    with pytest.raises(PluginNotFoundError):
        delegate.delegate_add("dhcp", b"{}", env=_env(bin_dir), executor=FakeExecutor(0, b""))
