"""Network readiness follows the conf dir without a restart; capabilities, DNS and host network
reach the pod as configured; ListPodSandbox filters."""

from __future__ import annotations

import ipaddress
import json
import os

import grpc
import pytest

from cri_api import api_pb2
from tests.e2e.conftest import Pods
from tests.e2e.harness import (
    NetworkPlan,
    Shim,
    details,
    infra_pid,
    leftovers,
    netns_addresses,
    pod_config,
)

pytestmark = pytest.mark.integration


def _network_condition(shim: Shim) -> api_pb2.RuntimeCondition:
    status = shim.runtime().Status(api_pb2.StatusRequest(verbose=True), timeout=30)
    return next(c for c in status.status.conditions if c.type == "NetworkReady")


def test_network_ready_follows_conf_dir(shim: Shim, plan: NetworkPlan, pods: Pods) -> None:
    os.unlink(os.path.join(shim.conf_dir, "10-e2e.conflist"))
    condition = _network_condition(shim)
    assert not condition.status
    assert condition.reason == "NetworkPluginNotReady"
    assert shim.conf_dir in condition.message
    with pytest.raises(grpc.RpcError) as caught:
        shim.run_pod(pod_config())
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert shim.conf_dir in details(caught.value)

    shim.write_conf("00-garbage.conflist", "{not json")
    missing = plan.conflist()
    missing["name"] = "missing-plugin"
    missing["plugins"][0]["type"] = "no-such-plugin"
    shim.write_conf("05-missing.conflist", missing)
    condition = _network_condition(shim)
    assert not condition.status
    assert "00-garbage.conflist" in condition.message
    assert "no-such-plugin" in condition.message

    shim.write_conf("10-e2e.conflist", plan.conflist())
    assert _network_condition(shim).status
    sid = pods.add(shim.run_pod(pod_config()))
    info = json.loads(shim.status(sid, verbose=True).info["info"])
    assert info["cniConfigFile"].endswith("10-e2e.conflist")
    shim.remove_pod(sid)
    assert leftovers(shim, plan, {sid}).empty()


def test_pod_cidr_reaches_host_local_as_ip_ranges(
    shim: Shim, plan: NetworkPlan, pods: Pods
) -> None:
    conf = plan.conflist()
    conf["plugins"][0]["capabilities"] = {"ipRanges": True}
    del conf["plugins"][0]["ipam"]["ranges"]
    shim.write_conf("10-e2e.conflist", conf)
    cidr = str(next(ipaddress.ip_network(plan.subnet).subnets(new_prefix=25)))
    shim.runtime().UpdateRuntimeConfig(
        api_pb2.UpdateRuntimeConfigRequest(
            runtime_config=api_pb2.RuntimeConfig(
                network_config=api_pb2.NetworkConfig(pod_cidr=cidr)
            )
        ),
        timeout=30,
    )
    sid = pods.add(shim.run_pod(pod_config()))
    ip = shim.status(sid).status.network.ip
    assert ipaddress.ip_address(ip) in ipaddress.ip_network(cidr)
    shim.remove_pod(sid)
    assert leftovers(shim, plan, {sid}).empty()


def test_dns_config_becomes_resolv_conf(shim: Shim, pods: Pods) -> None:
    dns = api_pb2.DNSConfig(
        servers=["10.96.0.10"], searches=["ns.svc.cluster.local"], options=["ndots:5"]
    )
    sid = pods.add(shim.run_pod(pod_config(dns_config=dns)))
    with open(f"/proc/{infra_pid(sid)}/root/etc/resolv.conf") as f:
        assert f.read() == ("nameserver 10.96.0.10\nsearch ns.svc.cluster.local\noptions ndots:5\n")
    with open(f"/proc/{infra_pid(sid)}/root/etc/hostname") as f:
        assert f.read().strip() == shim.status(sid).status.metadata.name


def test_host_network_pod_skips_cni(shim: Shim, plan: NetworkPlan, pods: Pods) -> None:
    config = pod_config()
    config.linux.security_context.namespace_options.network = api_pb2.NODE
    sid = pods.add(shim.run_pod(config))
    status = shim.status(sid).status
    assert status.state == api_pb2.SANDBOX_READY
    assert status.network.ip == ""
    assert status.linux.namespaces.options.network == api_pb2.NODE
    assert leftovers(shim, plan, {sid}).cache_files == []
    shim.remove_pod(sid)
    assert leftovers(shim, plan, {sid}).empty()


def test_list_filters(shim: Shim, pods: Pods) -> None:
    a = pods.add(shim.run_pod(pod_config(labels={"tier": "web"})))
    b = pods.add(shim.run_pod(pod_config(labels={"tier": "db"})))
    shim.stop_pod(b)

    def listed(flt: api_pb2.PodSandboxFilter) -> list[str]:
        request = api_pb2.ListPodSandboxRequest(filter=flt)
        return [p.id for p in shim.runtime().ListPodSandbox(request, timeout=30).items]

    assert listed(api_pb2.PodSandboxFilter(id=a[:13])) == [a]
    ready = api_pb2.PodSandboxStateValue(state=api_pb2.SANDBOX_READY)
    assert listed(api_pb2.PodSandboxFilter(state=ready)) == [a]
    assert listed(api_pb2.PodSandboxFilter(label_selector={"tier": "db"})) == [b]
    assert sorted(listed(api_pb2.PodSandboxFilter())) == sorted([a, b])


def test_dual_stack_pod_reports_additional_ips(shim: Shim, plan: NetworkPlan, pods: Pods) -> None:
    v6_subnet = f"fd00:200:{plan.subnet.split('.')[2]}::/64"
    plan.ipam_extra["ranges"] = [[{"subnet": plan.subnet}], [{"subnet": v6_subnet}]]
    shim.write_conf("10-e2e.conflist", plan.conflist())
    sid = pods.add(shim.run_pod(pod_config()))
    network = shim.status(sid).status.network
    assert ipaddress.ip_address(network.ip) in ipaddress.ip_network(plan.subnet)
    assert [a.ip for a in network.additional_ips] != []
    v6 = network.additional_ips[0].ip
    assert "/" not in v6 and ipaddress.ip_address(v6) in ipaddress.ip_network(v6_subnet)
    assert sorted(netns_addresses(infra_pid(sid))) == sorted([network.ip, v6])
    shim.remove_pod(sid)
    assert leftovers(shim, plan, {sid}).empty()
