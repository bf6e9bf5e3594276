"""overlay.store.etcd.EtcdClient against a real etcd (Debian's 3.4 here), one per test or module.

Each test uses keys under its own prefix; servers that a test stops, compacts or locks down
with auth or TLS are its own. Every server is stopped and its directory removed by the
fixture, whatever the test does.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterator
from typing import Any, TypeVar

import pytest

from overlay.store.etcd import (
    AuthenticationError,
    CompactedError,
    EtcdClient,
    StoreError,
    StoreUnavailableError,
    WatchEvent,
)
from tests.overlay.etcd_server import ETCD, EtcdServer, etcd_server

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not os.path.exists(ETCD),
        reason=f"etcd-server could not be installed (no {ETCD}; scripts/setup-host.sh)",
    ),
]

T = TypeVar("T")


def run(coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(timeout):
            return await coroutine

    return asyncio.run(bounded())


@pytest.fixture(scope="module")
def shared_etcd() -> Iterator[EtcdServer]:
    with etcd_server(name="etcdclient-shared") as server:
        yield server


@pytest.fixture
def own_etcd() -> Iterator[EtcdServer]:
    with etcd_server(name="etcdclient-own") as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return f"/cri-shim-test/{uuid.uuid4().hex[:8]}/"


@contextlib.asynccontextmanager
async def client_of(endpoints: list[str], **kwargs: Any) -> AsyncIterator[EtcdClient]:
    client = EtcdClient(endpoints, **kwargs)
    try:
        yield client
    finally:
        await client.aclose()


async def next_batch(
    watch: AsyncGenerator[list[WatchEvent], None], timeout: float = 5
) -> list[WatchEvent]:
    async with asyncio.timeout(timeout):
        return await anext(watch)


def test_get_put_create_replace_delete(shared_etcd: EtcdServer, prefix: str) -> None:
    async def body() -> None:
        async with client_of(shared_etcd.endpoints) as client:
            key = prefix + "10.244.1.0-24"
            assert await client.get(key) is None
            assert await client.create(key, b'{"PublicIP":"192.0.2.1"}')
            assert not await client.create(key, b"other"), "create must fail on an existing key"
            kv = await client.get(key)
            assert kv is not None
            assert (kv.key, kv.value, kv.version, kv.lease) == (
                key,
                b'{"PublicIP":"192.0.2.1"}',
                1,
                0,
            )
            assert kv.create_revision == kv.mod_revision > 0

            assert not await client.replace(key, b"x", lease=0, mod_revision=kv.mod_revision - 1)
            assert await client.replace(key, b"v2", lease=0, mod_revision=kv.mod_revision)
            after = await client.get(key)
            assert after is not None
            assert (after.value, after.version, after.create_revision) == (
                b"v2",
                2,
                kv.create_revision,
            )
            assert after.mod_revision > kv.mod_revision

            revision = await client.put(key, b"\x00\xffbinary")
            put = await client.get(key)
            assert put is not None and (put.value, put.mod_revision) == (
                b"\x00\xffbinary",
                revision,
            )

            assert await client.delete(key)
            assert not await client.delete(key), "deleting an absent key reports False"
            assert await client.get(key) is None
            # A key that was deleted can be created again (create_revision is 0 once more).
            assert await client.create(key, b"again")

    run(body())


def test_list_prefix_returns_the_prefix_only_and_its_revision(
    shared_etcd: EtcdServer, prefix: str
) -> None:
    async def body() -> None:
        async with client_of(shared_etcd.endpoints) as client:
            await client.put(prefix.rstrip("/"), b"the prefix without its slash: not under it")
            await client.put(prefix[:-1] + "0", b"sorts right after the prefix: not under it")
            for name in ("b", "a", "c/d"):
                await client.put(prefix + name, name.encode())
            last = await client.put(prefix + "e", b"e")
            kvs, revision = await client.list_prefix(prefix)
            assert [kv.key for kv in kvs] == [prefix + n for n in ("a", "b", "c/d", "e")]
            assert revision >= last
            assert await client.list_prefix(prefix + "none/") == ([], revision)

    run(body())


def test_lease_grant_ttl_revoke_and_expiry(shared_etcd: EtcdServer, prefix: str) -> None:
    async def body() -> None:
        async with client_of(shared_etcd.endpoints) as client:
            lease, ttl = await client.grant(60)
            assert lease > 0 and ttl == 60
            assert 55 <= await client.time_to_live(lease) <= 60
            await client.put(prefix + "leased", b"v", lease=lease)
            kv = await client.get(prefix + "leased")
            assert kv is not None and kv.lease == lease
            await client.revoke(lease)
            assert await client.time_to_live(lease) == -1
            assert await client.get(prefix + "leased") is None, "revoke deletes the lease's keys"
            await client.revoke(lease)  # already gone: fine
            assert await client.time_to_live(0) == -1

            short, granted = await client.grant(2)
            assert granted == 2
            assert await client.create(prefix + "expires", b"v", lease=short)
            started = time.monotonic()
            while await client.get(prefix + "expires") is not None:
                assert time.monotonic() - started < 8, "a TTL 2 lease outlived 8 s"
                await asyncio.sleep(0.2)
            assert time.monotonic() - started >= 1
            assert await client.time_to_live(short) == -1

    run(body())


def test_put_with_an_unknown_lease_is_a_store_error(shared_etcd: EtcdServer, prefix: str) -> None:
    async def body() -> None:
        async with client_of(shared_etcd.endpoints) as client:
            with pytest.raises(StoreError, match=r"failed to put key: .*lease not found") as info:
                await client.put(prefix + "k", b"v", lease=12345)
            assert not isinstance(info.value, StoreUnavailableError)

    run(body())


def test_watch_from_a_revision_sees_puts_and_deletes_with_prev_kv(
    shared_etcd: EtcdServer, prefix: str
) -> None:
    async def body() -> None:
        async with client_of(shared_etcd.endpoints) as client:
            first = await client.put(prefix + "a", b"1")
            await client.put(prefix + "a", b"2")
            await client.put(prefix.rstrip("/") + "x", b"outside the prefix")
            watch = client.watch(prefix, first + 1)  # history: the second put only
            try:
                (event,) = await next_batch(watch)
                assert (event.type, event.kv.value, event.kv.version) == ("PUT", b"2", 2)
                assert event.prev_kv is not None and event.prev_kv.value == b"1"

                # Live events, after the watch exists.
                lease, _ = await client.grant(30)
                created = await client.put(prefix + "b", b"new", lease=lease)
                (event,) = await next_batch(watch)
                assert (event.type, event.kv.key, event.kv.value) == ("PUT", prefix + "b", b"new")
                assert event.kv.lease == lease and event.kv.mod_revision == created
                assert event.prev_kv is None, "a new key has no previous value"

                await client.delete(prefix + "a")
                (event,) = await next_batch(watch)
                assert event.type == "DELETE" and event.kv.key == prefix + "a"
                assert event.kv.value == b"" and event.kv.mod_revision > created
                assert event.prev_kv is not None and event.prev_kv.value == b"2"

                await client.revoke(lease)  # the leased key goes: a DELETE too
                (event,) = await next_batch(watch)
                assert (event.type, event.kv.key) == ("DELETE", prefix + "b")
                assert event.prev_kv is not None and event.prev_kv.lease == lease
            finally:
                await watch.aclose()

    run(body())


def test_watch_of_a_compacted_revision_raises_compacted(own_etcd: EtcdServer) -> None:
    async def body() -> None:
        async with client_of(own_etcd.endpoints) as client:
            first = await client.put("/compact/a", b"1")
            for value in (b"2", b"3"):
                last = await client.put("/compact/a", value)
            own_etcd.post("/v3/kv/compaction", {"revision": str(last), "physical": True})
            with pytest.raises(CompactedError) as info:
                async for _ in client.watch("/compact/", first):
                    pass
            assert info.value.compact_revision == last
            # From the compact revision on, the watch works again.
            watch = client.watch("/compact/", last)
            try:
                (event,) = await next_batch(watch)
                assert event.kv.value == b"3"
            finally:
                await watch.aclose()

    run(body())


class SilentServer:
    """Accepts TCP connections and never answers: a black-holed etcd."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, name="silent-etcd", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                self.accepted.append(self.listener.accept()[0])

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self._thread.join(timeout=5)
        for sock in self.accepted:
            sock.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    try:
        yield server
    finally:
        server.close()


def dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once closed


def test_failover_past_a_dead_and_a_silent_endpoint_and_stay_on_the_good_one(
    shared_etcd: EtcdServer, silent_server: SilentServer, prefix: str
) -> None:
    async def body() -> None:
        endpoints = [dead_endpoint(), silent_server.url, *shared_etcd.endpoints]
        async with client_of(endpoints, timeout=3) as client:
            started = time.monotonic()
            await client.put(prefix + "k", b"v")
            first_call = time.monotonic() - started
            assert len(silent_server.accepted) == 1
            assert first_call < 3, f"failover took {first_call:.2f} s"
            started = time.monotonic()
            for _ in range(5):
                assert await client.get(prefix + "k") is not None
            watch = client.watch(prefix, 1)
            assert [e.kv.key for e in await next_batch(watch)] == [prefix + "k"]
            await watch.aclose()
            assert time.monotonic() - started < 1, "later calls went back to the bad endpoints"
            assert len(silent_server.accepted) == 1

    run(body())


def test_txn_and_grant_fail_over_while_nothing_was_sent(
    shared_etcd: EtcdServer, silent_server: SilentServer, prefix: str
) -> None:
    # A txn or a grant is never sent twice, but an endpoint that refused the connection or
    # never answered the /version probe has not seen it: the next endpoint gets it.
    async def body() -> None:
        for endpoints in (
            [dead_endpoint(), *shared_etcd.endpoints],
            [silent_server.url, *shared_etcd.endpoints],
        ):
            async with client_of(endpoints, timeout=3) as client:
                assert await client.create(prefix + uuid.uuid4().hex, b"v")
            async with client_of(endpoints, timeout=3) as client:
                lease, _ = await client.grant(30)
                await client.revoke(lease)

    run(body())


