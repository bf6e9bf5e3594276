"""A small asyncio client of etcd's v3 JSON gateway, the store pyflanneld keeps leases in.

Why our own (CROSS-NODE.md §5 weighs the Python clients): `etcd3` is dead and does not import
with protobuf ≥ 4 (cri-shim needs protobuf ≥ 7); `python-etcd` speaks only the v2 API, which
cannot see v3 keys; `aetcd` has no TLS and takes one host only, where flanneld takes an endpoint
list and CA/cert/key; `etcd3aio` resumes silently after a compaction and so loses events;
`etcd3gw` is synchronous (requests plus threads). Talking to etcd's gRPC directly would mean
vendoring etcd's .proto files and regenerating on every protobuf bump. The gateway needs none
of that: JSON over HTTP/1.1 (h11 parses it), the same on Debian's etcd 3.4 and on 3.5+, and a
client small enough to read in one sitting and to fake in unit tests (`overlay.store.kv`).

Behaviour:
- Endpoints are tried in order, starting with the one that answered last; a connection error
  or an "unavailable" answer moves on to the next. A request that may have reached etcd is
  retried elsewhere only when doing it twice is harmless (never a txn or a lease grant).
- Every call, watch set-up included, has `timeout` seconds in all; each endpoint gets a share
  of what is left, so a black-holed first endpoint cannot eat the whole budget.
- With `username`/`password`, a token from `/v3/auth/authenticate` goes in the `Authorization`
  header. etcd's default "simple" tokens are known only to the member that issued them and
  expire, so tokens are kept per endpoint and fetched again when etcd says a token is invalid.
- Response bodies and watch messages are bounded in size.
- The gateway maps the API onto paths `/v3/...` (etcd ≥ 3.4), `/v3beta/...` (3.3); the prefix
  is read from each endpoint's `/version` once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from overlay.store.etcd_codec import (
    GRPC_NOT_FOUND,
    GRPC_TRANSIENT,
    GRPC_UNAUTHENTICATED,
    EtcdServerError,
    JSONStream,
    MalformedResponseError,
    WatchResponse,
    api_prefix,
    decode_int,
    decode_range,
    decode_succeeded,
    decode_watch_message,
    error_from_body,
    header_revision,
    put_request,
    range_request,
    txn_create_request,
    txn_replace_request,
    watch_create_request,
)
from overlay.store.etcd_http import Endpoint, HTTPConnection, TransportError
from overlay.store.kv import (
    CompactedError,
    KeyValue,
    StoreError,
    StoreUnavailableError,
    WatchEvent,
)

__all__ = [
    "CompactedError",
    "EtcdClient",
    "EtcdServerError",
    "KeyValue",
    "StoreError",
    "StoreUnavailableError",
    "WatchEvent",
]

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 32 * 1024 * 1024
MAX_WATCH_MESSAGE_BYTES = 16 * 1024 * 1024

T = TypeVar("T")


class AuthenticationError(EtcdServerError):
    """etcd refused the username and password."""


class _EndpointFailed(Exception):
    """This endpoint did not serve the request; `sent` tells whether etcd may have seen it."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class _TokenRejected(Exception):
    """etcd said our token is invalid (expired, or issued by another member)."""


@dataclass(frozen=True)
class _Watch:
    """A watch etcd has created: its connection, its stream, the messages read with `created`."""

    connection: HTTPConnection
    stream: JSONStream
    early: list[WatchResponse]


@dataclass
class _EndpointState:
    endpoint: Endpoint
    prefix: str | None = None  # the gateway's API prefix, from /version
    token: str | None = None


def _ssl_context(cafile: str | None, certfile: str | None, keyfile: str | None) -> ssl.SSLContext:
    if keyfile and not certfile:
        raise ValueError("an etcd key file needs its certificate file (--etcd-certfile)")
    try:
        context = ssl.create_default_context(cafile=cafile)
        if certfile:
            context.load_cert_chain(certfile, keyfile)
    except (OSError, ssl.SSLError) as err:
        files = ", ".join(f for f in (cafile, certfile, keyfile) if f)
        raise ValueError(f"failed to load the etcd TLS files {files}: {err}") from err
    return context


def _is_token_error(err: EtcdServerError) -> bool:
    return err.code == GRPC_UNAUTHENTICATED and "auth token" in str(err)


