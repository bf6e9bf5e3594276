"""CNIConfig over an in-memory plugin executor: negotiation, validation, locking."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from cnilib.api import CNIConfig
from cnilib.conf import parse_conf_list
from cnilib.errors import (
    CacheError,
    InvalidArgumentError,
    PluginError,
    PluginNotFoundError,
    VersionError,
)
from cnilib.types import GCAttachment, NetworkConfigList, RuntimeConf

Handler = Callable[[str, Mapping[str, str], dict[str, Any]], tuple[int, bytes]]
ALL = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]


class FakePlugins:
    """Plugins as Python functions; records (plugin, command, env, stdin) per call."""

    def __init__(self) -> None:
        self.versions: dict[str, list[str]] = {}
        self.handlers: dict[str, Handler] = {}
        self.calls: list[tuple[str, str, dict[str, str], dict[str, Any]]] = []
        self.lock = threading.Lock()

    def run(
        self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
    ) -> tuple[int, bytes, bytes]:
        name, command = os.path.basename(path), env["CNI_COMMAND"]
        conf = json.loads(stdin)
        with self.lock:
            self.calls.append((name, command, dict(env), conf))
        if command == "VERSION":
            body = {"cniVersion": "1.1.0", "supportedVersions": self.versions.get(name, ALL)}
            return 0, json.dumps(body).encode(), b""
        handler = self.handlers.get(name)
        if handler is not None:
            code, out = handler(command, env, conf)
            return code, out, b""
        if command == "ADD":
            prev = conf.get("prevResult") or {"cniVersion": conf["cniVersion"]}
            return 0, json.dumps(prev).encode(), b""
        return 0, b"", b""

    def commands(self, *skip: str) -> list[tuple[str, str]]:
        return [(n, c) for n, c, _, _ in self.calls if c not in ("VERSION", *skip)]


@pytest.fixture
def plugins() -> FakePlugins:
    return FakePlugins()


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    d = tmp_path / "bin"
    d.mkdir()
    for name in ("a", "b", "c"):
        (d / name).write_text("")
        (d / name).chmod(0o755)
    return d


@pytest.fixture
def cni(bin_dir: Path, tmp_path: Path, plugins: FakePlugins) -> CNIConfig:
    return CNIConfig([str(bin_dir)], str(tmp_path / "cache"), executor=plugins, timeout=5)


def net(
    version: str = "1.0.0", types: tuple[str, ...] = ("a", "b"), **extra: Any
) -> NetworkConfigList:
    obj = {"cniVersion": version, "name": "n", "plugins": [{"type": t} for t in types], **extra}
    return parse_conf_list(json.dumps(obj).encode())


RT = RuntimeConf("c1", "", "eth0")


@pytest.mark.parametrize(
    ("container_id", "ifname", "words"),
    [
        ("", "eth0", "missing container id"),
        ("-c", "eth0", "invalid container id"),
        ("c/1", "eth0", "invalid container id"),
        ("c 1", "eth0", "invalid container id"),
        ("c1\n", "eth0", "invalid container id"),  # `$` alone would let it through
        ("c1", "", "missing interface name"),
        ("c1", "x" * 16, "longer than 15"),
        ("c1", ".", "reserved"),
        ("c1", "..", "reserved"),
        ("c1", "a/b", "contains"),
        ("c1", "a:b", "contains"),
        ("c1", "a b", "contains"),
        ("c1", "a\tb", "contains"),
    ],
)
@pytest.mark.parametrize("operation", ["add", "del", "check"])
def test_invalid_runtime_names_are_refused_before_any_plugin_runs(
    cni: CNIConfig,
    plugins: FakePlugins,
    container_id: str,
    ifname: str,
    words: str,
    operation: str,
) -> None:
    method = getattr(cni, f"{operation}_network_list")
    with pytest.raises(InvalidArgumentError, match=words) as info:
        method(net(), RuntimeConf(container_id, "", ifname))
    assert info.value.code == 4
    assert plugins.calls == []


def test_unserializable_capability_args_refused_before_any_plugin(
    cni: CNIConfig, plugins: FakePlugins
) -> None:
    with pytest.raises(InvalidArgumentError, match="JSON"):
        cni.add_network_list(net(), RuntimeConf("c1", "", "eth0", capability_args={"x": {1, 2}}))
    assert plugins.calls == []


def test_valid_edge_names_are_accepted(cni: CNIConfig) -> None:
    cni.add_network_list(net(), RuntimeConf("A1_b.c-d", "", "x" * 15))


def test_version_refused_before_any_add(cni: CNIConfig, plugins: FakePlugins) -> None:
    plugins.versions["b"] = ["0.3.1", "0.4.0"]
    with pytest.raises(VersionError) as info:
        cni.add_network_list(net("1.0.0"), RT)
    assert info.value.code == 1
    assert "b supports" in str(info.value)
    assert plugins.commands() == []


def test_version_negotiated_down_through_cni_versions(cni: CNIConfig, plugins: FakePlugins) -> None:
    plugins.versions["b"] = ["0.4.0", "1.0.0"]
    result = cni.add_network_list(net("1.1.0", cniVersions=["0.4.0", "1.0.0", "1.1.0"]), RT)
    assert result.cni_version == "1.0.0"
    assert {conf["cniVersion"] for _, c, _, conf in plugins.calls if c == "ADD"} == {"1.0.0"}


def test_version_answer_cached_per_binary_until_it_changes(
    cni: CNIConfig, plugins: FakePlugins, bin_dir: Path
) -> None:
    for _ in range(3):
        cni.validate_network_list(net())
    asked = [n for n, c, _, _ in plugins.calls if c == "VERSION"]
    assert sorted(asked) == ["a", "b"]
    (bin_dir / "a").write_text("replaced binary")
    cni.validate_network_list(net())
    asked = [n for n, c, _, _ in plugins.calls if c == "VERSION"]
    assert sorted(asked) == ["a", "a", "b"]


def test_validate_returns_capabilities(cni: CNIConfig) -> None:
    obj = {
        "cniVersion": "1.0.0",
        "name": "n",
        "plugins": [
            {"type": "a", "capabilities": {"portMappings": True, "mac": False}},
            {"type": "b", "capabilities": {"bandwidth": True, "portMappings": True}},
        ],
    }
    assert cni.validate_network_list(parse_conf_list(json.dumps(obj).encode())) == [
        "bandwidth",
        "portMappings",
    ]


def test_missing_plugin_refused_before_any_add(cni: CNIConfig, plugins: FakePlugins) -> None:
    with pytest.raises(PluginNotFoundError):
        cni.add_network_list(net(types=("a", "zzz")), RT)
    assert plugins.commands() == []


def test_adding_garbage_result_rolls_back(cni: CNIConfig, plugins: FakePlugins) -> None:
    plugins.handlers["b"] = lambda cmd, env, conf: (0, b"<html>" if cmd == "ADD" else b"")
    with pytest.raises(Exception, match="<html>"):
        cni.add_network_list(net(), RT)
    assert plugins.commands() == [("a", "ADD"), ("b", "ADD"), ("b", "DEL"), ("a", "DEL")]
    assert cni.get_cached_result("n", RT) is None


def test_a_runtime_that_owns_the_undo_gets_no_rollback(
    cni: CNIConfig, plugins: FakePlugins
) -> None:
    plugins.handlers["b"] = lambda cmd, env, conf: (0, b"<html>" if cmd == "ADD" else b"")
    with pytest.raises(Exception, match="<html>"):
        cni.add_network_list(net(), RT, rollback=False)
    assert plugins.commands() == [("a", "ADD"), ("b", "ADD")]


def test_check_skipped_below_040_and_with_disable_check(
    cni: CNIConfig, plugins: FakePlugins
) -> None:
    for conf in (net("0.3.1"), net("1.0.0", disableCheck=True)):
        cni.add_network_list(conf, RT)
        cni.check_network_list(conf, RT)
        cni.del_network_list(conf, RT)
    assert "CHECK" not in {c for _, c in plugins.commands()}


def test_check_without_cached_result_is_unknown_container(cni: CNIConfig) -> None:
    with pytest.raises(Exception, match="no cached result") as info:
        cni.check_network_list(net(), RT)
    assert getattr(info.value, "code", None) == 3


def test_del_below_040_gets_no_prev_result(cni: CNIConfig, plugins: FakePlugins) -> None:
    cni.add_network_list(net("0.3.1"), RT)
    cni.del_network_list(net("0.3.1"), RT)
    assert all("prevResult" not in conf for _, c, _, conf in plugins.calls if c == "DEL")


def test_del_failure_keeps_cache_for_retry(cni: CNIConfig, plugins: FakePlugins) -> None:
    cni.add_network_list(net(), RT)
    plugins.handlers["a"] = lambda cmd, env, conf: (
        (1, b'{"code": 11, "msg": "busy"}') if cmd == "DEL" else (0, b"")
    )
    with pytest.raises(PluginError, match="busy"):
        cni.del_network_list(net(), RT)
    assert cni.get_cached_result("n", RT) is not None
    del plugins.handlers["a"]
    cni.del_network_list(net(), RT)
    assert cni.get_cached_result("n", RT) is None


def test_status_below_110_is_not_asked(cni: CNIConfig, plugins: FakePlugins) -> None:
    cni.get_status_network_list(net("1.0.0"))
    assert plugins.commands() == []


def test_gc_disabled_does_nothing(cni: CNIConfig, plugins: FakePlugins) -> None:
    cni.add_network_list(net("1.1.0", disableGC=True), RT)
    plugins.calls.clear()
    cni.gc_network_list(net("1.1.0", disableGC=True), [])
    assert plugins.commands() == []
    assert cni.get_cached_result("n", RT) is not None


class Gate:
    """Blocks a plugin call until released, and tells when a call is inside."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.inside: list[str] = []

    def handler(self, cmd: str, env: Mapping[str, str], conf: dict[str, Any]) -> tuple[int, bytes]:
        self.inside.append(f"{cmd}:{env['CNI_CONTAINERID']}")
        if cmd == "ADD" and env["CNI_CONTAINERID"] == "c1":
            self.entered.set()
            assert self.release.wait(30)
        body = json.dumps(conf.get("prevResult") or {"cniVersion": conf["cniVersion"]})
        return 0, body.encode() if cmd == "ADD" else b""


