"""The etcd gateway's JSON to our types and back (overlay.store.etcd_codec), no etcd needed.

The messages are shaped as etcd 3.4's gateway writes them: proto3 leaves out every field at
its default, int64 values are strings, bytes are base64.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from overlay.store.etcd_codec import (
    EtcdServerError,
    JSONStream,
    MalformedResponseError,
    api_prefix,
    decode_event,
    decode_kv,
    decode_range,
    decode_succeeded,
    decode_watch_message,
    error_from_body,
    prefix_range_end,
    put_request,
    range_request,
    txn_create_request,
    txn_replace_request,
    watch_create_request,
)
from overlay.store.etcd_http import Endpoint
from overlay.store.kv import KeyValue


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


HEADER = {"cluster_id": "1511", "member_id": "1366", "revision": "7", "raft_term": "2"}


def test_kv_with_every_field() -> None:
    kv = decode_kv(
        {
            "key": b64("/coreos.com/network/subnets/10.244.1.0-24"),
            "create_revision": "2",
            "mod_revision": "5",
            "version": "3",
            "value": b64('{"PublicIP":"192.0.2.1"}'),
            "lease": "7587869227913526792",
        }
    )
    assert kv == KeyValue(
        key="/coreos.com/network/subnets/10.244.1.0-24",
        value=b'{"PublicIP":"192.0.2.1"}',
        create_revision=2,
        mod_revision=5,
        version=3,
        lease=7587869227913526792,
    )


def test_kv_without_lease_or_value_takes_the_defaults() -> None:
    # A reservation (no lease) with an empty value: etcd leaves both fields out.
    kv = decode_kv({"key": b64("/k"), "create_revision": "2", "mod_revision": "2", "version": "1"})
    assert (kv.lease, kv.value) == (0, b"")


def test_put_event_has_no_type_and_delete_event_only_key_and_revision() -> None:
    put = decode_event(
        {"kv": {"key": b64("/k"), "mod_revision": "3", "version": "1", "value": b64("v")}}
    )
    assert put.type == "PUT" and put.prev_kv is None and put.kv.value == b"v"
    delete = decode_event(
        {
            "type": "DELETE",
            "kv": {"key": b64("/k"), "mod_revision": "4"},
            "prev_kv": {
                "key": b64("/k"),
                "create_revision": "3",
                "mod_revision": "3",
                "version": "1",
                "value": b64("v"),
            },
        }
    )
    assert delete.type == "DELETE"
    assert delete.kv == KeyValue("/k", b"", 0, 4, 0, 0)
    assert delete.prev_kv is not None and delete.prev_kv.value == b"v"


def test_integers_as_json_numbers_are_accepted() -> None:
    assert decode_kv({"key": b64("/k"), "mod_revision": 9}).mod_revision == 9


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ({"key": "not base64!"}, "field 'key' is not base64"),
        ({"key": 5}, "field 'key' is not base64 text"),
        ({"key": b64("/k"), "mod_revision": "ten"}, "field 'mod_revision' is not an integer"),
        ({"key": b64("/k"), "version": True}, "field 'version' is not an integer"),
        ({"key": b64("/k"), "lease": None}, "field 'lease' is not an integer"),
        (["not", "an", "object"], "key-value is not a JSON object"),
    ],
)
def test_malformed_kv_is_refused_with_the_field_named(message: Any, error: str) -> None:
    with pytest.raises(MalformedResponseError, match=error):
        decode_kv(message)


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(MalformedResponseError, match="unknown watch event type 'EXPIRE'"):
        decode_event({"type": "EXPIRE", "kv": {}})


def test_range_response_with_and_without_kvs() -> None:
    kvs, revision = decode_range(
        {"header": HEADER, "kvs": [{"key": b64("/a"), "mod_revision": "2"}], "count": "1"}
    )
    assert [kv.key for kv in kvs] == ["/a"] and revision == 7
    assert decode_range({"header": HEADER}) == ([], 7)  # no key: no "kvs", no "count"


def test_failed_txn_leaves_succeeded_out() -> None:
    assert decode_succeeded({"header": HEADER, "succeeded": True, "responses": []})
    assert not decode_succeeded({"header": HEADER})


def test_watch_created_message() -> None:
    response = decode_watch_message({"result": {"header": HEADER, "created": True}})
    assert response.created and not response.canceled and response.events == []
    assert (response.revision, response.compact_revision) == (7, 0)


def test_watch_events_message() -> None:
    response = decode_watch_message(
        {"result": {"header": HEADER, "events": [{"kv": {"key": b64("/a"), "mod_revision": "7"}}]}}
    )
    assert not response.created and [e.kv.key for e in response.events] == ["/a"]


def test_watch_compacted_message_has_no_revision_in_its_header() -> None:
    # As 3.4 sends it: the header's revision is left out, compact_revision is set.
    response = decode_watch_message(
        {"result": {"header": {"raft_term": "2"}, "canceled": True, "compact_revision": "3"}}
    )
    assert response.canceled and response.compact_revision == 3 and response.revision == 0


def test_watch_canceled_for_auth() -> None:
    reason = "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
    response = decode_watch_message(
        {
            "result": {
                "header": HEADER,
                "watch_id": "-1",
                "created": True,
                "canceled": True,
                "cancel_reason": reason,
            }
        }
    )
    assert response.created and response.canceled and response.cancel_reason == reason


@pytest.mark.parametrize(
    "error",
    [
        {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader"},  # 3.4 stream error
        {"code": 14, "message": "etcdserver: no leader"},  # google.rpc.Status (3.5+)
    ],
)
def test_watch_stream_error_becomes_a_server_error(error: dict[str, Any]) -> None:
    with pytest.raises(EtcdServerError, match="no leader") as info:
        decode_watch_message({"error": error})
    assert info.value.code == 14


def test_watch_message_without_result_is_refused() -> None:
    with pytest.raises(MalformedResponseError, match="watch result is not a JSON object"):
        decode_watch_message({"something": 1})


def test_error_bodies() -> None:
    text = "etcdserver: requested lease not found"
    body = json.dumps({"error": text, "message": text, "code": 5}).encode()
    err = error_from_body(404, body)
    assert err.code == 5 and str(err) == "etcdserver: requested lease not found"
    err = error_from_body(404, b"404 page not found\n")
    assert err.code == 2 and str(err) == "HTTP 404: 404 page not found"
    assert str(error_from_body(502, b"")) == "HTTP 502: no body"


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        (b"/coreos.com/network/subnets/", b"/coreos.com/network/subnets0"),
        (b"a", b"b"),
        (b"a\xff", b"b"),
        (b"a\xff\xff", b"b"),
        (b"\xff\xff", b"\x00"),
        (b"", b"\x00"),
    ],
)
def test_prefix_range_end(prefix: bytes, end: bytes) -> None:
    assert prefix_range_end(prefix) == end


def test_requests_carry_base64_and_int64_strings() -> None:
    assert range_request("/k") == {"key": b64("/k")}
    assert range_request("/p/", prefix=True) == {"key": b64("/p/"), "range_end": b64("/p0")}
    assert put_request("/k", b"\x00v", 42) == {
        "key": b64("/k"),
        "value": b64(b"\x00v"),
        "lease": "42",
    }
    create = txn_create_request("/k", b"v", 0)
    assert create["compare"] == [
        {"target": "CREATE", "result": "EQUAL", "key": b64("/k"), "create_revision": "0"}
    ]
    assert create["success"] == [{"request_put": put_request("/k", b"v", 0)}]
    replace = txn_replace_request("/k", b"v", 9, 17)
    assert (
        replace["compare"][0]["target"] == "MOD" and replace["compare"][0]["mod_revision"] == "17"
    )
    assert replace["success"][0]["request_put"]["lease"] == "9"
    watch = watch_create_request("/p/", 12)["create_request"]
    assert watch == {
        "key": b64("/p/"),
        "range_end": b64("/p0"),
        "start_revision": "12",
        "prev_kv": True,
    }
    json.dumps(watch)  # serialisable as is


def test_keys_that_are_not_utf8_round_trip() -> None:
    kv = decode_kv({"key": b64(b"/k\xff")})
    assert range_request(kv.key) == {"key": b64(b"/k\xff")}


@pytest.mark.parametrize(
    ("version", "prefix"),
    [
        ({"etcdserver": "3.4.23", "etcdcluster": "3.4.0"}, "/v3"),
        ({"etcdserver": "3.6.4", "etcdcluster": "3.6.0"}, "/v3"),
        ({"etcdserver": "3.5.17", "etcdcluster": "not_decided"}, "/v3"),
        ({"etcdserver": "3.3.27", "etcdcluster": "3.3.0"}, "/v3beta"),
        ({"etcdserver": "3.2.32", "etcdcluster": "3.2.0"}, "/v3alpha"),
        ({"etcdserver": "4.0.0", "etcdcluster": "4.0.0"}, "/v3"),
    ],
)
def test_api_prefix_from_version(version: dict[str, str], prefix: str) -> None:
    assert api_prefix(version) == prefix


def test_api_prefix_without_a_version_is_refused() -> None:
    with pytest.raises(MalformedResponseError, match="names no version"):
        api_prefix({"etcdserver": "", "etcdcluster": "not_decided"})


MESSAGES = [
    {"result": {"header": HEADER, "created": True}},
    {"result": {"header": HEADER, "events": [{"kv": {"key": b64("/é"), "value": b64("ü")}}]}},
    {"result": {"header": HEADER, "events": [{"type": "DELETE", "kv": {"key": b64("/ß")}}]}},
]
# Non-ASCII text in the JSON itself, so a cut can fall inside a multi-byte character.
STREAM = (
    "\n".join(json.dumps(m, ensure_ascii=False) for m in [*MESSAGES, {"note": "ñ"}]) + "\n"
).encode()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_json_stream_whatever_the_chunk_boundaries(size: int) -> None:
    stream = JSONStream(limit=1 << 20)
    objects: list[Any] = []
    for start in range(0, len(STREAM), size):
        objects += stream.feed(STREAM[start : start + size])
    assert objects == [*MESSAGES, {"note": "ñ"}]


def test_json_stream_objects_without_separators() -> None:
    assert JSONStream(limit=100).feed(b'{"a":1}{"b":2}  {"c"') == [{"a": 1}, {"b": 2}]


def test_json_stream_bounds_an_unfinished_object() -> None:
    stream = JSONStream(limit=64)
    stream.feed(b'{"result": "' + b"x" * 32)
    with pytest.raises(MalformedResponseError, match="exceeds 64 bytes"):
        stream.feed(b"x" * 40)


def test_json_stream_refuses_bytes_that_are_not_utf8() -> None:
    with pytest.raises(MalformedResponseError, match="not UTF-8"):
        JSONStream(limit=64).feed(b'{"a":"\xff\xfe"}')


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://127.0.0.1:2379", Endpoint("http://127.0.0.1:2379", False, "127.0.0.1", 2379)),
        (
            "https://etcd.example:4001/",
            Endpoint("https://etcd.example:4001/", True, "etcd.example", 4001),
        ),
        ("http://[fd00::1]:2379", Endpoint("http://[fd00::1]:2379", False, "fd00::1", 2379)),
        ("http://10.0.0.1", Endpoint("http://10.0.0.1", False, "10.0.0.1", 2379)),
    ],
)
def test_endpoint_parse(url: str, endpoint: Endpoint) -> None:
    assert Endpoint.parse(url) == endpoint


def test_endpoint_authority_brackets_ipv6() -> None:
    assert Endpoint.parse("http://[fd00::1]:2379").authority == "[fd00::1]:2379"


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("127.0.0.1:2379", "want http"),
        ("unix:///run/etcd.sock", "want http"),
        ("http://127.0.0.1:2379/v3", "has no path"),
        ("http://127.0.0.1:2379?x=1", "has no path"),
        ("http://127.0.0.1:port", "invalid etcd endpoint"),
    ],
)
def test_endpoint_parse_refuses(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        Endpoint.parse(url)