def test_no_endpoint_answers_raises_unavailable_within_the_timeout(
    silent_server: SilentServer,
) -> None:
    async def body() -> None:
        async with client_of([dead_endpoint(), silent_server.url], timeout=1.5) as client:
            for call in (client.get("/k"), client.create("/k", b"v"), anext(client.watch("/", 1))):
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError, match=r"no answer|no etcd endpoint"):
                    await call
                assert time.monotonic() - started < 2.5

    run(body())


def test_stopped_etcd_gives_unavailable_and_ends_the_watch_then_recovers(
    own_etcd: EtcdServer,
) -> None:
    async def body() -> None:
        async with client_of(own_etcd.endpoints, timeout=2) as client:
            await client.put("/outage/a", b"1")
            watch = client.watch("/outage/", 1)
            assert len(await next_batch(watch)) == 1
            pending = asyncio.ensure_future(next_batch(watch, timeout=15))
            await asyncio.sleep(0.2)

            await asyncio.to_thread(own_etcd.stop)
            with pytest.raises(StoreUnavailableError, match="watch"):
                await pending
            with pytest.raises(StopAsyncIteration):
                await anext(watch)  # an async generator that raised is finished
            for call in (client.get("/outage/a"), client.put("/outage/a", b"2"), client.grant(5)):
                started = time.monotonic()
                with pytest.raises(StoreUnavailableError):
                    await call
                assert time.monotonic() - started < 3

            await asyncio.to_thread(own_etcd.start)
            kv = await client.get("/outage/a")
            assert kv is not None and kv.value == b"1"
            resumed = client.watch("/outage/", kv.mod_revision + 1)
            await client.put("/outage/a", b"after")
            assert [e.kv.value for e in await next_batch(resumed)] == [b"after"]
            await resumed.aclose()

    run(body())


