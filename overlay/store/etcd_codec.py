"""etcd v3 JSON gateway messages to and from our types: pure functions, no I/O.

The gateway speaks the protobuf JSON mapping of etcd's `rpc.proto`: bytes fields (keys, values)
are base64, int64 fields are JSON strings, and fields at their default value are left out, so a
PUT event has no `type`, a key without a lease has no `lease`, and a failed txn has no
`succeeded` (CROSS-NODE.md §5). Every decoder here treats a missing field as its default.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from overlay.store.kv import KeyValue, StoreError, WatchEvent

# gRPC status codes the client acts on (google.golang.org/grpc/codes).
GRPC_CANCELED = 1
GRPC_DEADLINE_EXCEEDED = 4
GRPC_NOT_FOUND = 5
GRPC_UNAVAILABLE = 14
GRPC_UNAUTHENTICATED = 16
# The member is stopping or cannot serve now (its gateway says "grpc: the client connection is
# closing" with Canceled while etcd shuts down); another member, or a later try, may do better.
GRPC_TRANSIENT = frozenset({GRPC_CANCELED, GRPC_DEADLINE_EXCEEDED, GRPC_UNAVAILABLE})


class EtcdServerError(StoreError):
    """etcd answered with an error: `code` is its gRPC status code, `message` its text."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


class MalformedResponseError(StoreError):
    """The gateway's answer is not what etcd's API defines."""


