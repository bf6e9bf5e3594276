"""Invocation: finding binaries, the environment, decoding a plugin's errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pytest

from cnilib.errors import DecodeError, PluginError, PluginNotFoundError
from cnilib.invoke import exec_plugin, find_plugin, format_cni_args, plugin_env
from cnilib.types import RuntimeConf


class CannedExecutor:
    def __init__(self, code: int, stdout: bytes, stderr: bytes = b"") -> None:
        self.answer = (code, stdout, stderr)

    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        return self.answer


def executable(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_find_plugin_first_regular_executable(tmp_path: Path) -> None:
    a, b, c = (tmp_path / n for n in "abc")
    for d in (a, b, c):
        d.mkdir()
    (a / "bridge").mkdir()  # a directory is not a plugin
    (b / "bridge").write_text("not executable")
    executable(c / "bridge")
    assert find_plugin("bridge", [str(a), "", str(b), str(c)]) == str(c / "bridge")


def test_find_plugin_missing_names_type_and_dirs(tmp_path: Path) -> None:
    with pytest.raises(PluginNotFoundError) as info:
        find_plugin("nosuch", [str(tmp_path)])
    assert "'nosuch'" in str(info.value)
    assert str(tmp_path) in str(info.value)


def test_find_plugin_refuses_paths(tmp_path: Path) -> None:
    executable(tmp_path / "x")
    with pytest.raises(PluginNotFoundError):
        find_plugin(f"../{tmp_path.name}/x", [str(tmp_path)])


def test_env_sets_all_six_and_hides_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNI_NETNS", "/stale")
    monkeypatch.setenv("CNI_IFNAME", "stale0")
    monkeypatch.setenv("KEEP_ME", "yes")
    rt = RuntimeConf("c1", "/var/run/netns/x", "eth0", (("A", "1"), ("B", "2")))
    env = plugin_env("ADD", rt, ["/a", "/b"])
    assert env["CNI_COMMAND"] == "ADD"
    assert env["CNI_CONTAINERID"] == "c1"
    assert env["CNI_NETNS"] == "/var/run/netns/x"
    assert env["CNI_IFNAME"] == "eth0"
    assert env["CNI_ARGS"] == "A=1;B=2"
    assert env["CNI_PATH"] == "/a:/b"
    assert env["KEEP_ME"] == "yes"
    gc_env = plugin_env("GC", None, ["/a"])
    assert [gc_env[k] for k in ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS")] == [
        "",
        "",
        "",
        "",
    ]
    assert plugin_env("DEL", rt, ["/a"], netns="")["CNI_NETNS"] == ""


def test_cni_args_format() -> None:
    assert format_cni_args([]) == ""
    assert format_cni_args([("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p")]) == (
        "IgnoreUnknown=1;K8S_POD_NAME=p"
    )


ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c9"}


def test_success_returns_stdout() -> None:
    assert exec_plugin("/x/p", ENV, b"{}", 1, CannedExecutor(0, b"out")) == b"out"


def test_plugin_error_object_is_carried_verbatim() -> None:
    out = b'{"cniVersion":"1.0.0","code":11,"msg":"busy","details":"try later"}'
    with pytest.raises(PluginError) as info:
        exec_plugin("/x/bridge", ENV, b"{}", 1, CannedExecutor(1, out))
    err = info.value
    assert (err.code, err.msg, err.details) == (11, "busy", "try later")
    assert "failed to ADD plugin bridge for container c9" in str(err)
    assert "busy" in str(err) and "try later" in str(err) and "11" in str(err)


@pytest.mark.parametrize(
    ("stdout", "quoted"),
    [
        (b"panic: runtime error", "panic: runtime error"),
        (b'{"msg": "no code"}', "no code"),
        (b'"just a string"', "just a string"),
    ],
)
def test_garbage_error_output_is_a_decode_error_quoting_it(stdout: bytes, quoted: str) -> None:
    with pytest.raises(DecodeError) as info:
        exec_plugin("/x/p", ENV, b"{}", 1, CannedExecutor(2, stdout))
    assert info.value.code == 6
    assert quoted in str(info.value)


def test_silent_crash_reports_exit_status_and_stderr() -> None:
    with pytest.raises(PluginError) as info:
        exec_plugin("/x/p", ENV, b"{}", 1, CannedExecutor(139, b"", b"segfault here"))
    assert "exited with status 139" in str(info.value)
    assert "segfault here" in str(info.value)


def test_unexecutable_binary_is_a_plugin_error(tmp_path: Path) -> None:
    script = tmp_path / "p"
    script.write_text("#!/nonexistent/interpreter\n")
    script.chmod(0o755)
    with pytest.raises(PluginError, match="cannot execute"):
        exec_plugin(str(script), dict(os.environ, **ENV), b"{}", 5)
