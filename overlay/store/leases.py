"""Subnet leases in flannel's etcd layout (CROSS-NODE.md section 1), behind a narrow interface.

`SubnetManager` is what the daemon needs from any store: the network config, acquiring,
renewing and republishing the node's own lease, and a snapshot + watch of every lease. The etcd
implementation keeps flannel's exact keys and JSON, so a node can move between flanneld and
pyflanneld without losing its subnet; a Kubernetes-API implementation (node podCIDR and
annotations, section 4) can be a second one later.

Where flannel is wrong we are right: renewal revokes the lease it replaces (flannel leaves it to
expire unattached), and a lease-less key (a reservation) stays lease-less when reused (flannel's
TimeToLive check never sees one, since etcd answers TTL -1 for lease 0).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol

from overlay.config import NetworkConfig, parse_config
from overlay.errors import ConfigError, LeaseError, LeaseRevoked, SubnetsExhausted
from overlay.store.kv import KeyValue, KVStore, StoreError

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "/coreos.com/network"
# flannel's subnetTTL: leases are granted for 24 h and renewed before they run out.
DEFAULT_LEASE_TTL = 86400
# flannel retries a lost create race this many times before giving up.
ACQUIRE_ATTEMPTS = 10
# flannel picks at random among the first free subnets, so simultaneous starts rarely collide.
FREE_CANDIDATES = 100

CONFIG_MISSING = (
    "flannel config not found in etcd store. Did you create your config using etcdv3 API?"
)


@dataclass(frozen=True)
class LeaseAttrs:
    """The JSON value of a lease key (flannel's LeaseAttrs)."""

    public_ip: ipaddress.IPv4Address
    backend_type: str
    backend_data: dict[str, Any] | None = None
    public_ipv6: str | None = None

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"PublicIP": str(self.public_ip), "PublicIPv6": self.public_ipv6}
        if self.backend_type:
            doc["BackendType"] = self.backend_type
        if self.backend_data is not None:
            doc["BackendData"] = self.backend_data
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> LeaseAttrs:
        doc = json.loads(raw)
        if not isinstance(doc, dict):
            raise ValueError("lease value is not a JSON object")
        folded = {k.lower(): v for k, v in doc.items()}
        data = folded.get("backenddata")
        v6 = folded.get("publicipv6")
        return cls(
            public_ip=ipaddress.IPv4Address(folded.get("publicip")),
            backend_type=str(folded.get("backendtype") or ""),
            backend_data=data if isinstance(data, dict) else None,
            public_ipv6=v6 if isinstance(v6, str) else None,
        )


@dataclass(frozen=True)
class Lease:
    """A subnet lease as the daemon sees it.

    `lease_id` 0 is a reservation: a key without a TTL that is never renewed and never expires.
    `expires_at` is on the `time.monotonic` clock, 0 when unknown or for a reservation.
    """

    subnet: ipaddress.IPv4Network
    attrs: LeaseAttrs
    key: str = ""
    lease_id: int = 0
    ttl: int = 0
    expires_at: float = 0.0

    @property
    def is_reservation(self) -> bool:
        return self.lease_id == 0


@dataclass(frozen=True)
class LeaseEvent:
    """A change of one lease: "added" carries the new lease, "removed" the subnet only (the
    watcher's cache supplies what was there, since a store's delete has no value)."""

    type: Literal["added", "removed"]
    subnet: ipaddress.IPv4Network
    lease: Lease | None = None
    revision: int = 0


class SubnetManager(Protocol):
    async def get_network_config(self) -> NetworkConfig: ...

    async def find_own_lease(
        self, public_ip: ipaddress.IPv4Address, previous: ipaddress.IPv4Network | None
    ) -> Lease | None:
        """The lease a previous run of this node held, if it is still in the store."""
        ...

    async def acquire_lease(
        self,
        config: NetworkConfig,
        attrs: LeaseAttrs,
        previous: ipaddress.IPv4Network | None,
    ) -> Lease: ...

    async def renew_lease(self, lease: Lease) -> Lease: ...

    async def update_attrs(self, lease: Lease, attrs: LeaseAttrs) -> Lease: ...

    async def list_leases(self) -> tuple[list[Lease], int]:
        """Every lease and the revision the snapshot was taken at."""
        ...

    def watch_leases(self, start_revision: int) -> AsyncIterator[tuple[list[LeaseEvent], int]]:
        """Batches of lease changes with the revision of the batch's last change."""
        ...


