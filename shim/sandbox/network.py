"""The shim's only door into CNI: choose the network, set a pod up, tear it down, report status.

The conf dir is re-read whenever its listing or a file's mtime/size changes (checked on every
use: a handful of stat calls), so a config added, changed or removed takes effect for the next
pod without a restart, and NetworkReady follows it.
"""

from __future__ import annotations

import base64
import concurrent.futures
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from cnilib.api import CNIConfig
from cnilib.conf import conf_files, load_conf_list, parse_conf_list
from cnilib.errors import CNIError
from cnilib.invoke import ExecExecutor, PluginExecutor
from cnilib.types import GCAttachment, NetworkConfigList, Result, RuntimeConf
from netplugins.warm import WarmExecutor
from shim.errors import FailedPreconditionError, NetworkSetupError
from shim.metrics.cni import ObservedExecutor
from shim.metrics.registry import ShimMetrics
from shim.sandbox.netns_pin import is_pinned
from shim.store.sandbox_record import NetworkAttachment

log = logging.getLogger(__name__)

CHOICE_RETRY_S = 5.0  # how soon a failed choice of network is made again
STATUS_TIMEOUT_S = 2.0  # how long Status waits for a CNI STATUS answer
STATUS_CACHE_S = 3.0  # how long an answer is reused

POD_IFNAME = "eth0"
LOOPBACK_IFNAME = "lo"
# Loopback is its own one-plugin network, as containerd does it: the pod's configured chain
# need not contain it, and every pod needs `lo` up.
_LOOPBACK_CONF = json.dumps(
    {"cniVersion": "1.0.0", "name": "cni-loopback", "plugins": [{"type": "loopback"}]}
).encode()


@dataclass(frozen=True)
class NetworkChoice:
    network: NetworkConfigList | None
    error: str  # why there is no usable network (empty when there is one)
    skipped: tuple[str, ...]  # the files passed over, each with its reason