def test_closing_the_client_ends_its_watches(shared_etcd: EtcdServer, prefix: str) -> None:
    async def body() -> None:
        client = EtcdClient(shared_etcd.endpoints)
        seen: list[list[WatchEvent]] = []

        async def consume() -> None:
            async for batch in client.watch(prefix, 1):
                seen.append(batch)

        task = asyncio.ensure_future(consume())
        await client.put(prefix + "k", b"v")
        while not seen:
            await asyncio.sleep(0.05)
        await client.aclose()
        await asyncio.wait_for(task, 5)  # ends without an error
        await client.aclose()  # idempotent
        with pytest.raises(StoreError, match="closed"):
            await client.get(prefix + "k")

    run(body())


def test_responses_over_the_limit_are_refused(shared_etcd: EtcdServer, prefix: str) -> None:
    async def body() -> None:
        async with client_of(shared_etcd.endpoints, max_response_bytes=4096) as client:
            for index in range(4):
                await client.put(f"{prefix}{index}", b"x" * 1500)
            with pytest.raises(StoreError, match="exceeds 4096 bytes"):
                await client.list_prefix(prefix)

    run(body())


def test_tls_with_client_certificates() -> None:
    with etcd_server(tls=True, name="etcdclient-tls") as server:
        assert server.client_url.startswith("https://")
        tls = server.tls
        assert tls is not None

        async def body() -> None:
            async with client_of(
                server.endpoints, cafile=tls.ca, certfile=tls.client_cert, keyfile=tls.client_key
            ) as client:
                await client.put("/tls/k", b"v")
                watch = client.watch("/tls/", 1)
                assert [e.kv.value for e in await next_batch(watch)] == [b"v"]
                await watch.aclose()
            # No client certificate: etcd refuses the handshake.
            async with client_of(server.endpoints, cafile=tls.ca, timeout=2) as client:
                with pytest.raises(StoreUnavailableError, match="no etcd endpoint answered"):
                    await client.get("/tls/k")
            # The server's certificate is not trusted without our CA.
            async with client_of(
                server.endpoints, certfile=tls.client_cert, keyfile=tls.client_key, timeout=2
            ) as client:
                with pytest.raises(StoreUnavailableError, match="CERTIFICATE_VERIFY_FAILED"):
                    await client.get("/tls/k")

        run(body())


def test_tls_files_that_do_not_load_are_a_clear_error(tmp_path: Any) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ValueError, match=r"failed to load the etcd TLS files .*missing\.pem"):
        EtcdClient(["https://127.0.0.1:2379"], cafile=missing)


def enable_auth(server: EtcdServer, password: str) -> None:
    server.post("/v3/auth/user/add", {"name": "root", "password": password})
    server.post("/v3/auth/role/add", {"name": "root"})
    server.post("/v3/auth/user/grant", {"user": "root", "role": "root"})
    server.post("/v3/auth/user/add", {"name": "flannel", "password": password})
    server.post("/v3/auth/role/add", {"name": "flannel"})
    key = "/coreos.com/network/"
    server.post(
        "/v3/auth/role/grant",
        {
            "name": "flannel",
            "perm": {
                "permType": "READWRITE",
                "key": base64_text(key),
                "range_end": base64_text(key[:-1] + chr(ord(key[-1]) + 1)),
            },
        },
    )
    server.post("/v3/auth/user/grant", {"user": "flannel", "role": "flannel"})
    server.post("/v3/auth/enable", {})