def subnet_key_name(subnet: ipaddress.IPv4Network) -> str:
    """flannel's MakeSubnetKey: ``10.244.3.0-24``."""
    return f"{subnet.network_address}-{subnet.prefixlen}"


def parse_subnet_key_name(name: str) -> ipaddress.IPv4Network | None:
    """The IPv4 subnet of ``10.244.3.0-24`` or ``10.244.3.0-24&fd00::-64``; None if not a lease."""
    v4 = name.split("&", 1)[0]
    address, sep, length = v4.rpartition("-")
    if not sep:
        return None
    try:
        return ipaddress.IPv4Network(f"{address}/{int(length)}")
    except ValueError:
        return None


@dataclass
class EtcdSubnetManager:
    """flannel's etcd registry + local manager (``pkg/subnet/etcd``) over a `KVStore`."""

    store: KVStore
    prefix: str = DEFAULT_PREFIX
    ttl: int = DEFAULT_LEASE_TTL
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.prefix = self.prefix.rstrip("/")

    @property
    def subnets_prefix(self) -> str:
        return f"{self.prefix}/subnets/"

    def key_for(self, subnet: ipaddress.IPv4Network) -> str:
        return self.subnets_prefix + subnet_key_name(subnet)

    def _lease_of(self, kv: KeyValue) -> Lease | None:
        subnet = parse_subnet_key_name(kv.key[len(self.subnets_prefix) :])
        if subnet is None:
            return None
        try:
            attrs = LeaseAttrs.from_json(kv.value)
        except (ValueError, TypeError) as exc:
            log.warning("ignoring lease %s: unreadable value %r: %s", kv.key, kv.value[:200], exc)
            return None
        return Lease(subnet=subnet, attrs=attrs, key=kv.key, lease_id=kv.lease)

    async def get_network_config(self) -> NetworkConfig:
        kv = await self.store.get(f"{self.prefix}/config")
        if kv is None:
            raise ConfigMissing(CONFIG_MISSING)
        return parse_config(kv.value)

    async def _snapshot(self) -> tuple[list[tuple[KeyValue, Lease]], int]:
        kvs, revision = await self.store.list_prefix(self.subnets_prefix)
        pairs = []
        for kv in kvs:
            lease = self._lease_of(kv)
            if lease is not None:
                pairs.append((kv, lease))
        return pairs, revision

    async def list_leases(self) -> tuple[list[Lease], int]:
        pairs, revision = await self._snapshot()
        return [lease for _, lease in pairs], revision

    async def find_own_lease(
        self, public_ip: ipaddress.IPv4Address, previous: ipaddress.IPv4Network | None
    ) -> Lease | None:
        pairs, _ = await self._snapshot()
        for _, lease in pairs:
            if lease.attrs.public_ip == public_ip:
                return lease
        for _, lease in pairs:
            if lease.subnet == previous:
                return lease
        return None

    async def acquire_lease(
        self,
        config: NetworkConfig,
        attrs: LeaseAttrs,
        previous: ipaddress.IPv4Network | None,
    ) -> Lease:
        """flannel's tryAcquireLease, retried on lost races: reuse our own key (by PublicIP),
        else the subnet of the last run, else a random free one; each write is conditional,
        so simultaneous starts never end up sharing a subnet."""
        value = attrs.to_json()
        for _ in range(ACQUIRE_ATTEMPTS):
            pairs, _rev = await self._snapshot()
            own = [(kv, lease) for kv, lease in pairs if lease.attrs.public_ip == attrs.public_ip]
            for kv, lease in own:
                if config.allows(lease.subnet):
                    got = await self._reuse(kv, lease, attrs, value)
                    if got is not None:
                        return got
                    break  # the key changed under us: list again
                log.warning(
                    "deleting lease %s of this node: incompatible with the network config", kv.key
                )
                await self.store.delete(kv.key)
            else:
                taken = [lease.subnet for _, lease in pairs]
                subnet = self._choose(config, taken, previous)
                got = await self._create(subnet, attrs, value)
                if got is not None:
                    return got
            log.info("lost a race for a subnet lease, trying again")
        raise LeaseError(
            f"failed to acquire a subnet lease: lost {ACQUIRE_ATTEMPTS} races in a row"
        )

    def _choose(
        self,
        config: NetworkConfig,
        taken: list[ipaddress.IPv4Network],
        previous: ipaddress.IPv4Network | None,
    ) -> ipaddress.IPv4Network:
        same_len = {s.network_address for s in taken if s.prefixlen == config.subnet_len}
        others = [s for s in taken if s.prefixlen != config.subnet_len]

        def free(subnet: ipaddress.IPv4Network) -> bool:
            return subnet.network_address not in same_len and not any(
                subnet.overlaps(o) for o in others
            )

        if previous is not None and config.allows(previous) and free(previous):
            return previous
        candidates = []
        for index in range(config.subnet_count()):
            subnet = config.subnet_at(index)
            if free(subnet):
                candidates.append(subnet)
                if len(candidates) >= FREE_CANDIDATES:
                    break
        if not candidates:
            raise SubnetsExhausted(
                f"failed to acquire a subnet lease: every subnet from {config.subnet_min} to "
                f"{config.subnet_max} is taken"
            )
        return self.rng.choice(candidates)

    async def _grant(self) -> tuple[int, int]:
        lease_id, ttl = await self.store.grant(self.ttl)
        return lease_id, ttl

    async def _revoke_quietly(self, lease_id: int) -> None:
        # Best effort: a lease we could not revoke expires on its own.
        try:
            await self.store.revoke(lease_id)
        except StoreError as exc:
            log.warning("failed to revoke lease %x: %s (it will expire on its own)", lease_id, exc)

    def _made(
        self, subnet: ipaddress.IPv4Network, attrs: LeaseAttrs, lease_id: int, ttl: int
    ) -> Lease:
        expires = self.clock() + ttl if lease_id else 0.0
        return Lease(subnet, attrs, self.key_for(subnet), lease_id, ttl if lease_id else 0, expires)

    async def _write_on_new_lease(
        self, write: Callable[[int], Awaitable[bool]]
    ) -> tuple[int, int] | None:
        """Grant a lease and run the conditional `write` under it; return the lease's id and
        TTL, or None when the write's condition failed. A lease the write did not use (False,
        or raised, even when cancelled) is revoked, so none is left to expire on its own."""
        lease_id, ttl = await self._grant()
        try:
            written = await write(lease_id)
        except BaseException:
            with contextlib.suppress(Exception):
                await self._revoke_quietly(lease_id)
            raise
        if not written:
            await self._revoke_quietly(lease_id)
            return None
        return lease_id, ttl

    async def _create(
        self, subnet: ipaddress.IPv4Network, attrs: LeaseAttrs, value: bytes
    ) -> Lease | None:
        key = self.key_for(subnet)
        granted = await self._write_on_new_lease(
            lambda lease_id: self.store.create(key, value, lease=lease_id)
        )
        if granted is None:
            return None
        lease_id, ttl = granted
        log.info("acquired subnet lease %s (lease %x, ttl %ss)", subnet, lease_id, ttl)
        return self._made(subnet, attrs, lease_id, ttl)

    async def _reuse(
        self, kv: KeyValue, lease: Lease, attrs: LeaseAttrs, value: bytes
    ) -> Lease | None:
        if kv.lease == 0:
            # A reservation: republish our attrs but keep it lease-less (CROSS-NODE.md §1).
            if not await self.store.replace(kv.key, value, lease=0, mod_revision=kv.mod_revision):
                return None
            log.info("using reserved subnet %s (no lease)", lease.subnet)
            return self._made(lease.subnet, attrs, 0, 0)
        got = await self._rebind(kv, attrs, value)
        if got is not None:
            log.info("reusing subnet lease %s (lease %x)", lease.subnet, got.lease_id)
        return got

    async def _rebind(self, kv: KeyValue, attrs: LeaseAttrs, value: bytes) -> Lease | None:
        """Attach ``kv`` to a fresh lease with ``value``, then revoke the lease it had."""
        subnet = parse_subnet_key_name(kv.key[len(self.subnets_prefix) :])
        assert subnet is not None
        granted = await self._write_on_new_lease(
            lambda lease_id: self.store.replace(
                kv.key, value, lease=lease_id, mod_revision=kv.mod_revision
            )
        )
        if granted is None:
            return None
        lease_id, ttl = granted
        # Ordering: the key is on the new lease now, so revoking the old one deletes nothing.
        if kv.lease and kv.lease != lease_id:
            await self._revoke_quietly(kv.lease)
        return self._made(subnet, attrs, lease_id, ttl)

    async def _current(self, lease: Lease) -> KeyValue:
        kv = await self.store.get(lease.key)
        if kv is None:
            raise LeaseRevoked(f"lease {lease.key} is gone from the store")
        try:
            current = LeaseAttrs.from_json(kv.value)
        except (ValueError, TypeError) as exc:
            raise LeaseRevoked(
                f"lease {lease.key} was overwritten with {kv.value[:200]!r}"
            ) from exc
        if current.public_ip != lease.attrs.public_ip:
            raise LeaseRevoked(f"lease {lease.key} now belongs to {current.public_ip}")
        return kv

    async def renew_lease(self, lease: Lease) -> Lease:
        """Grant a new lease, move the key onto it, revoke the old one (flannel leaves the old
        lease to expire unattached). The write is conditional: a key deleted meanwhile is not
        brought back, the caller learns the lease was revoked."""
        if lease.is_reservation:
            return lease
        for _ in range(ACQUIRE_ATTEMPTS):
            kv = await self._current(lease)
            if kv.lease == 0:
                log.info("lease %s became a reservation; it stays lease-less", lease.key)
                return replace(lease, lease_id=0, ttl=0, expires_at=0.0)
            got = await self._rebind(kv, lease.attrs, lease.attrs.to_json())
            if got is not None:
                log.info("renewed subnet lease %s (lease %x)", lease.subnet, got.lease_id)
                return got
        raise LeaseError(f"failed to renew lease {lease.key}: it kept changing")

    async def update_attrs(self, lease: Lease, attrs: LeaseAttrs) -> Lease:
        """Republish our attrs (a VTEP MAC that changed after the device came up) on the same
        lease."""
        for _ in range(ACQUIRE_ATTEMPTS):
            kv = await self._current(lease)
            if await self.store.replace(
                kv.key, attrs.to_json(), lease=kv.lease, mod_revision=kv.mod_revision
            ):
                return replace(lease, attrs=attrs, lease_id=kv.lease)
        raise LeaseError(f"failed to update lease {lease.key}: it kept changing")

    async def watch_leases(
        self, start_revision: int
    ) -> AsyncIterator[tuple[list[LeaseEvent], int]]:
        """Lease changes from ``start_revision`` on; store errors (CompactedError,
        StoreUnavailableError) pass through for the watcher to handle."""
        async for events in self.store.watch(self.subnets_prefix, start_revision):
            batch = []
            last = start_revision - 1
            for event in events:
                revision = event.kv.mod_revision
                last = max(last, revision)
                if event.type == "DELETE":
                    subnet = parse_subnet_key_name(event.kv.key[len(self.subnets_prefix) :])
                    if subnet is not None:
                        batch.append(LeaseEvent("removed", subnet, None, revision))
                    continue
                lease = self._lease_of(event.kv)
                if lease is not None:
                    batch.append(LeaseEvent("added", lease.subnet, lease, revision))
            yield batch, last


class ConfigMissing(ConfigError):
    """``<prefix>/config`` is absent: the daemon waits for it (flannel retries every 1 s)."""
