"""The plugin skeleton: environment checks, version gates, error objects (pure, no netns)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from netplugins import errors, skel
from netplugins.result import SUPPORTED_VERSIONS, convert, normalize

CALLS: list[skel.CmdArgs] = []


def _add(args: skel.CmdArgs) -> dict[str, Any]:
    CALLS.append(args)
    if args.netconf.get("fail"):
        raise errors.ConfigError("bad thing", "the details")
    if args.netconf.get("crash"):
        raise ZeroDivisionError("boom")
    return {"ips": [{"address": "10.202.0.2/24", "gateway": "10.202.0.1", "interface": 0}]}


def _none(args: skel.CmdArgs) -> None:
    CALLS.append(args)


SPEC = skel.PluginSpec(name="fake", add=_add, delete=_none, check=_none, gc=_none)

FULL_ENV = {
    "CNI_COMMAND": "ADD",
    "CNI_CONTAINERID": "c1",
    "CNI_NETNS": "/run/netns/x",
    "CNI_IFNAME": "eth0",
    "CNI_PATH": "/opt/cni/bin",
}


def _conf(version: str = "1.0.0", **extra: Any) -> bytes:
    return json.dumps({"cniVersion": version, "name": "n", "type": "fake", **extra}).encode()


def test_version_lists_supported_versions_without_other_env() -> None:
    code, out, _ = skel.run(SPEC, {"CNI_COMMAND": "VERSION"}, b"")
    assert code == 0
    body = json.loads(out)
    assert body["supportedVersions"] == list(SUPPORTED_VERSIONS)
    assert {"0.3.1", "0.4.0", "1.0.0", "1.1.0"} <= set(body["supportedVersions"])


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        ("ADD", "CNI_NETNS"),
        ("ADD", "CNI_IFNAME"),
        ("ADD", "CNI_CONTAINERID"),
        ("CHECK", "CNI_NETNS"),
        ("DEL", "CNI_CONTAINERID"),
        ("DEL", "CNI_PATH"),
    ],
)
def test_missing_environment_is_error_4(command: str, missing: str) -> None:
    env = dict(FULL_ENV, CNI_COMMAND=command)
    del env[missing]
    code, out, _ = skel.run(SPEC, env, _conf())
    assert code != 0
    body = json.loads(out)
    assert body["code"] == errors.INVALID_ENVIRONMENT
    assert missing in body["msg"]


def test_del_without_netns_is_allowed() -> None:
    env = dict(FULL_ENV, CNI_COMMAND="DEL")
    del env["CNI_NETNS"]
    code, out, _ = skel.run(SPEC, env, _conf())
    assert (code, out) == (0, b"")


def test_undecodable_stdin_is_error_6() -> None:
    code, out, _ = skel.run(SPEC, FULL_ENV, b"{not json")
    assert code != 0
    assert json.loads(out)["code"] == errors.DECODE_FAILURE


@pytest.mark.parametrize(
    ("command", "version", "ok"),
    [
        ("ADD", "0.2.0", False),
        ("ADD", "0.3.0", True),
        ("ADD", "1.1.0", True),
        ("ADD", "2.0.0", False),
        ("CHECK", "0.3.1", False),
        ("CHECK", "0.4.0", True),
        ("GC", "1.0.0", False),
        ("GC", "1.1.0", True),
    ],
)
def test_version_gates(command: str, version: str, ok: bool) -> None:
    code, out, _ = skel.run(SPEC, dict(FULL_ENV, CNI_COMMAND=command), _conf(version))
    if ok:
        assert code == 0
    else:
        assert code != 0
        assert json.loads(out)["code"] == errors.INCOMPATIBLE_VERSION


def test_plugin_error_becomes_spec_error_object() -> None:
    code, out, err = skel.run(SPEC, FULL_ENV, _conf(fail=True))
    assert code != 0
    assert json.loads(out) == {
        "cniVersion": "1.0.0",
        "code": errors.INVALID_CONFIG,
        "msg": "bad thing",
        "details": "the details",
    }
    assert b"bad thing" in err


def test_a_bug_still_yields_an_error_object() -> None:
    code, out, err = skel.run(SPEC, FULL_ENV, _conf(crash=True))
    assert code != 0
    body = json.loads(out)
    assert body["code"] == errors.INTERNAL
    assert "boom" in body["msg"]
    assert b"ZeroDivisionError" in err


@pytest.mark.parametrize(
    ("version", "has_version_field"),
    [("0.3.1", True), ("0.4.0", True), ("1.0.0", False), ("1.1.0", False)],
)
def test_add_result_is_shaped_for_the_config_version(version: str, has_version_field: bool) -> None:
    code, out, _ = skel.run(SPEC, FULL_ENV, _conf(version))
    assert code == 0
    body = json.loads(out)
    assert body["cniVersion"] == version
    assert ("version" in body["ips"][0]) is has_version_field
    if has_version_field:
        assert body["ips"][0]["version"] == "4"


def test_cni_args_are_parsed_and_env_is_passed() -> None:
    CALLS.clear()
    skel.run(SPEC, dict(FULL_ENV, CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAME=p"), _conf())
    assert CALLS[-1].args_pairs() == {"IgnoreUnknown": "1", "K8S_POD_NAME": "p"}
    assert CALLS[-1].path == ("/opt/cni/bin",)
    assert CALLS[-1].container_id == "c1"


def test_normalize_and_convert_round_trip() -> None:
    old = {"cniVersion": "0.4.0", "ips": [{"version": "6", "address": "fd02:202::2/64"}]}
    new = normalize(old)
    assert "version" not in new["ips"][0]
    assert convert(new, "0.3.1")["ips"][0]["version"] == "6"


BAD_NAMES = [
    ("CNI_CONTAINERID", "../x", "invalid characters in containerID"),
    ("CNI_CONTAINERID", "_x", "invalid characters in containerID"),
    ("CNI_CONTAINERID", "a/b", "invalid characters in containerID"),
    ("CNI_CONTAINERID", "x y", "invalid characters in containerID"),
    ("CNI_CONTAINERID", "c1\n", "invalid characters in containerID"),
    ("CNI_IFNAME", "a/b", "interface name contains / or : or whitespace characters"),
    ("CNI_IFNAME", "eth:0", "interface name contains / or : or whitespace characters"),
    ("CNI_IFNAME", "eth 0", "interface name contains / or : or whitespace characters"),
    ("CNI_IFNAME", ".", "interface name is . or .."),
    ("CNI_IFNAME", "..", "interface name is . or .."),
    ("CNI_IFNAME", "0123456789abcdef", "interface name is too long"),
    ("CNI_IFNAME", "é" + "x" * 14, "interface name is too long"),  # 16 bytes, 15 characters
]


@pytest.mark.parametrize("command", ["ADD", "CHECK", "DEL"])
@pytest.mark.parametrize(("variable", "value", "msg"), BAD_NAMES)
def test_bad_container_id_or_ifname_is_error_4_before_the_plugin_runs(
    command: str, variable: str, value: str, msg: str
) -> None:
    """The reference skel's rules and messages (libcni utils ValidateContainerID / ...IfName)."""
    CALLS.clear()
    env = dict(FULL_ENV, CNI_COMMAND=command, **{variable: value})
    code, out, _ = skel.run(SPEC, env, _conf())
    body = json.loads(out)
    assert (code, body["code"], body["msg"]) == (1, errors.INVALID_ENVIRONMENT, msg)
    assert CALLS == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("CNI_CONTAINERID", "x.y-z_W9"),
        ("CNI_CONTAINERID", "0" * 64),
        ("CNI_IFNAME", "eth0.100"),
        ("CNI_IFNAME", "x" * 15),
    ],
)
def test_good_names_pass(variable: str, value: str) -> None:
    code, _, _ = skel.run(SPEC, dict(FULL_ENV, **{variable: value}), _conf())
    assert code == 0


def test_gc_needs_no_container_id() -> None:
    env = {"CNI_COMMAND": "GC", "CNI_PATH": "", "CNI_CONTAINERID": "../x", "CNI_IFNAME": ""}
    code, _, _ = skel.run(SPEC, env, _conf("1.1.0"))
    assert code == 0