class EtcdClient:
    """The `overlay.store.kv.KVStore` on etcd's v3 JSON gateway (see the module docstring)."""

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        cafile: str | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        username: str | None = None,
        password: str | None = None,
        timeout: float = 5.0,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        max_watch_message_bytes: int = MAX_WATCH_MESSAGE_BYTES,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = endpoints.split(",")
        parsed = [Endpoint.parse(url) for url in endpoints if url.strip()]
        if not parsed:
            raise ValueError("no etcd endpoint given")
        if bool(username) != (password is not None):
            raise ValueError("etcd username and password go together")
        if timeout <= 0:
            raise ValueError(f"etcd timeout must be positive, not {timeout}")
        self._states = [_EndpointState(endpoint) for endpoint in parsed]
        self._current = 0  # index of the endpoint that answered last
        needs_tls = cafile or certfile or any(e.tls for e in parsed)
        self._ssl = _ssl_context(cafile, certfile, keyfile) if needs_tls else None
        self._username = username
        self._password = password
        self._timeout = timeout
        self._keepalive = max(1, round(timeout))
        self._max_response = max_response_bytes
        self._max_watch_message = max_watch_message_bytes
        self._watches: set[HTTPConnection] = set()
        self._closed = False

    @property
    def endpoints(self) -> list[str]:
        return [state.endpoint.url for state in self._states]

    # --- KV -------------------------------------------------------------------------------

    async def get(self, key: str) -> KeyValue | None:
        """The key, or None when it does not exist."""
        response = await self._call("get key", "/kv/range", range_request(key))
        kvs, _ = decode_range(response)
        return kvs[0] if kvs else None

    async def list_prefix(self, prefix: str) -> tuple[list[KeyValue], int]:
        """Every key under `prefix` (sorted by key) and the revision the list was taken at.

        Watching from that revision + 1 misses nothing and repeats nothing.
        """
        body = range_request(prefix, prefix=True)
        return decode_range(await self._call("list prefix", "/kv/range", body))

    async def put(self, key: str, value: bytes, *, lease: int = 0) -> int:
        """Write the key, attached to `lease` (0 = none); returns the revision of the write."""
        body = put_request(key, value, lease)
        return header_revision(await self._call("put key", "/kv/put", body))

    async def create(self, key: str, value: bytes, *, lease: int = 0) -> bool:
        """Write the key only if it does not exist (a txn on create_revision == 0)."""
        body = txn_create_request(key, value, lease)
        response = await self._call("create key", "/kv/txn", body, idempotent=False)
        return decode_succeeded(response)

    async def replace(self, key: str, value: bytes, *, lease: int, mod_revision: int) -> bool:
        """Write the key only if its mod_revision is still `mod_revision` (a txn)."""
        body = txn_replace_request(key, value, lease, mod_revision)
        response = await self._call("replace key", "/kv/txn", body, idempotent=False)
        return decode_succeeded(response)

    async def delete(self, key: str) -> bool:
        """Remove the key; False when it did not exist."""
        response = await self._call("delete key", "/kv/deleterange", range_request(key))
        return decode_int(response, "deleted") > 0

    async def compact(self, revision: int) -> None:
        """Drop the history before `revision` (used by tests and by operators' tools)."""
        body = {"revision": str(revision), "physical": True}
        await self._call("compact", "/kv/compaction", body)

    # --- leases ---------------------------------------------------------------------------

    async def grant(self, ttl: int) -> tuple[int, int]:
        """A new lease of `ttl` seconds: (lease id, TTL etcd granted)."""
        response = await self._call(
            "grant lease", "/lease/grant", {"TTL": str(ttl)}, idempotent=False
        )
        return decode_int(response, "ID"), decode_int(response, "TTL")

    async def revoke(self, lease: int) -> None:
        """End the lease, deleting its keys; a lease that is already gone is fine."""
        try:
            await self._call("revoke lease", "/lease/revoke", {"ID": str(lease)})
        except EtcdServerError as err:
            if err.code != GRPC_NOT_FOUND:
                raise

    async def time_to_live(self, lease: int) -> int:
        """Seconds left on the lease; -1 when it has expired, was revoked, or is 0."""
        if lease == 0:
            return -1
        response = await self._call("read lease TTL", "/lease/timetolive", {"ID": str(lease)})
        return decode_int(response, "TTL")

    # --- watch ----------------------------------------------------------------------------

    async def watch(
        self, prefix: str, start_revision: int
    ) -> AsyncGenerator[list[WatchEvent], None]:
        """Batches of changes under `prefix` from `start_revision` on (with prev_kv).

        Raises CompactedError when `start_revision` is older than etcd's history, and
        StoreUnavailableError when no endpoint takes the watch or the stream breaks; the
        caller resumes from the last mod_revision it saw + 1. Ends when the client is closed.
        The connection is opened on the first `anext()` and closed by `aclose()` (or
        `contextlib.aclosing`), by the end of the iteration, or by `EtcdClient.aclose()`.
        """
        self._check_open()
        what = f"watch {prefix!r} from revision {start_revision}"
        body = watch_create_request(prefix, start_revision)

        async def attempt(state: _EndpointState, until: float) -> _Watch:
            return await self._open_watch(state, until, body)

        watch = await self._call_with_failover(what, attempt, idempotent=True)
        self._watches.add(watch.connection)
        try:
            # After set-up a watch may be silent for hours: no timeout here. A peer that
            # vanishes without closing is noticed by TCP keepalive (etcd_http).
            responses = watch.early
            while True:
                for response in responses:
                    if events := self._watch_events(what, response):
                        yield events
                try:
                    chunk = await watch.connection.chunk()
                    if chunk is None:
                        raise TransportError(f"{watch.connection.endpoint.url} ended the stream")
                    responses = [decode_watch_message(m) for m in watch.stream.feed(chunk)]
                except (TransportError, EtcdServerError) as err:
                    if self._closed:
                        return
                    # The watch was created, so whatever ends it now is the member's or the
                    # path's trouble; a lasting refusal shows again when the caller re-creates it.
                    raise StoreUnavailableError(f"failed to {what}: {err}") from err
                except MalformedResponseError as err:
                    raise MalformedResponseError(f"failed to {what}: {err}") from err
        finally:
            self._watches.discard(watch.connection)
            watch.connection.close()

    def _watch_events(self, what: str, response: WatchResponse) -> list[WatchEvent]:
        if response.compact_revision:
            raise CompactedError(
                f"failed to {what}: compacted, oldest revision is {response.compact_revision}",
                response.compact_revision,
            )
        if response.canceled:
            raise StoreError(f"failed to {what}: etcd canceled it: {response.cancel_reason}")
        return response.events

    async def _open_watch(
        self, state: _EndpointState, until: float, body: Mapping[str, Any]
    ) -> _Watch:
        """POST the create request and read the stream up to etcd's `created` answer."""
        connection = await self._connect(state, until)
        try:
            async with asyncio.timeout_at(until):
                await self._send(state, connection, "/watch", body)
                status = await connection.response()
                if status != 200:
                    raise error_from_body(status, await connection.body(self._max_response))
                stream = JSONStream(self._max_watch_message)
                while True:
                    chunk = await connection.chunk()
                    if chunk is None:
                        raise TransportError("the stream ended before the watch was created")
                    responses = [decode_watch_message(m) for m in stream.feed(chunk)]
                    for index, response in enumerate(responses):
                        if response.canceled and "auth token" in response.cancel_reason:
                            raise _TokenRejected(response.cancel_reason)
                        if response.created:
                            return _Watch(connection, stream, responses[index:])
        except TimeoutError as err:
            connection.close()
            raise _EndpointFailed("no answer in time", sent=True) from err
        except TransportError as err:
            connection.close()
            raise _EndpointFailed(str(err), sent=True) from err
        except BaseException:
            connection.close()
            raise

    # --- plumbing -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """End open watches (their iterators stop); idempotent. Later calls raise StoreError."""
        self._closed = True
        for connection in list(self._watches):
            connection.close()
        self._watches.clear()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the etcd client is closed")

    async def _call(
        self, what: str, path: str, body: Mapping[str, Any], *, idempotent: bool = True
    ) -> Mapping[str, Any]:
        """POST `body` to the gateway's `path` on the first endpoint that serves it."""
        self._check_open()

        async def attempt(state: _EndpointState, until: float) -> Mapping[str, Any]:
            # A request etcd may have applied is never sent elsewhere, so once sent it may
            # use all the call's time rather than this endpoint's share.
            return await self._exchange(
                state, path, body, connect_until=until, answer_until=until if idempotent else None
            )

        return await self._call_with_failover(what, attempt, idempotent=idempotent)

    async def _call_with_failover(
        self,
        what: str,
        attempt: Callable[[_EndpointState, float], Awaitable[T]],
        *,
        idempotent: bool,
    ) -> T:
        """`attempt` on one endpoint after the other, within the call's `timeout`.

        Endpoint k of n left gets 1/k of the remaining time (an absolute deadline), so a
        black-holed endpoint leaves time for the ones after it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout
        failures: list[str] = []
        count = len(self._states)
        first = self._current
        try:
            async with asyncio.timeout_at(deadline):
                for offset in range(count):
                    index = (first + offset) % count
                    state = self._states[index]
                    until = loop.time() + (deadline - loop.time()) / (count - offset)
                    try:
                        result = await self._authenticated(state, until, attempt)
                    except _EndpointFailed as err:
                        failures.append(f"{state.endpoint.url}: {err}")
                        log.debug("etcd %s failed to %s: %s", state.endpoint.url, what, err)
                        if err.sent and not idempotent:
                            raise StoreUnavailableError(
                                f"failed to {what}: {state.endpoint.url}: {err} (outcome unknown)"
                            ) from err
                        continue
                    except EtcdServerError as err:
                        raise type(err)(f"failed to {what}: {err}", err.code) from err
                    except MalformedResponseError as err:
                        raise MalformedResponseError(
                            f"failed to {what}: {state.endpoint.url}: {err}"
                        ) from err
                    if index != self._current:
                        log.info("etcd: now using endpoint %s", state.endpoint.url)
                        self._current = index
                    return result
        except TimeoutError as err:
            failures.append(f"no answer within {self._timeout:g} s")
            raise StoreUnavailableError(f"failed to {what}: {'; '.join(failures)}") from err
        raise StoreUnavailableError(
            f"failed to {what}: no etcd endpoint answered: {'; '.join(failures)}"
        )

    async def _authenticated(
        self,
        state: _EndpointState,
        until: float,
        attempt: Callable[[_EndpointState, float], Awaitable[T]],
    ) -> T:
        """One attempt on `state`'s endpoint, fetching a new token once if etcd rejects ours."""
        for retry in (False, True):
            await self._prepare(state, until)
            try:
                return await attempt(state, until)
            except _TokenRejected as err:
                state.token = None
                if retry:
                    raise _EndpointFailed(
                        f"token rejected after a new one: {err}", sent=False
                    ) from err
            except EtcdServerError as err:
                if _is_token_error(err) and not retry:
                    state.token = None  # etcd refused the request: nothing was applied
                    continue
                if err.code in GRPC_TRANSIENT:
                    # No leader, a stopping member, or "request timed out" — in the last case
                    # the request may still be applied, so it counts as sent.
                    raise _EndpointFailed(str(err), sent=True) from err
                raise
        raise AssertionError("unreachable")

    async def _prepare(self, state: _EndpointState, until: float) -> None:
        """Learn the endpoint's API prefix and, with a username, get it to issue a token.

        Nothing of the caller's request has been sent yet, so every failure here is `sent=False`.
        """
        try:
            if state.prefix is None:
                version = await self._exchange(state, "/version", None, until, until)
                state.prefix = api_prefix(version)
            if self._username and state.token is None:
                body = {"name": self._username, "password": self._password}
                try:
                    response = await self._exchange(state, "/auth/authenticate", body, until, until)
                except EtcdServerError as err:
                    if err.code in GRPC_TRANSIENT:
                        raise
                    raise AuthenticationError(
                        f"authenticate as {self._username!r} at {state.endpoint.url}: {err}",
                        err.code,
                    ) from err
                token = response.get("token")
                if not isinstance(token, str) or not token:
                    raise MalformedResponseError("authenticate answered no token")
                state.token = token
        except _EndpointFailed as err:
            raise _EndpointFailed(str(err), sent=False) from err
        except EtcdServerError as err:
            if err.code in GRPC_TRANSIENT:
                raise _EndpointFailed(str(err), sent=False) from err
            raise

    async def _exchange(
        self,
        state: _EndpointState,
        path: str,
        body: Mapping[str, Any] | None,
        connect_until: float,
        answer_until: float | None,
    ) -> Mapping[str, Any]:
        """One request and its JSON answer on a new connection. `body` None: GET `path`
        without the API prefix (`/version`); else POST under the prefix, with the token."""
        connection = await self._connect(state, connect_until)
        try:
            async with asyncio.timeout_at(answer_until):
                if body is None:
                    await connection.send("GET", path, [], b"")
                else:
                    await self._send(state, connection, path, body)
                status = await connection.response()
                data = await connection.body(self._max_response)
        except TimeoutError as err:
            raise _EndpointFailed(f"no answer to {path} in time", sent=True) from err
        except TransportError as err:
            raise _EndpointFailed(str(err), sent=True) from err
        finally:
            connection.close()
        if status != 200:
            raise error_from_body(status, data)
        try:
            response = json.loads(data)
        except ValueError as err:
            raise MalformedResponseError(f"response is not JSON: {data[:200]!r}") from err
        if not isinstance(response, Mapping):
            raise MalformedResponseError(f"response is not a JSON object: {data[:200]!r}")
        return response

    async def _connect(self, state: _EndpointState, until: float) -> HTTPConnection:
        try:
            async with asyncio.timeout_at(until):
                return await HTTPConnection.open(state.endpoint, self._ssl, self._keepalive)
        except TimeoutError as err:
            raise _EndpointFailed("connect timed out", sent=False) from err
        except TransportError as err:
            raise _EndpointFailed(str(err), sent=False) from err

    async def _send(
        self, state: _EndpointState, connection: HTTPConnection, path: str, body: Mapping[str, Any]
    ) -> None:
        headers = [("Authorization", state.token)] if state.token else []
        await connection.send("POST", f"{state.prefix}{path}", headers, json.dumps(body).encode())
