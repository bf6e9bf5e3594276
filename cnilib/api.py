"""Running a network configuration list: the runtime half of the CNI spec (libcni's
CNIConfig). `conf` loads configs, `invoke` runs one plugin, this module runs a list.

Obligations implemented here, by spec section:
- "Attachment lifecycle": ADD in list order with prevResult threaded; on failure the
  whole list is DELeted in reverse before the error is returned, so nothing a plugin
  already allocated (an IPAM address) leaks.
- DEL in reverse with the cached final result as prevResult (>= 0.4.0); it tolerates
  a missing or corrupt cache and a vanished netns (then CNI_NETNS is empty).
- CHECK in order from 0.4.0, skipped with disableCheck; GC and STATUS from 1.1.0.
- "Version negotiation": each plugin's VERSION answer (cached per binary) must cover
  the version chosen, checked before any ADD runs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cnilib.cache import ResultCache
from cnilib.conf import NAME_PATTERN, parse_conf
from cnilib.errors import (
    CODE_INVALID_NETWORK_CONFIG,
    CODE_UNKNOWN_CONTAINER,
    CNIError,
    ConfigError,
    InvalidArgumentError,
    VersionError,
)
from cnilib.invoke import (
    ExecExecutor,
    PluginExecutor,
    exec_plugin,
    find_plugin,
    get_version_info,
    plugin_env,
)
from cnilib.locks import KeyedLocks, NetworkLocks
from cnilib.plugin_input import merged_capability_args, plugin_stdin
from cnilib.types import (
    CachedAttachment,
    GCAttachment,
    NetworkConfig,
    NetworkConfigList,
    Result,
    RuntimeConf,
)
from cnilib.validation import validate_container_id, validate_ifname
from cnilib.version import at_least, is_supported, parse_version

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _BinaryStamp:
    """Identity of a plugin binary on disk: a replaced binary is asked VERSION again."""

    mtime_ns: int
    size: int
    inode: int


class CNIConfig:
    """Runs CNI network configuration lists; safe to share between threads."""

    def __init__(
        self,
        bin_dirs: Sequence[str],
        cache_dir: str,
        executor: PluginExecutor | None = None,
        timeout: float = 60.0,
    ) -> None:
        self.bin_dirs = list(bin_dirs)
        self.cache_dir = cache_dir
        self.executor: PluginExecutor = executor if executor is not None else ExecExecutor()
        self.timeout = timeout
        self._cache = ResultCache(cache_dir)
        self._container_locks = KeyedLocks()
        self._network_locks = NetworkLocks()
        self._versions: dict[str, tuple[_BinaryStamp, list[str]]] = {}
        self._versions_guard = threading.Lock()

    # ---- public operations -------------------------------------------------------

    def add_network_list(
        self, net: NetworkConfigList, rt: RuntimeConf, rollback: bool = True
    ) -> Result:
        """ADD in order. A failure DELs the whole list (best effort) unless `rollback` is
        False: a runtime that registers its own DEL before ADD (and reports or retries it)
        says so, and the list is not DEL'd twice."""
        _validate_runtime_conf(net, rt)
        with self._network_locks.get(net.name).read(), self._container_locks.hold(rt.container_id):
            return self._add(net, rt, rollback)

    def del_network_list(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        _validate_runtime_conf(net, rt)
        with self._network_locks.get(net.name).read(), self._container_locks.hold(rt.container_id):
            self._del(net, rt)

    def check_network_list(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        _validate_runtime_conf(net, rt)
        with self._network_locks.get(net.name).read(), self._container_locks.hold(rt.container_id):
            self._check(net, rt)

    def gc_network_list(self, net: NetworkConfigList, valid: Sequence[GCAttachment]) -> None:
        """DEL every cached attachment of `net` not in `valid`, then GC each plugin."""
        if net.disable_gc:
            return
        # Exclusive: spec 1.1 forbids GC concurrently with ADD/DEL on the network.
        with self._network_locks.get(net.name).write():
            self._gc(net, valid)

    def get_status_network_list(self, net: NetworkConfigList) -> None:
        """Raise the plugin's error (codes 50/51 = not ready) if any plugin is not ready."""
        paths = self._find_all(net)
        version = self._negotiate(net, paths)
        if not at_least(version, "1.1.0"):
            return  # STATUS exists from 1.1.0; older plugins are ready by definition
        for plugin, path in zip(net.plugins, paths, strict=True):
            stdin = plugin_stdin(net.name, version, plugin)
            self._exec(path, "STATUS", None, stdin)

    def validate_network_list(self, net: NetworkConfigList) -> list[str]:
        """Check plugin presence and version support; return the capabilities used."""
        paths = self._find_all(net)
        self._negotiate(net, paths)
        return sorted({cap for p in net.plugins for cap, on in p.capabilities.items() if on})

    def negotiated_version(self, net: NetworkConfigList) -> str:
        """The version the next operation on `net` will use (for status reporting)."""
        return self._negotiate(net, self._find_all(net))

    def get_version_info(self, plugin_type: str) -> list[str]:
        return self._plugin_versions(find_plugin(plugin_type, self.bin_dirs))

    def get_cached_result(self, net_name: str, rt: RuntimeConf) -> Result | None:
        entry = self._cache.read(net_name, rt.container_id, rt.ifname)
        return entry.result if entry else None

    def get_cached_attachments(self, net_name: str) -> list[CachedAttachment]:
        """Cached attachments of network `net_name` (all networks when empty)."""
        return [a for a in self._cache.attachments() if not net_name or a.network_name == net_name]

    # ---- the operations, called with locks held ----------------------------------

    def _add(self, net: NetworkConfigList, rt: RuntimeConf, rollback: bool) -> Result:
        # Everything that can be known to fail is checked before the first ADD, so a
        # missing binary or a version mismatch never leaves half an attachment.
        paths = self._find_all(net)
        version = self._negotiate(net, paths)
        result: Result | None = None
        try:
            for plugin, path in zip(net.plugins, paths, strict=True):
                stdin = plugin_stdin(net.name, version, plugin, rt, result)
                out = self._exec(path, "ADD", rt, stdin)
                result = Result.from_json(out)
                # Keep one version along the chain and in the cache, as libcni converts
                # prevResult to the config version.
                result.cni_version = version
            assert result is not None  # plugins is never empty (conf validates it)
            self._cache.write(net.name, rt, net.bytes, result)
        except Exception as err:
            if rollback:
                self._rollback(net, rt, version, paths, err)
            raise
        return result

    def _rollback(
        self,
        net: NetworkConfigList,
        rt: RuntimeConf,
        version: str,
        paths: list[str],
        cause: Exception,
    ) -> None:
        """DEL the whole list in reverse after a failed ADD; best effort, every plugin.

        Plugins after the failing one get a DEL too: spec DEL semantics make that a
        no-op for them, and it is the only safe answer when a plugin failed midway.
        """
        netns = _live_netns(rt.netns)
        for plugin, path in reversed(list(zip(net.plugins, paths, strict=True))):
            stdin = plugin_stdin(net.name, version, plugin, rt)
            try:
                self._exec(path, "DEL", rt, stdin, netns=netns)
            except CNIError as err:
                log.warning(
                    "container %s: rollback DEL of %s failed: %s", rt.container_id, plugin.type, err
                )
                cause.add_note(f"rollback DEL of plugin {plugin.type} also failed: {err}")
        try:
            self._cache.delete(net.name, rt.container_id, rt.ifname)
        except CNIError as err:
            cause.add_note(str(err))

    def _del(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        paths = self._find_all(net)
        version = self._negotiate_for_teardown(net, paths)
        entry = self._cache.read(net.name, rt.container_id, rt.ifname)
        prev: Result | None = None
        if entry is not None:
            # After a restart the caller may have lost CNI_ARGS / capability args;
            # the cache remembers what ADD was given.
            rt = replace(
                rt,
                args=rt.args or entry.attachment.args,
                capability_args=merged_capability_args(
                    rt.capability_args, entry.attachment.capability_args
                ),
            )
            if entry.result is not None and at_least(version, "0.4.0"):
                prev = entry.result  # spec 0.4.0+: DEL gets the final ADD result
        netns = _live_netns(rt.netns)
        for plugin, path in reversed(list(zip(net.plugins, paths, strict=True))):
            stdin = plugin_stdin(net.name, version, plugin, rt, prev)
            self._exec(path, "DEL", rt, stdin, netns=netns)
        # Only after every plugin succeeded: a failed DEL is retried with the cache.
        self._cache.delete(net.name, rt.container_id, rt.ifname)

    def _check(self, net: NetworkConfigList, rt: RuntimeConf) -> None:
        paths = self._find_all(net)
        version = self._negotiate(net, paths)
        if net.disable_check or not at_least(version, "0.4.0"):
            return
        result = self.get_cached_result(net.name, rt)
        if result is None:
            raise CNIError(
                f"no cached result for network {net.name} container {rt.container_id} "
                f"interface {rt.ifname}",
                "CHECK needs the result of a previous ADD",
                code=CODE_UNKNOWN_CONTAINER,
                context=f"failed to CHECK network {net.name}",
            )
        for plugin, path in zip(net.plugins, paths, strict=True):
            stdin = plugin_stdin(net.name, version, plugin, rt, result)
            self._exec(path, "CHECK", rt, stdin)

    def _gc(self, net: NetworkConfigList, valid: Sequence[GCAttachment]) -> None:
        errors: list[CNIError] = []
        keep = set(valid)
        for att in self._cache.attachments():
            if att.network_name != net.name:
                continue
            if GCAttachment(att.container_id, att.ifname) in keep:
                continue
            stale_rt = RuntimeConf(
                container_id=att.container_id,
                netns=_reusable_netns(att.netns),
                ifname=att.ifname,
                args=att.args,
                capability_args=att.capability_args,
            )
            try:
                with self._container_locks.hold(att.container_id):
                    self._del(_cached_list_or(net, att), stale_rt)
            except CNIError as err:
                log.warning(
                    "GC: failed to delete stale attachment %s/%s: %s",
                    att.container_id,
                    att.ifname,
                    err,
                )
                errors.append(err)
        paths = self._find_all(net)
        version = self._negotiate(net, paths)
        if at_least(version, "1.1.0"):
            for plugin, path in zip(net.plugins, paths, strict=True):
                stdin = plugin_stdin(net.name, version, plugin, valid_attachments=valid)
                try:
                    self._exec(path, "GC", None, stdin)
                except CNIError as err:
                    errors.append(err)
        if errors:
            raise CNIError(
                f"{len(errors)} step(s) failed",
                "; ".join(str(e) for e in errors),
                code=errors[0].code,
                context=f"failed to GC network {net.name}",
            ) from errors[0]

    # ---- helpers ------------------------------------------------------------------

    def _exec(
        self,
        path: str,
        command: str,
        rt: RuntimeConf | None,
        stdin: bytes,
        netns: str | None = None,
    ) -> bytes:
        env = plugin_env(command, rt, self.bin_dirs, netns)
        log.debug(
            "%s %s container=%s stdin=%s",
            command,
            path,
            rt.container_id if rt else "",
            stdin.decode(errors="replace"),
        )
        out = exec_plugin(path, env, stdin, self.timeout, self.executor)
        log.debug("%s %s returned %s", command, path, out.decode(errors="replace"))
        return out

    def _find_all(self, net: NetworkConfigList) -> list[str]:
        return [find_plugin(p.type, self.bin_dirs) for p in net.plugins]

    def _plugin_versions(self, path: str) -> list[str]:
        st = os.stat(path)
        stamp = _BinaryStamp(st.st_mtime_ns, st.st_size, st.st_ino)
        with self._versions_guard:
            known = self._versions.get(path)
        if known is not None and known[0] == stamp:
            return known[1]
        versions = get_version_info(path, self.bin_dirs, self.timeout, self.executor)
        with self._versions_guard:
            self._versions[path] = (stamp, versions)
        return versions

    def _negotiate(self, net: NetworkConfigList, paths: list[str]) -> str:
        """Highest version offered by the config that this library and every plugin
        support (spec 1.1 "cniVersions"); VersionError naming the culprits otherwise."""
        offered = {net.cni_version, *net.cni_versions}
        ceiling = parse_version(net.cni_version)
        candidates = sorted(
            (v for v in offered if is_supported(v) and parse_version(v) <= ceiling),
            key=parse_version,
            reverse=True,
        )
        support: dict[str, list[str]] = {}
        for plugin, path in zip(net.plugins, paths, strict=True):
            try:
                support[plugin.type] = self._plugin_versions(path)
            except CNIError as err:
                raise VersionError(
                    f"plugin {plugin.type} did not answer VERSION",
                    str(err),
                    context=f"failed to negotiate CNI version of network {net.name}",
                ) from err
        for version in candidates:
            if all(version in versions for versions in support.values()):
                return version
        lacking = [
            f"{t} supports {v}" for t, v in support.items() if not any(c in v for c in candidates)
        ]
        raise VersionError(
            f"no plugin-supported version among {candidates or [net.cni_version]}",
            "; ".join(lacking) or f"plugins support {support}",
            context=f"failed to negotiate CNI version of network {net.name}",
        )

    def _negotiate_for_teardown(self, net: NetworkConfigList, paths: list[str]) -> str:
        # DEL must make progress even if VERSION misbehaves: fall back to the config's.
        try:
            return self._negotiate(net, paths)
        except VersionError as err:
            log.warning(
                "network %s: using cniVersion %s for DEL: %s", net.name, net.cni_version, err
            )
            return net.cni_version


def _validate_runtime_conf(net: NetworkConfigList, rt: RuntimeConf) -> None:
    if not NAME_PATTERN.fullmatch(net.name):
        raise ConfigError(net.source, "name", f"{net.name!r} must match {NAME_PATTERN.pattern}")
    validate_container_id(rt.container_id)
    validate_ifname(rt.ifname)
    # Capability args travel as JSON on stdin; find out now, not between two plugins.
    try:
        json.dumps(dict(rt.capability_args))
    except (TypeError, ValueError) as err:
        raise InvalidArgumentError(
            "capability args are not JSON-serializable", str(err), code=CODE_INVALID_NETWORK_CONFIG
        ) from err


def _live_netns(netns: str) -> str:
    """Spec DEL: a namespace that no longer exists is passed as empty CNI_NETNS."""
    return netns if netns and os.path.exists(netns) else ""


def _reusable_netns(netns: str) -> str:
    """A cached `/proc/<pid>/ns/net` may name a stranger's namespace once the pid is
    reused, so GC trusts only pinned (bind-mounted) paths from the cache."""
    return "" if netns.startswith("/proc/") else netns


def _cached_list_or(net: NetworkConfigList, att: CachedAttachment) -> NetworkConfigList:
    """The config the attachment was ADDed with (DEL should replay it exactly), or the
    current one when the cached bytes are missing or no longer parse."""
    if not att.config:
        return net
    try:
        cached = parse_conf(att.config, source=f"cache entry {att.container_id}")
    except ConfigError as err:
        log.warning("GC: cached config of %s unusable, using current: %s", att.container_id, err)
        return net
    return cached if cached.name == net.name else net


__all__ = ["CNIConfig", "NetworkConfig"]