def encode_bytes(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def key_bytes(key: str) -> bytes:
    # surrogateescape round-trips keys that are not UTF-8 (decode_kv uses the same).
    return key.encode("utf-8", "surrogateescape")


def prefix_range_end(prefix: bytes) -> bytes:
    """The `range_end` that selects every key starting with `prefix` (etcd's GetPrefixRangeEnd).

    The last byte below 0xff is incremented and what follows it dropped; a prefix of only 0xff
    bytes (or the empty prefix) has no upper bound, which etcd spells as the single byte 0.
    """
    end = bytearray(prefix)
    while end:
        if end[-1] < 0xFF:
            end[-1] += 1
            return bytes(end)
        end.pop()
    return b"\x00"


def range_request(key: str, *, prefix: bool = False) -> dict[str, Any]:
    raw = key_bytes(key)
    body: dict[str, Any] = {"key": encode_bytes(raw)}
    if prefix:
        body["range_end"] = encode_bytes(prefix_range_end(raw))
    return body


def put_request(key: str, value: bytes, lease: int) -> dict[str, Any]:
    return {"key": encode_bytes(key_bytes(key)), "value": encode_bytes(value), "lease": str(lease)}


def txn_create_request(key: str, value: bytes, lease: int) -> dict[str, Any]:
    """A txn that puts the key only if it has never been created (create_revision == 0)."""
    compare = {
        "target": "CREATE",
        "result": "EQUAL",
        "key": encode_bytes(key_bytes(key)),
        "create_revision": "0",
    }
    return {"compare": [compare], "success": [{"request_put": put_request(key, value, lease)}]}


def txn_replace_request(key: str, value: bytes, lease: int, mod_revision: int) -> dict[str, Any]:
    """A txn that puts the key only if it was last modified at `mod_revision`."""
    compare = {
        "target": "MOD",
        "result": "EQUAL",
        "key": encode_bytes(key_bytes(key)),
        "mod_revision": str(mod_revision),
    }
    return {"compare": [compare], "success": [{"request_put": put_request(key, value, lease)}]}


def watch_create_request(prefix: str, start_revision: int) -> dict[str, Any]:
    raw = key_bytes(prefix)
    create = {
        "key": encode_bytes(raw),
        "range_end": encode_bytes(prefix_range_end(raw)),
        "start_revision": str(start_revision),
        "prev_kv": True,
    }
    return {"create_request": create}


def decode_int(message: Mapping[str, Any], name: str) -> int:
    """An int64 field: a JSON string per the protobuf mapping (a number is accepted too)."""
    value = message.get(name, 0)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise MalformedResponseError(f"field {name!r} is not an integer: {value!r}")
    try:
        return int(value)
    except ValueError as err:
        raise MalformedResponseError(f"field {name!r} is not an integer: {value!r}") from err


def decode_bytes(message: Mapping[str, Any], name: str) -> bytes:
    value = message.get(name, "")
    if not isinstance(value, str):
        raise MalformedResponseError(f"field {name!r} is not base64 text: {value!r}")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as err:
        raise MalformedResponseError(f"field {name!r} is not base64: {value!r}") from err


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedResponseError(f"{what} is not a JSON object: {value!r}")
    return value


def _list(message: Mapping[str, Any], name: str) -> list[Any]:
    value = message.get(name, [])
    if not isinstance(value, list):
        raise MalformedResponseError(f"field {name!r} is not a list: {value!r}")
    return value


def decode_kv(message: Any) -> KeyValue:
    kv = _object(message, "key-value")
    return KeyValue(
        key=decode_bytes(kv, "key").decode("utf-8", "surrogateescape"),
        value=decode_bytes(kv, "value"),
        create_revision=decode_int(kv, "create_revision"),
        mod_revision=decode_int(kv, "mod_revision"),
        version=decode_int(kv, "version"),
        lease=decode_int(kv, "lease"),
    )


def decode_event(message: Any) -> WatchEvent:
    event = _object(message, "watch event")
    kind = event.get("type", "PUT")  # PUT is the enum's zero value, so it is left out
    if kind not in ("PUT", "DELETE"):
        raise MalformedResponseError(f"unknown watch event type {kind!r}")
    prev = event.get("prev_kv")
    return WatchEvent(
        type="PUT" if kind == "PUT" else "DELETE",
        kv=decode_kv(event.get("kv", {})),
        prev_kv=None if prev is None else decode_kv(prev),
    )


def header_revision(response: Mapping[str, Any]) -> int:
    return decode_int(_object(response.get("header", {}), "response header"), "revision")


def decode_range(response: Mapping[str, Any]) -> tuple[list[KeyValue], int]:
    return [decode_kv(kv) for kv in _list(response, "kvs")], header_revision(response)


def decode_succeeded(response: Mapping[str, Any]) -> bool:
    value = response.get("succeeded", False)
    if not isinstance(value, bool):
        raise MalformedResponseError(f"field 'succeeded' is not a boolean: {value!r}")
    return value


@dataclass(frozen=True)
class WatchResponse:
    """One message of the watch stream."""

    created: bool
    canceled: bool
    cancel_reason: str
    compact_revision: int
    revision: int
    events: list[WatchEvent]


def decode_watch_message(message: Any) -> WatchResponse:
    """A stream message: `{"result": WatchResponse}` or `{"error": Status}`."""
    outer = _object(message, "watch stream message")
    if "error" in outer:
        raise stream_error(_object(outer["error"], "watch stream error"))
    result = _object(outer.get("result"), "watch result")
    canceled = result.get("canceled", False)
    created = result.get("created", False)
    if not isinstance(canceled, bool) or not isinstance(created, bool):
        raise MalformedResponseError(f"watch flags are not booleans: {result!r}")
    return WatchResponse(
        created=created,
        canceled=canceled,
        cancel_reason=str(result.get("cancel_reason", "")),
        compact_revision=decode_int(result, "compact_revision"),
        revision=header_revision(result),
        events=[decode_event(event) for event in _list(result, "events")],
    )


def stream_error(status: Mapping[str, Any]) -> EtcdServerError:
    # grpc-gateway spells a stream's error as {grpc_code, http_code, message} in 3.4 and as a
    # google.rpc.Status {code, message} in later versions.
    code = status.get("grpc_code", status.get("code", 2))
    message = str(status.get("message", status.get("error", "unknown error")))
    return EtcdServerError(message, code if isinstance(code, int) else 2)


def error_from_body(status: int, body: bytes) -> EtcdServerError:
    """The error an HTTP status other than 200 carries: `{"error", "message", "code"}`."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    if isinstance(parsed, Mapping):
        return stream_error(parsed)
    text = body[:200].decode("utf-8", "replace").strip()
    return EtcdServerError(f"HTTP {status}: {text or 'no body'}", 2)


def api_prefix(version: Mapping[str, Any]) -> str:
    """The gateway's path prefix for the cluster version `/version` reports.

    etcd 3.4 serves `/v3/` (and still `/v3beta/`), 3.5+ only `/v3/`, 3.3 `/v3beta/`, 3.2
    `/v3alpha/`. While the cluster version is not decided yet the server's version decides.
    """
    for field in ("etcdcluster", "etcdserver"):
        parts = str(version.get(field, "")).split(".")
        if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
            major, minor = int(parts[0]), int(parts[1])
            if (major, minor) >= (3, 4):
                return "/v3"
            if (major, minor) == (3, 3):
                return "/v3beta"
            return "/v3alpha"
    raise MalformedResponseError(f"etcd /version names no version: {dict(version)!r}")


class JSONStream:
    """Splits the watch stream's bytes into JSON objects, whatever the chunk boundaries.

    The gateway writes one object per message (newline-separated); chunks of the HTTP body
    need not line up with them. `limit` bounds the bytes one unfinished object may hold.
    """

    def __init__(self, limit: int) -> None:
        self._buffer = ""
        self._limit = limit
        self._decoder = json.JSONDecoder()
        # A chunk may end inside a multi-byte character: the incremental decoder keeps it.
        self._text = codecs.getincrementaldecoder("utf-8")()

    def feed(self, data: bytes) -> list[Any]:
        try:
            self._buffer += self._text.decode(data)
        except UnicodeDecodeError as err:
            raise MalformedResponseError(f"watch stream is not UTF-8: {err}") from err
        objects: list[Any] = []
        while True:
            text = self._buffer.lstrip()
            if not text:
                self._buffer = ""
                break
            try:
                obj, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError:
                self._buffer = text
                break
            objects.append(obj)
            self._buffer = text[end:]
        if len(self._buffer) > self._limit:
            raise MalformedResponseError(
                f"watch message exceeds {self._limit} bytes without ending"
            )
        return objects