def base64_text(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


def test_username_and_password_with_token_renewal() -> None:
    # Simple tokens live one second here, so the second round of calls needs a new token.
    with etcd_server(name="etcdclient-auth", extra_args=["--auth-token-ttl=1"]) as server:
        enable_auth(server, "s3cret")

        async def body() -> None:
            async with client_of(server.endpoints) as anonymous:
                with pytest.raises(StoreError, match="user name is empty"):
                    await anonymous.get("/coreos.com/network/config")
            async with client_of(server.endpoints, username="flannel", password="s3cret") as client:
                key = "/coreos.com/network/subnets/10.244.1.0-24"
                assert await client.create(key, b"v")
                watch = client.watch("/coreos.com/network/", 1)
                assert len(await next_batch(watch)) == 1
                await watch.aclose()
                with pytest.raises(StoreError, match="permission denied"):
                    await client.put("/elsewhere", b"v")
                # Each kind of call finds its token expired once: a watch, a read, a txn.
                tokens = [client._states[0].token]  # white-box: proves a new token was fetched
                await asyncio.sleep(2.5)
                watch = client.watch("/coreos.com/network/", 1)
                assert len(await next_batch(watch)) == 1
                await watch.aclose()
                tokens.append(client._states[0].token)
                await asyncio.sleep(2.5)
                current = await client.get(key)
                assert current is not None
                tokens.append(client._states[0].token)
                await asyncio.sleep(2.5)
                assert await client.replace(key, b"v2", lease=0, mod_revision=current.mod_revision)
                tokens.append(client._states[0].token)
                assert None not in tokens and len(set(tokens)) == 4, tokens
            async with client_of(server.endpoints, username="flannel", password="wrong") as client:
                with pytest.raises(AuthenticationError, match="authenticate as 'flannel'"):
                    await client.get("/coreos.com/network/config")

        run(body())


def test_constructor_rejects_bad_arguments() -> None:
    for endpoints, message in (
        ([], "no etcd endpoint"),
        (["127.0.0.1:2379"], "invalid etcd endpoint '127.0.0.1:2379'"),
        (["http://127.0.0.1:2379/v3"], "has no path"),
        (["http://127.0.0.1:99999"], "invalid etcd endpoint"),
    ):
        with pytest.raises(ValueError, match=message):
            EtcdClient(endpoints)
    with pytest.raises(ValueError, match="username and password go together"):
        EtcdClient(["http://127.0.0.1:2379"], username="u")
    client = EtcdClient("http://127.0.0.1:2379,http://127.0.0.1:4001")  # flanneld's flag form
    assert client.endpoints == ["http://127.0.0.1:2379", "http://127.0.0.1:4001"]


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")


@needs_root
def test_fixture_runs_etcd_inside_a_netns() -> None:
    netns = f"etcdc-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", netns], check=True)
    try:
        subprocess.run(["ip", "-n", netns, "link", "set", "lo", "up"], check=True)
        with etcd_server(netns=netns, name="etcdclient-netns") as server:
            assert server.client_port == 2379
            assert server.pid is not None
            ns_of = os.stat(f"/proc/{server.pid}/ns/net").st_ino
            assert ns_of == os.stat(f"/run/netns/{netns}").st_ino, "etcd runs in the netns"
            put = server.post("/v3/kv/put", {"key": base64_text("k"), "value": base64_text("v")})
            assert int(put["header"]["revision"]) == 2
            pid = server.pid
        assert not os.path.exists(f"/proc/{pid}"), "etcd is stopped after the block"
        assert shutil.which("etcd")
    finally:
        subprocess.run(["ip", "netns", "del", netns], check=False)


def test_fixture_cleans_up_when_etcd_cannot_start(tmp_path: Any) -> None:
    with etcd_server(name="etcdclient-blocker") as blocker:
        # The client port is taken by another etcd: this one exits, and the fixture says why.
        with (
            pytest.raises(RuntimeError, match="etcd exited"),
            etcd_server(client_port=blocker.client_port, name="etcdclient-clash"),
        ):
            pass
        assert blocker.pid is not None
