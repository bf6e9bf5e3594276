"""The floor: what a RunPodSandbox / StopPodSandbox / RemovePodSandbox cannot avoid doing, done
directly and with nothing else. Docker create + start of the infra image (no network of its own,
the options the shim gives Docker), then the CNI chain exec'd from here: loopback, then the
network's plugins in order with prevResult threaded (spec "Attachment lifecycle"). Teardown is
the chain's DEL in reverse with the ADD result as prevResult (spec 0.4.0+), loopback DEL, then
docker stop; removal is docker rm.

Deliberately self-contained: the floor must not share code, caches or locks with the shim it is
the baseline of."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import uuid
from dataclasses import dataclass
from typing import Any

import docker

from bench.hostnet import CNI_VERSION, INFRA_IMAGE, POD_NAMESPACE_LABEL, BenchNetwork

DOCKER_ENDPOINT = "unix:///var/run/docker.sock"
# The same grace period the shim gives `docker stop` (the pause program exits on SIGTERM).
STOP_TIMEOUT_S = 10
PLUGIN_TIMEOUT_S = 60.0
POD_IFNAME = "eth0"


class FloorError(Exception):
    pass


@dataclass
class _Attachment:
    """What teardown needs: the namespace path and the results ADD returned."""

    netns: str
    cni_args: str
    loopback_result: dict[str, Any]
    result: dict[str, Any]


def probe_oom_score_adj() -> int:
    """The infra container's oom_score_adj as the shim chooses it: -998 where the kernel lets
    root lower it, else 0 (some sandboxes refuse negative values)."""
    probe = subprocess.run(
        ["/bin/sh", "-c", "echo -998 > /proc/self/oom_score_adj"], capture_output=True, check=False
    )
    return -998 if probe.returncode == 0 else 0


class FloorPods:
    label = "floor"

    def __init__(
        self, net: BenchNetwork, pod_namespace: str, bin_dir: str, oom_score_adj: int
    ) -> None:
        self._conflist = net.conflist()
        self._pod_namespace = pod_namespace
        self._bin_dir = bin_dir
        self._oom_score_adj = oom_score_adj
        self._api = docker.APIClient(
            base_url=DOCKER_ENDPOINT, version="auto", timeout=120, max_pool_size=32
        )
        self._attachments: dict[str, _Attachment] = {}
        self._guard = threading.Lock()
        self.ids: set[str] = set()

    # -- the three verbs ------------------------------------------------------------------

    def run(self, name: str) -> str:
        uid = uuid.uuid4().hex
        container_id = self._create(name, uid)
        self._api.start(container_id)
        pid = int(self._api.inspect_container(container_id)["State"]["Pid"])
        netns = f"/proc/{pid}/ns/net"
        cni_args = ";".join(
            [
                "IgnoreUnknown=1",
                f"K8S_POD_NAMESPACE={self._pod_namespace}",
                f"K8S_POD_NAME={name}",
                f"K8S_POD_INFRA_CONTAINER_ID={container_id}",
                f"K8S_POD_UID={uid}",
            ]
        )
        loopback = self._exec("ADD", "loopback", _loopback_conf(), container_id, netns, "lo", "")
        prev: dict[str, Any] | None = None
        for plugin in self._conflist["plugins"]:
            stdin = self._plugin_conf(plugin, prev)
            prev = self._exec(
                "ADD", plugin["type"], stdin, container_id, netns, POD_IFNAME, cni_args
            )
        assert prev is not None
        with self._guard:
            self._attachments[container_id] = _Attachment(netns, cni_args, loopback, prev)
        return container_id

    def stop(self, container_id: str) -> None:
        with self._guard:
            att = self._attachments.pop(container_id, None)
        if att is not None:
            for plugin in reversed(self._conflist["plugins"]):
                stdin = self._plugin_conf(plugin, att.result)
                self._exec(
                    "DEL", plugin["type"], stdin, container_id, att.netns, POD_IFNAME, att.cni_args
                )
            lo = {**_loopback_conf(), "prevResult": att.loopback_result}
            self._exec("DEL", "loopback", lo, container_id, att.netns, "lo", "")
        self._api.stop(container_id, timeout=STOP_TIMEOUT_S)

    def pod_ip(self, container_id: str) -> str:
        """The first address the chain's result gives the pod (plain, without prefix length)."""
        with self._guard:
            att = self._attachments.get(container_id)
        ips = att.result.get("ips", []) if att is not None else []
        return str(ips[0]["address"]).split("/")[0] if ips else ""

    def remove(self, container_id: str) -> None:
        self._api.remove_container(container_id, force=True, v=True)

    # -- docker ---------------------------------------------------------------------------

    def _create(self, name: str, uid: str) -> str:
        host_config = self._api.create_host_config(
            network_mode="none",
            oom_score_adj=self._oom_score_adj,
            ipc_mode="shareable",
            pid_mode=None,
            cgroup_parent=None,
            sysctls=None,
            security_opt=["seccomp=unconfined"],  # the shim's reading of an unset profile
        )
        created = self._api.create_container(
            INFRA_IMAGE,
            name=f"k8s_POD_{name}_{self._pod_namespace}_{uid}_0",
            hostname=name,
            labels={
                "io.kubernetes.pod.name": name,
                POD_NAMESPACE_LABEL: self._pod_namespace,
                "io.kubernetes.pod.uid": uid,
                "io.cri-shim.attempt": "0",
                "io.kubernetes.docker.type": "podsandbox",
                "io.kubernetes.container.name": "POD",
                # As many labels as the shim's infra containers carry (its sandbox and owner).
                "io.cri-shim.bench": "floor",
                "io.cri-shim.bench-pod-namespace": self._pod_namespace,
            },
            host_config=host_config,
        )
        container_id = str(created["Id"])
        with self._guard:
            self.ids.add(container_id)
        return container_id

    # -- CNI --------------------------------------------------------------------------------

    def _plugin_conf(self, plugin: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
        conf = dict(plugin)
        conf["name"] = self._conflist["name"]
        conf["cniVersion"] = self._conflist["cniVersion"]
        if prev is not None:
            conf["prevResult"] = prev
        # The runtime passes a capability only to plugins that declare it (spec "Deriving
        # runtimeConfig"); the benchmark's pods publish no host ports.
        if plugin.get("capabilities", {}).get("portMappings"):
            conf["runtimeConfig"] = {"portMappings": []}
        return conf

    def _exec(
        self,
        command: str,
        plugin_type: str,
        conf: dict[str, Any],
        container_id: str,
        netns: str,
        ifname: str,
        cni_args: str,
    ) -> dict[str, Any]:
        env = dict(os.environ)
        env.update(
            CNI_COMMAND=command,
            CNI_CONTAINERID=container_id,
            CNI_NETNS=netns,
            CNI_IFNAME=ifname,
            CNI_ARGS=cni_args,
            CNI_PATH=self._bin_dir,
        )
        proc = subprocess.run(
            [os.path.join(self._bin_dir, plugin_type)],
            input=json.dumps(conf).encode(),
            env=env,
            capture_output=True,
            timeout=PLUGIN_TIMEOUT_S,
            check=False,
        )
        if proc.returncode != 0:
            raise FloorError(
                f"failed to {command} plugin {plugin_type} for container {container_id}: "
                f"exit {proc.returncode}: {proc.stdout.decode(errors='replace').strip()} "
                f"{proc.stderr.decode(errors='replace').strip()}"
            )
        if command != "ADD":
            return {}
        result: dict[str, Any] = json.loads(proc.stdout)
        return result


def _loopback_conf() -> dict[str, Any]:
    return {"cniVersion": CNI_VERSION, "name": "cni-loopback", "type": "loopback"}
