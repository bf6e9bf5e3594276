"""Version, Status and UpdateRuntimeConfig: what kubelet asks at start-up and every 5 s."""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import asdict

from cri_api import api_pb2
from shim import __version__
from shim.context import ShimContext
from shim.errors import InvalidArgumentError
from shim.sandbox.cni_translate import split_pod_cidrs

log = logging.getLogger(__name__)

# kubelet exits unless `version` is exactly this: it is the version of the CRI v1 API's Version
# message itself, not of the runtime.
KUBELET_API_VERSION = "0.1.0"
RUNTIME_NAME = "cri-shim"
RUNTIME_API_VERSION = "v1"


def version() -> api_pb2.VersionResponse:
    return api_pb2.VersionResponse(
        version=KUBELET_API_VERSION,
        runtime_name=RUNTIME_NAME,
        runtime_version=__version__,
        runtime_api_version=RUNTIME_API_VERSION,
    )


def status(ctx: ShimContext, verbose: bool) -> api_pb2.StatusResponse:
    runtime = api_pb2.RuntimeCondition(type="RuntimeReady", status=True)
    engine_error = ctx.engine_health.error()
    if engine_error is not None:
        runtime.status = False
        runtime.reason = "DockerDaemonNotReady"
        runtime.message = engine_error
    else:
        if not ctx.recovered.is_set():
            runtime.status = False
            runtime.reason = "RuntimeRecovering"
            runtime.message = "cri-shim is rebuilding its state from checkpoints and Docker"
    network = api_pb2.RuntimeCondition(type="NetworkReady", status=True)
    network_error = ctx.network.status_error()
    if network_error:
        network.status = False
        network.reason = "NetworkPluginNotReady"
        network.message = f"network plugin is not ready: {network_error}"
    response = api_pb2.StatusResponse(status=api_pb2.RuntimeStatus(conditions=[runtime, network]))
    if verbose:
        choice = ctx.network.choice()
        config = asdict(ctx.config)
        config["podCIDRs"] = ctx.pod_cidrs.cidrs
        response.info["config"] = json.dumps(config)
        response.info["cniconfig"] = json.dumps(
            {
                "confDir": ctx.network.conf_dir,
                "binDirs": list(ctx.network.bin_dirs),
                "network": choice.network.raw if choice.network else None,
                "source": choice.network.source if choice.network else None,
                "skipped": list(choice.skipped),
            }
        )
        response.info["lastCNILoadStatus"] = json.dumps(choice.error or "OK")
        response.info["cniExecutor"] = json.dumps(ctx.network.executor_counts())
        response.info["startup"] = json.dumps(
            {
                "recovered": ctx.recovered.is_set(),
                "cniGarbageCollected": ctx.collected.is_set(),
            }
        )
        streaming = ctx.streaming
        response.info["streaming"] = json.dumps(
            None
            if streaming is None
            else {
                "url": streaming.base_url,
                "connections": streaming.connection_count,
                "pendingTokens": len(streaming.cache),
            }
        )
    return response


def update_runtime_config(ctx: ShimContext, request: api_pb2.UpdateRuntimeConfigRequest) -> None:
    pod_cidr = request.runtime_config.network_config.pod_cidr
    cidrs = split_pod_cidrs(pod_cidr)
    if not cidrs:  # kubelet sends the CIDR once it knows it; an empty one changes nothing
        return

    for cidr in cidrs:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError as err:
            raise InvalidArgumentError(f"pod CIDR {cidr!r} is not a network: {err}") from err
    if cidrs != ctx.pod_cidrs.cidrs:
        log.info("pod CIDRs are now %s", cidrs)
        ctx.pod_cidrs.set(cidrs)


def runtime_config(ctx: ShimContext) -> api_pb2.RuntimeConfigResponse:
    """The cgroup driver kubelet (and crictl) must match: the one the Docker engine uses."""
    driver = ctx.infra.cgroup_driver()
    value = api_pb2.SYSTEMD if driver == "systemd" else api_pb2.CGROUPFS
    return api_pb2.RuntimeConfigResponse(
        linux=api_pb2.LinuxRuntimeConfiguration(cgroup_driver=value)
    )