class PodNetwork:
    def __init__(
        self,
        conf_dir: str,
        bin_dirs: tuple[str, ...],
        cache_dir: str,
        plugin_timeout: float,
        executor: PluginExecutor | None = None,
        metrics: ShimMetrics | None = None,
    ) -> None:
        self.conf_dir = conf_dir
        self.bin_dirs = bin_dirs
        self._executor = executor
        # Every plugin call passes the executor: timed there, cnilib knows nothing of it.
        runner: PluginExecutor = executor if executor is not None else ExecExecutor()
        if metrics is not None:
            runner = ObservedExecutor(runner, metrics)
        self._cni = CNIConfig(bin_dirs, cache_dir, executor=runner, timeout=plugin_timeout)
        self._loopback = parse_conf_list(_LOOPBACK_CONF, source="<built-in loopback>")
        self._lock = threading.Lock()
        self._signature: tuple[Any, ...] | None = None
        self._choice = NetworkChoice(None, "not loaded yet", ())
        self._chosen_at = 0.0
        self._status_lock = threading.Lock()
        self._status_answer: tuple[NetworkConfigList, float, str] | None = None
        self._status_future: concurrent.futures.Future[str] | None = None
        self._status_pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="cni-status"
        )

    def executor_counts(self) -> dict[str, int] | None:
        """How plugin calls were run (warm, fallback, foreign), when a warm worker is used."""
        counts = getattr(self._executor, "counts", None)
        return dict(counts) if isinstance(counts, dict) else None

    def warm_executor(self) -> WarmExecutor | None:
        """The warm worker's executor, when plugins run through one (for metrics)."""
        return self._executor if isinstance(self._executor, WarmExecutor) else None

    # -- choosing the network -------------------------------------------------------------

    def choice(self) -> NetworkChoice:
        signature = self._conf_dir_signature()
        with self._lock:
            # A failure may be passing (a VERSION that timed out under load): look again
            # after a short while even when nothing on disk changed.
            failed = self._choice.network is None or bool(self._choice.skipped)
            retry = failed and time.monotonic() - self._chosen_at >= CHOICE_RETRY_S
            if signature != self._signature or retry:
                self._choice = self._choose()
                self._signature = signature
                self._chosen_at = time.monotonic()
            return self._choice

    def current(self) -> NetworkConfigList:
        """The network for the next pod, or FAILED_PRECONDITION saying why there is none."""
        choice = self.choice()
        if choice.network is None:
            raise FailedPreconditionError(f"network plugin is not ready: {choice.error}")
        return choice.network

    def status_error(self) -> str:
        """Empty when pods can get a network now; otherwise why not (for NetworkReady).

        kubelet asks every 5 s and marks the node NotReady when Status is slow, so a CNI 1.1
        STATUS is asked at most once per STATUS_CACHE_S, one at a time, and waited for at most
        STATUS_TIMEOUT_S; a plugin that hangs longer is reported as not answering (it keeps
        running up to the plugin timeout, in the background, never twice at once)."""
        choice = self.choice()
        network = choice.network
        if network is None:
            return choice.error
        with self._status_lock:
            cached = self._status_answer
            fresh = cached is not None and time.monotonic() - cached[1] < STATUS_CACHE_S
            if cached is not None and fresh and cached[0] is network:
                return cached[2]
            future = self._status_future
            if future is None or future.done():
                future = self._status_pool.submit(self._ask_status, network)
                self._status_future = future
        try:
            return future.result(timeout=STATUS_TIMEOUT_S)
        except concurrent.futures.TimeoutError:
            return (
                f"network {network.name}: its plugins' STATUS did not answer within"
                f" {STATUS_TIMEOUT_S:.0f} s"
            )

    def _ask_status(self, network: NetworkConfigList) -> str:
        try:
            self._cni.get_status_network_list(network)
            answer = ""
        except CNIError as err:
            answer = f"network {network.name} reports it is not ready: {err}"
        with self._status_lock:
            self._status_answer = (network, time.monotonic(), answer)
        return answer

    def _choose(self) -> NetworkChoice:
        skipped: list[str] = []
        try:
            self._cni.validate_network_list(self._loopback)
        except CNIError as err:
            return NetworkChoice(
                None, f"the loopback plugin is not usable from {':'.join(self.bin_dirs)}: {err}", ()
            )
        for path in conf_files(self.conf_dir):
            try:
                network = load_conf_list(path)
                self._cni.validate_network_list(network)
            except CNIError as err:
                log.warning("skipping CNI config %s: %s", path, err)
                skipped.append(f"{os.path.basename(path)}: {err}")
                continue
            log.info("using CNI network %s from %s", network.name, path)
            return NetworkChoice(network, "", tuple(skipped))
        why = f"no valid network config found in {self.conf_dir}"
        if skipped:
            why += " (" + "; ".join(skipped) + ")"
        return NetworkChoice(None, why, tuple(skipped))

    def _conf_dir_signature(self) -> tuple[Any, ...]:
        entries = []
        try:
            with os.scandir(self.conf_dir) as it:
                for entry in it:
                    try:
                        st = entry.stat()
                    except OSError:
                        continue
                    entries.append((entry.name, st.st_mtime_ns, st.st_size, st.st_ino))
        except OSError as err:
            return ("unreadable", str(err))
        # Plugin binaries come, go and are replaced in place (same name, new inode or mtime):
        # a config whose plugin is missing is skipped, and a new binary may answer VERSION
        # differently.
        for d in self.bin_dirs:
            try:
                with os.scandir(d) as it:
                    for entry in it:
                        try:
                            st = entry.stat()
                        except OSError:
                            continue
                        entries.append((f"{d}/{entry.name}", st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                entries.append((d, 0, 0, 0))
        return tuple(sorted(entries))

    # -- pods -----------------------------------------------------------------------------

    def attachment_for(
        self,
        network: NetworkConfigList,
        cni_args: list[tuple[str, str]],
        capability_args: dict[str, Any],
    ) -> NetworkAttachment:
        return NetworkAttachment(
            network_name=network.name,
            conf_source=network.source,
            conf_bytes_b64=base64.b64encode(network.bytes).decode(),
            ifname=POD_IFNAME,
            cni_args=cni_args,
            capability_args=capability_args,
        )

    def setup(self, sandbox_id: str, netns_path: str, attachment: NetworkAttachment) -> Result:
        network = parse_conf_list(attachment.conf_bytes, source=attachment.conf_source)
        try:
            self._cni.add_network_list(
                self._loopback, RuntimeConf(sandbox_id, netns_path, LOOPBACK_IFNAME)
            )
            # The caller registered teardown() before this ADD and owns the undo: cnilib's
            # own rollback would DEL the list a second time.
            return self._cni.add_network_list(
                network, self._runtime_conf(sandbox_id, netns_path, attachment), rollback=False
            )
        except CNIError as err:
            raise NetworkSetupError(
                f"failed to set up network {network.name} for pod sandbox {sandbox_id}: {err}"
            ) from err

    def teardown(self, sandbox_id: str, netns_path: str, attachment: NetworkAttachment) -> None:
        """CNI DEL, exactly as ADD ran. A namespace that is no longer pinned (reboot, or never
        pinned) is passed as an empty CNI_NETNS, which the spec allows: plugins then release
        what they hold outside the namespace (addresses, iptables rules)."""
        netns = netns_path if netns_path and is_pinned(netns_path) else ""
        network = parse_conf_list(attachment.conf_bytes, source=attachment.conf_source)
        try:
            self._cni.del_network_list(network, self._runtime_conf(sandbox_id, netns, attachment))
            self._cni.del_network_list(
                self._loopback, RuntimeConf(sandbox_id, netns, LOOPBACK_IFNAME)
            )
        except CNIError as err:
            raise NetworkSetupError(
                f"failed to tear down network {network.name} of pod sandbox {sandbox_id}: {err}"
            ) from err

    def garbage_collect(self, live: dict[str, list[str]]) -> None:
        """Release what cached attachments of pods that no longer exist still hold.
        `live` maps a network name to the sandbox ids attached to it. Every network found in
        the result cache is collected, not only the current one: a network renamed or removed
        while the shim was down may still hold addresses (each is taken from its cached
        config)."""
        networks: dict[str, NetworkConfigList] = {self._loopback.name: self._loopback}
        current = self.choice().network
        if current is not None:
            networks[current.name] = current
        for cached in self._cni.get_cached_attachments(""):
            if cached.network_name in networks:
                continue
            try:
                networks[cached.network_name] = parse_conf_list(cached.config, "<result cache>")
            except CNIError as err:
                log.warning(
                    "cached config of network %s is unreadable: %s", cached.network_name, err
                )
        every_pod = [cid for ids in live.values() for cid in ids]
        for name, network in networks.items():
            if network is self._loopback:
                valid = [GCAttachment(c, LOOPBACK_IFNAME) for c in every_pod]
            else:
                valid = [GCAttachment(c, POD_IFNAME) for c in live.get(name, [])]
            try:
                self._cni.gc_network_list(network, valid)
            except CNIError as err:
                log.warning("CNI garbage collection of network %s failed: %s", name, err)

    @staticmethod
    def _runtime_conf(sandbox_id: str, netns: str, attachment: NetworkAttachment) -> RuntimeConf:
        return RuntimeConf(
            container_id=sandbox_id,
            netns=netns,
            ifname=attachment.ifname,
            args=tuple(attachment.cni_args),
            capability_args=attachment.capability_args,
        )
