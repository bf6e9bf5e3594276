"""The result cache against libcni's cachedInfo, field by field.

libcni (libcni/api.go) declares, in this order: kind "cniCacheV1", containerId,
config ([]byte, so base64), ifName, networkName, netns (omitempty), cniArgs
([][2]string, omitempty), capabilityArgs (omitempty), result (omitempty).
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest

from cnilib.cache import ResultCache, decode_entry, encode_entry
from cnilib.conf import parse_conf_list
from cnilib.types import Result, RuntimeConf

CONFIG = b'{"cniVersion":"1.0.0","name":"net1","plugins":[{"type":"bridge"}]}'
RESULT = Result.from_json(
    {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"interface": 0, "address": "10.201.1.2/24"}],
    }
)
RT = RuntimeConf(
    container_id="c1",
    netns="/var/run/netns/cnilibt-a",
    ifname="eth0",
    args=(("IgnoreUnknown", "1"), ("K8S_POD_NAME", "p")),
    capability_args={"portMappings": [{"hostPort": 31000, "containerPort": 80}]},
)

# What Go's json.Marshal(&cachedInfo{...}) produces for the same attachment.
GO_WRITTEN = {
    "kind": "cniCacheV1",
    "containerId": "c1",
    "config": base64.b64encode(CONFIG).decode(),
    "ifName": "eth0",
    "networkName": "net1",
    "netns": "/var/run/netns/cnilibt-a",
    "cniArgs": [["IgnoreUnknown", "1"], ["K8S_POD_NAME", "p"]],
    "capabilityArgs": {"portMappings": [{"hostPort": 31000, "containerPort": 80}]},
    "result": {
        "cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"interface": 0, "address": "10.201.1.2/24"}],
        "dns": {},
    },
}


@pytest.mark.parametrize("field", list(GO_WRITTEN))
def test_each_field_matches_libcni(field: str) -> None:
    written = json.loads(encode_entry("net1", RT, CONFIG, RESULT))
    assert written[field] == GO_WRITTEN[field]


def test_field_set_and_order_match_libcni() -> None:
    written = json.loads(encode_entry("net1", RT, CONFIG, RESULT))
    assert list(written) == list(GO_WRITTEN)


@pytest.mark.parametrize("field", ["netns", "cniArgs", "capabilityArgs"])
def test_empty_optional_fields_are_omitted_like_omitempty(field: str) -> None:
    bare = RuntimeConf(container_id="c1", netns="", ifname="eth0")
    written = json.loads(encode_entry("net1", bare, CONFIG, RESULT))
    assert field not in written


def test_reads_a_go_written_entry() -> None:
    entry = decode_entry(json.dumps(GO_WRITTEN).encode())
    att = entry.attachment
    assert (att.container_id, att.ifname, att.network_name, att.netns) == (
        "c1",
        "eth0",
        "net1",
        "/var/run/netns/cnilibt-a",
    )
    assert att.config == CONFIG
    assert att.args == RT.args
    assert att.capability_args == RT.capability_args
    assert entry.result is not None
    assert entry.result.to_dict() == GO_WRITTEN["result"]


def test_path_layout_mode_and_roundtrip(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    cache.write("net1", RT, CONFIG, RESULT)
    path = tmp_path / "results" / "net1-c1-eth0"
    assert cache.path("net1", "c1", "eth0") == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "results").stat().st_mode) == 0o700
    assert os.listdir(tmp_path / "results") == ["net1-c1-eth0"]  # no temp file left
    entry = cache.read("net1", "c1", "eth0")
    assert entry is not None and entry.result is not None
    assert entry.result.to_dict() == RESULT.to_dict()
    cache.delete("net1", "c1", "eth0")
    cache.delete("net1", "c1", "eth0")  # repeatable
    assert cache.read("net1", "c1", "eth0") is None


@pytest.mark.parametrize(
    "content",
    [b"", b"{garbage", b'{"kind": "other"}', b'{"kind": "cniCacheV1", "config": "!!"}', b"[]"],
)
def test_corrupt_entries_read_as_absent(tmp_path: Path, content: bytes) -> None:
    cache = ResultCache(str(tmp_path))
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "net1-c1-eth0").write_bytes(content)
    assert cache.read("net1", "c1", "eth0") is None
    assert cache.attachments() == []


def test_attachments_listing(tmp_path: Path) -> None:
    cache = ResultCache(str(tmp_path))
    assert cache.attachments() == []
    cache.write("net1", RT, CONFIG, RESULT)
    cache.write("net2", RuntimeConf("c2", "", "net1"), CONFIG, RESULT)
    (tmp_path / "results" / ".net1-c3-eth0.tmp").write_text("{}")
    found = cache.attachments()
    assert [(a.network_name, a.container_id, a.ifname) for a in found] == [
        ("net1", "c1", "eth0"),
        ("net2", "c2", "net1"),
    ]
    assert [a.container_id for a in cache.attachments("c2")] == ["c2"]


def test_unusable_result_keeps_the_attachment() -> None:
    broken = {**GO_WRITTEN, "result": {"cniVersion": "9.9.9"}}
    entry = decode_entry(json.dumps(broken).encode())
    assert entry.result is None
    assert entry.attachment.container_id == "c1"


def test_single_plugin_config_cached_by_add_network_reads_as_a_list(tmp_path: Path) -> None:
    """libcni's AddNetwork (a `.conf` on its own) caches the plugin's config, not a list; the
    shim's GC parses every cached config with parse_conf_list and used to skip these."""
    single = {"cniVersion": "1.0.0", "name": "legacy", "type": "bridge", "bridge": "x0"}
    entry = dict(GO_WRITTEN, networkName="legacy")
    entry["config"] = base64.b64encode(json.dumps(single).encode()).decode()
    results = tmp_path / "results"
    results.mkdir()
    (results / "legacy-c1-eth0").write_text(json.dumps(entry))
    (att,) = ResultCache(str(tmp_path)).attachments()
    net = parse_conf_list(att.config, "<result cache>")
    assert (net.name, net.cni_version) == ("legacy", "1.0.0")
    assert [p.raw for p in net.plugins] == [single]


def test_list_configs_and_undecodable_configs_are_kept_verbatim() -> None:
    assert decode_entry(json.dumps(GO_WRITTEN).encode()).attachment.config == CONFIG
    odd = dict(GO_WRITTEN, config=base64.b64encode(b"not json").decode())
    assert decode_entry(json.dumps(odd).encode()).attachment.config == b"not json"
