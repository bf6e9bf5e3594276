"""Configuration loading: every malformed config is rejected naming file, field, why."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cnilib.conf import conf_files, find_conf_list, load_conf_list, parse_conf, parse_conf_list
from cnilib.errors import ConfigError

GOOD_PLUGIN = {"type": "bridge"}


def conflist(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"cniVersion": "1.0.0", "name": "net", "plugins": [GOOD_PLUGIN]}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not _DROP}


_DROP = object()

MALFORMED: list[tuple[str, bytes, str, str]] = [
    # (case, bytes, field named in the error, words of the reason)
    ("not json", b"{nope", "", "not valid JSON"),
    ("not an object", b"[1, 2]", "", "must be a JSON object"),
    ("name missing", json.dumps(conflist(name=_DROP)).encode(), "name", "is missing"),
    ("name not a string", json.dumps(conflist(name=5)).encode(), "name", "must match"),
    ("name bad start", json.dumps(conflist(name="-net")).encode(), "name", "must match"),
    ("name with slash", json.dumps(conflist(name="a/b")).encode(), "name", "must match"),
    ("name with space", json.dumps(conflist(name="a b")).encode(), "name", "must match"),
    (
        "version missing",
        json.dumps(conflist(cniVersion=_DROP)).encode(),
        "cniVersion",
        "is missing",
    ),
    (
        "version not string",
        json.dumps(conflist(cniVersion=1)).encode(),
        "cniVersion",
        "must be a version string",
    ),
    ("version garbage", json.dumps(conflist(cniVersion="one")).encode(), "cniVersion", "X.Y.Z"),
    (
        "version too new",
        json.dumps(conflist(cniVersion="9.0.0")).encode(),
        "cniVersion",
        "no version this runtime supports",
    ),
    (
        "version too old",
        json.dumps(conflist(cniVersion="0.2.0")).encode(),
        "cniVersion",
        "no version this runtime supports",
    ),
    (
        "versions not list",
        json.dumps(conflist(cniVersions="1.0.0")).encode(),
        "cniVersions",
        "must be a list",
    ),
    (
        "versions entry bad",
        json.dumps(conflist(cniVersions=["1.0.0", "x"])).encode(),
        "cniVersions[1]",
        "X.Y.Z",
    ),
    (
        "versions none usable",
        json.dumps(conflist(cniVersion=_DROP, cniVersions=["7.0.0"])).encode(),
        "cniVersions",
        "no version this runtime supports",
    ),
    ("plugins missing", json.dumps(conflist(plugins=_DROP)).encode(), "plugins", "is missing"),
    (
        "plugins not list",
        json.dumps(conflist(plugins={"type": "x"})).encode(),
        "plugins",
        "must be a list",
    ),
    ("plugins empty", json.dumps(conflist(plugins=[])).encode(), "plugins", "must not be empty"),
    (
        "plugin not object",
        json.dumps(conflist(plugins=["bridge"])).encode(),
        "plugins[0]",
        "must be a JSON object",
    ),
    (
        "type missing",
        json.dumps(conflist(plugins=[GOOD_PLUGIN, {}])).encode(),
        "plugins[1].type",
        "is missing",
    ),
    (
        "type empty",
        json.dumps(conflist(plugins=[{"type": ""}])).encode(),
        "plugins[0].type",
        "non-empty string",
    ),
    (
        "type not string",
        json.dumps(conflist(plugins=[{"type": 3}])).encode(),
        "plugins[0].type",
        "non-empty string",
    ),
    (
        "type is a path",
        json.dumps(conflist(plugins=[{"type": "../bin/bridge"}])).encode(),
        "plugins[0].type",
        "plain name",
    ),
    (
        "type absolute",
        json.dumps(conflist(plugins=[{"type": "/usr/lib/cni/x"}])).encode(),
        "plugins[0].type",
        "plain name",
    ),
    (
        "capabilities not object",
        json.dumps(conflist(plugins=[{"type": "x", "capabilities": ["a"]}])).encode(),
        "plugins[0].capabilities",
        "capability names to booleans",
    ),
    (
        "capability not bool",
        json.dumps(conflist(plugins=[{"type": "x", "capabilities": {"a": "yes"}}])).encode(),
        "plugins[0].capabilities",
        "capability names to booleans",
    ),
    (
        "disableCheck odd string",
        json.dumps(conflist(disableCheck="yes")).encode(),
        "disableCheck",
        "boolean",
    ),
    (
        "disableCheck number",
        json.dumps(conflist(disableCheck=2)).encode(),
        "disableCheck",
        "boolean",
    ),
    ("disableGC odd", json.dumps(conflist(disableGC="nah")).encode(), "disableGC", "boolean"),
]


@pytest.mark.parametrize(("case", "data", "field", "why"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_config_is_rejected_naming_the_problem(
    case: str, data: bytes, field: str, why: str
) -> None:
    with pytest.raises(ConfigError) as info:
        parse_conf_list(data, source="/etc/cni/net.d/10-bad.conflist")
    err = info.value
    assert err.code == 7
    assert err.field == field
    assert "/etc/cni/net.d/10-bad.conflist" in str(err)
    assert why in str(err)
    if field:
        assert repr(field) in str(err)


@pytest.mark.parametrize(
    ("fields", "chosen"),
    [
        ({"cniVersion": "0.3.1"}, "0.3.1"),
        ({"cniVersion": "0.4.0"}, "0.4.0"),
        ({"cniVersion": "1.0.0", "cniVersions": ["0.4.0", "1.1.0"]}, "1.1.0"),
        # Versions newer than this runtime are skipped, not fatal (spec 1.1).
        ({"cniVersion": "1.0.0", "cniVersions": ["1.0.0", "2.3.0"]}, "1.0.0"),
        ({"cniVersions": ["0.3.1", "0.4.0"]}, "0.4.0"),
    ],
)
def test_version_choice_is_highest_supported(fields: dict[str, Any], chosen: str) -> None:
    obj = {"name": "net", "plugins": [GOOD_PLUGIN], **fields}
    assert parse_conf_list(json.dumps(obj).encode()).cni_version == chosen


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        ("true", True),
        ("false", False),
        ("True", True),
        ("FALSE", False),
    ],
)
def test_disable_flags_accept_bools_and_strings(value: object, expected: bool) -> None:
    conf = parse_conf_list(json.dumps(conflist(disableCheck=value, disableGC=value)).encode())
    assert conf.disable_check is expected
    assert conf.disable_gc is expected


def test_unknown_fields_survive_and_bytes_are_exact() -> None:
    obj = conflist(
        plugins=[{"type": "bridge", "weird": {"nested": [1, 2]}, "capabilities": {"mac": True}}],
        topLevelExtra="kept",
    )
    data = json.dumps(obj, indent=2).encode()
    conf = parse_conf_list(data, source="s")
    assert conf.bytes == data
    assert conf.raw["topLevelExtra"] == "kept"
    assert conf.plugins[0].raw["weird"] == {"nested": [1, 2]}
    assert conf.plugins[0].capabilities == {"mac": True}
    assert conf.source == "s"


def test_single_conf_file_is_promoted(tmp_path: Path) -> None:
    single = {"cniVersion": "0.4.0", "name": "lo", "type": "loopback", "extra": 1}
    path = tmp_path / "99-lo.conf"
    path.write_text(json.dumps(single))
    conf = load_conf_list(str(path))
    assert conf.name == "lo"
    assert conf.cni_version == "0.4.0"
    assert [p.type for p in conf.plugins] == ["loopback"]
    assert conf.plugins[0].raw == single
    assert json.loads(conf.bytes)["plugins"] == [single]
    assert conf.source == str(path)


def test_promotion_needs_name(tmp_path: Path) -> None:
    path = tmp_path / "99-x.conf"
    path.write_text(json.dumps({"cniVersion": "0.4.0", "type": "loopback"}))
    with pytest.raises(ConfigError, match="'name' is missing"):
        load_conf_list(str(path))


def test_conflist_without_plugins_is_not_promoted(tmp_path: Path) -> None:
    path = tmp_path / "10-x.conflist"
    path.write_text(json.dumps({"cniVersion": "0.4.0", "name": "x", "type": "loopback"}))
    with pytest.raises(ConfigError, match="'plugins' is missing"):
        load_conf_list(str(path))


def test_parse_conf_accepts_both_forms() -> None:
    assert parse_conf(json.dumps(conflist()).encode()).name == "net"
    single = {"cniVersion": "1.0.0", "name": "one", "type": "ptp"}
    assert parse_conf(json.dumps(single).encode()).plugins[0].type == "ptp"


def test_unreadable_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot be read"):
        load_conf_list(str(tmp_path / "absent.conflist"))


def test_conf_files_sorted_and_filtered(tmp_path: Path) -> None:
    for name in ["20-b.conf", "10-a.conflist", "05-c.json", "00-skip.txt", "30-d.conf~"]:
        (tmp_path / name).write_text("{}")
    (tmp_path / "15-dir.conf").mkdir()
    names = [Path(p).name for p in conf_files(str(tmp_path))]
    assert names == ["05-c.json", "10-a.conflist", "15-dir.conf", "20-b.conf"]
    assert conf_files(str(tmp_path / "missing")) == []


def test_special_files_are_refused_with_a_reason_not_skipped_silently(tmp_path: Path) -> None:
    (tmp_path / "10-dir.conflist").mkdir()
    os.mkfifo(tmp_path / "20-fifo.conflist")
    with pytest.raises(ConfigError, match="not a regular file \\(it is a directory\\)"):
        load_conf_list(str(tmp_path / "10-dir.conflist"))
    with pytest.raises(ConfigError, match="not a regular file \\(it is a FIFO\\)"):
        load_conf_list(str(tmp_path / "20-fifo.conflist"))  # and does not block


def test_find_conf_list_takes_first_valid_or_by_name(tmp_path: Path) -> None:
    (tmp_path / "00-broken.conflist").write_text("{not json")
    (tmp_path / "10-a.conflist").write_text(json.dumps(conflist(name="a")))
    (tmp_path / "20-b.conf").write_text(
        json.dumps({"cniVersion": "1.0.0", "name": "b", "type": "x"})
    )
    assert find_conf_list(str(tmp_path)).name == "a"
    assert find_conf_list(str(tmp_path), "b").name == "b"
    with pytest.raises(ConfigError, match="no network 'c'") as info:
        find_conf_list(str(tmp_path), "c")
    assert "00-broken.conflist" in str(info.value)
