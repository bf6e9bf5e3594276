"""Subnet leases in flannel's etcd layout, against an in-memory store."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import random

import pytest

from overlay.config import NetworkConfig, parse_config
from overlay.errors import LeaseRevoked, SubnetsExhausted
from overlay.store.leases import (
    EtcdSubnetManager,
    LeaseAttrs,
    parse_subnet_key_name,
    subnet_key_name,
)
from tests.overlay_fake_kv import FakeKV

PREFIX = "/coreos.com/network"
NET = ipaddress.IPv4Network


def _config(**extra: object) -> NetworkConfig:
    return parse_config(json.dumps({"Network": "10.244.0.0/16", **extra}))


def _attrs(ip: str, mac: str = "c6:d2:32:6f:8f:44") -> LeaseAttrs:
    return LeaseAttrs(ipaddress.IPv4Address(ip), "vxlan", {"VNI": 1, "VtepMAC": mac})


def _manager(kv: FakeKV, seed: int = 1, ttl: int = 86400) -> EtcdSubnetManager:
    return EtcdSubnetManager(kv, PREFIX, ttl=ttl, rng=random.Random(seed))


def test_lease_json_is_flannels() -> None:
    raw = _attrs("192.0.2.1").to_json()
    assert json.loads(raw) == {
        "PublicIP": "192.0.2.1",
        "PublicIPv6": None,
        "BackendType": "vxlan",
        "BackendData": {"VNI": 1, "VtepMAC": "c6:d2:32:6f:8f:44"},
    }
    hostgw = LeaseAttrs(ipaddress.IPv4Address("192.0.2.2"), "host-gw")
    assert json.loads(hostgw.to_json()) == {
        "PublicIP": "192.0.2.2",
        "PublicIPv6": None,
        "BackendType": "host-gw",
    }
    # flanneld's own values parse, keys in any case.
    back = LeaseAttrs.from_json(
        b'{"publicip":"192.0.2.1","BackendType":"vxlan","BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}'
    )
    assert back.public_ip == ipaddress.IPv4Address("192.0.2.1")
    assert back.backend_data == {"VtepMAC": "aa:bb:cc:dd:ee:ff"}


@pytest.mark.parametrize(
    ("name", "subnet"),
    [
        ("10.244.3.0-24", "10.244.3.0/24"),
        ("10.244.3.0-24&fd00:10:244:3::-64", "10.244.3.0/24"),
        ("garbage", None),
        ("10.244.3.1-24", None),
    ],
)
def test_subnet_key_names(name: str, subnet: str | None) -> None:
    got = parse_subnet_key_name(name)
    assert (str(got) if got else None) == subnet
    if subnet:
        assert subnet_key_name(NET(subnet)) == name.split("&")[0]


def test_acquire_writes_flannels_key_with_a_ttl_lease() -> None:
    async def run() -> None:
        kv = FakeKV()
        lease = await _manager(kv).acquire_lease(_config(), _attrs("192.0.2.1"), None)
        assert lease.key == f"{PREFIX}/subnets/{subnet_key_name(lease.subnet)}"
        stored = kv.data[lease.key]
        assert stored.lease == lease.lease_id != 0
        assert kv.leases[lease.lease_id] == 86400
        assert LeaseAttrs.from_json(stored.value) == _attrs("192.0.2.1")
        assert lease.subnet != NET("10.244.0.0/24")
        assert lease.subnet.prefixlen == 24 and lease.subnet.subnet_of(NET("10.244.0.0/16"))

    asyncio.run(run())


def test_distinct_subnets_never_the_first_within_min_max() -> None:
    async def run() -> None:
        kv = FakeKV()
        cfg = _config(SubnetMin="10.244.5.0", SubnetMax="10.244.9.0")
        got = set()
        for n in range(5):
            lease = await _manager(kv, seed=7).acquire_lease(cfg, _attrs(f"192.0.2.{n + 1}"), None)
            got.add(lease.subnet)
        assert got == {NET(f"10.244.{i}.0/24") for i in range(5, 10)}
        with pytest.raises(SubnetsExhausted, match=r"every subnet from 10\.244\.5\.0/24"):
            await _manager(kv).acquire_lease(cfg, _attrs("192.0.2.99"), None)

    asyncio.run(run())


def test_simultaneous_acquisitions_never_share_a_subnet() -> None:
    """Three daemons list an empty store at once and, with the same random choice, race for
    the same key: the create-if-absent write lets one win and the others pick again."""

    async def run() -> None:
        kv = FakeKV()
        kv.create_gate = asyncio.Event()
        cfg = _config()
        tasks = [
            asyncio.create_task(
                _manager(kv, seed=3).acquire_lease(cfg, _attrs(f"192.0.2.{n}"), None)
            )
            for n in (1, 2, 3)
        ]
        await asyncio.sleep(0.05)  # all three have listed and wait in create()
        kv.create_gate.set()
        leases = await asyncio.gather(*tasks)
        assert len({lease.subnet for lease in leases}) == 3
        assert len([k for k in kv.data if k.startswith(f"{PREFIX}/subnets/")]) == 3
        # Every lease granted for a lost race was revoked, none left dangling.
        assert set(kv.leases) == {lease.lease_id for lease in leases}

    asyncio.run(run())


def test_reuse_own_key_by_public_ip_on_a_new_lease_revoking_the_old() -> None:
    async def run() -> None:
        kv = FakeKV()
        first = await _manager(kv).acquire_lease(_config(), _attrs("192.0.2.1"), None)
        again = await _manager(kv, seed=99).acquire_lease(
            _config(), _attrs("192.0.2.1", "aa:aa:aa:aa:aa:aa"), None
        )
        assert again.subnet == first.subnet
        assert again.lease_id != first.lease_id
        assert first.lease_id in kv.revoked and first.lease_id not in kv.leases
        assert kv.data[again.key].lease == again.lease_id
        assert b"aa:aa:aa:aa:aa:aa" in kv.data[again.key].value

    asyncio.run(run())


def test_previous_subnet_from_subnet_env_is_reused_when_free() -> None:
    async def run() -> None:
        kv = FakeKV()
        prev = NET("10.244.77.0/24")
        lease = await _manager(kv).acquire_lease(_config(), _attrs("192.0.2.1"), prev)
        assert lease.subnet == prev
        # Taken by another node: not reused.
        other = await _manager(kv).acquire_lease(_config(), _attrs("192.0.2.2"), prev)
        assert other.subnet != prev
        # Outside SubnetMin..SubnetMax: not reused.
        cfg = _config(SubnetMax="10.244.50.0")
        third = await _manager(kv).acquire_lease(cfg, _attrs("192.0.2.3"), NET("10.244.60.0/24"))
        assert third.subnet != NET("10.244.60.0/24")

    asyncio.run(run())


def test_incompatible_own_lease_is_deleted_and_replaced() -> None:
    async def run() -> None:
        kv = FakeKV()
        old_key = f"{PREFIX}/subnets/10.244.200.0-24"
        await kv.put(old_key, _attrs("192.0.2.1").to_json())
        cfg = _config(SubnetMax="10.244.100.0")
        lease = await _manager(kv).acquire_lease(cfg, _attrs("192.0.2.1"), None)
        assert old_key not in kv.data
        assert cfg.allows(lease.subnet)

    asyncio.run(run())


def test_reservation_stays_lease_less_across_acquire_and_renew() -> None:
    async def run() -> None:
        kv = FakeKV()
        key = f"{PREFIX}/subnets/10.244.42.0-24"
        await kv.put(key, b'{"PublicIP":"192.0.2.1"}')  # operator's reservation, no lease
        manager = _manager(kv)
        lease = await manager.acquire_lease(_config(), _attrs("192.0.2.1"), None)
        assert lease.subnet == NET("10.244.42.0/24")
        assert lease.is_reservation and kv.data[key].lease == 0
        assert LeaseAttrs.from_json(kv.data[key].value) == _attrs("192.0.2.1")
        renewed = await manager.renew_lease(lease)
        assert renewed.is_reservation and kv.data[key].lease == 0
        assert kv.leases == {}

    asyncio.run(run())


def test_renew_moves_the_key_to_a_new_lease_and_revokes_the_old() -> None:
    async def run() -> None:
        kv = FakeKV()
        manager = _manager(kv, ttl=30)
        lease = await manager.acquire_lease(_config(), _attrs("192.0.2.1"), None)
        renewed = await manager.renew_lease(lease)
        assert renewed.lease_id != lease.lease_id and renewed.subnet == lease.subnet
        assert kv.data[lease.key].lease == renewed.lease_id
        assert lease.lease_id in kv.revoked
        assert set(kv.leases) == {renewed.lease_id}
        assert renewed.ttl == 30 and renewed.expires_at > 0

    asyncio.run(run())


def test_renew_does_not_bring_back_a_deleted_key() -> None:
    async def run() -> None:
        kv = FakeKV()
        manager = _manager(kv)
        lease = await manager.acquire_lease(_config(), _attrs("192.0.2.1"), None)
        await kv.delete(lease.key)
        with pytest.raises(LeaseRevoked):
            await manager.renew_lease(lease)
        assert lease.key not in kv.data

    asyncio.run(run())


def test_update_attrs_keeps_the_lease() -> None:
    async def run() -> None:
        kv = FakeKV()
        manager = _manager(kv)
        lease = await manager.acquire_lease(_config(), _attrs("192.0.2.1"), None)
        updated = await manager.update_attrs(lease, _attrs("192.0.2.1", "02:00:00:00:00:01"))
        assert kv.data[lease.key].lease == lease.lease_id == updated.lease_id
        assert b"02:00:00:00:00:01" in kv.data[lease.key].value

    asyncio.run(run())


def test_find_own_lease_by_ip_then_previous_subnet() -> None:
    async def run() -> None:
        kv = FakeKV()
        manager = _manager(kv)
        lease = await manager.acquire_lease(_config(), _attrs("192.0.2.1"), None)
        found = await manager.find_own_lease(ipaddress.IPv4Address("192.0.2.1"), None)
        assert found is not None and found.attrs.backend_data == {
            "VNI": 1,
            "VtepMAC": "c6:d2:32:6f:8f:44",
        }
        assert await manager.find_own_lease(ipaddress.IPv4Address("192.0.2.9"), None) is None
        by_prev = await manager.find_own_lease(ipaddress.IPv4Address("192.0.2.9"), lease.subnet)
        assert by_prev is not None and by_prev.subnet == lease.subnet

    asyncio.run(run())


def test_missing_config_is_its_own_error() -> None:
    from overlay.store.leases import ConfigMissing

    async def run() -> None:
        kv = FakeKV()
        with pytest.raises(ConfigMissing, match="flannel config not found"):
            await _manager(kv).get_network_config()
        await kv.put(f"{PREFIX}/config", b'{"Network":"10.244.0.0/16"}')
        assert (await _manager(kv).get_network_config()).subnet_len == 24

    asyncio.run(run())