def run_in_thread(fn: Callable[[], object]) -> threading.Thread:
    thread = threading.Thread(target=fn, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize(
    ("second", "must_wait"),
    [
        ("del_same_container", True),
        ("gc_same_network", True),
        ("add_other_container", False),
    ],
)
def test_operations_that_must_not_overlap_wait(
    cni: CNIConfig, plugins: FakePlugins, second: str, must_wait: bool
) -> None:
    gate = Gate()
    plugins.handlers["a"] = gate.handler
    conf = net(types=("a",))
    first = run_in_thread(lambda: cni.add_network_list(conf, RT))
    assert gate.entered.wait(30)
    actions: dict[str, Callable[[], object]] = {
        "del_same_container": lambda: cni.del_network_list(conf, RT),
        "gc_same_network": lambda: cni.gc_network_list(conf, [GCAttachment("c1", "eth0")]),
        "add_other_container": lambda: cni.add_network_list(conf, RuntimeConf("c2", "", "eth0")),
    }
    other = run_in_thread(actions[second])
    if not must_wait:
        other.join(30)
        assert "ADD:c2" in gate.inside
    else:
        # Give the second operation ample opportunity to (wrongly) start.
        other.join(0.3)
        assert other.is_alive()
        assert gate.inside == ["ADD:c1"]
    gate.release.set()
    first.join(30)
    other.join(30)
    assert not first.is_alive() and not other.is_alive()


def test_timeout_value_is_passed_to_executor(tmp_path: Path, bin_dir: Path) -> None:
    seen: list[float] = []

    class Spy(FakePlugins):
        def run(
            self, path: str, env: Mapping[str, str], stdin: bytes, timeout: float
        ) -> tuple[int, bytes, bytes]:
            seen.append(timeout)
            return super().run(path, env, stdin, timeout)

    CNIConfig([str(bin_dir)], str(tmp_path), executor=Spy(), timeout=7.5).add_network_list(
        net(), RT
    )
    assert set(seen) == {7.5}


def test_cache_write_failure_rolls_back(
    tmp_path: Path, bin_dir: Path, plugins: FakePlugins
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    cni = CNIConfig([str(bin_dir)], str(blocker), executor=plugins)
    with pytest.raises(CacheError):
        cni.add_network_list(net(), RT)
    assert plugins.commands() == [("a", "ADD"), ("b", "ADD"), ("b", "DEL"), ("a", "DEL")]


def test_del_replays_cached_args_when_the_caller_lost_them(
    cni: CNIConfig, plugins: FakePlugins
) -> None:
    obj = {
        "cniVersion": "1.0.0",
        "name": "n",
        "plugins": [{"type": "a", "capabilities": {"portMappings": True}}],
    }
    conf = parse_conf_list(json.dumps(obj).encode())
    mappings = [{"hostPort": 31050, "containerPort": 80}]
    cni.add_network_list(
        conf, RuntimeConf("c1", "", "eth0", (("K8S_POD_NAME", "p"),), {"portMappings": mappings})
    )
    cni.del_network_list(conf, RuntimeConf("c1", "", "eth0"))  # e.g. after a restart
    [(_, _, env, stdin)] = [c for c in plugins.calls if c[1] == "DEL"]
    assert env["CNI_ARGS"] == "K8S_POD_NAME=p"
    assert stdin["runtimeConfig"] == {"portMappings": mappings}
