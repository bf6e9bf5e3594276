"""flannel: fill in a delegate configuration from flanneld's subnet file and run it.

Behaviour of the reference flannel CNI plugin (flannel-io/cni-plugin, README "Operation"):
the delegate defaults to ``type: bridge`` with ``isGateway: true``, ``mtu`` from
``FLANNEL_MTU``, ``ipMasq`` = not ``FLANNEL_IPMASQ`` (masquerade here only when flanneld does
not), and ``ipam`` of ``type: host-local`` whose range is ``FLANNEL_SUBNET`` (and
``FLANNEL_IPV6_SUBNET``) with routes to ``FLANNEL_NETWORK`` (and ``FLANNEL_IPV6_NETWORK``).
Keys already in ``delegate`` win. The final delegate is saved under ``<dataDir>/<container id>``
before it runs, so DEL can replay exactly the same configuration later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import json
import os
from dataclasses import dataclass
from typing import Any

from cnilib.atomic import is_temp_file, sweep_temp_files, write_atomic
from netplugins import delegation, errors, skel
from netplugins.result import normalize
from netplugins.statefiles import state_path

DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env"
DEFAULT_DATA_DIR = "/var/lib/cni/flannel"


@dataclass
class SubnetEnv:
    network: str = ""
    subnet: str = ""
    ipv6_network: str = ""
    ipv6_subnet: str = ""
    mtu: int | None = None
    ipmasq: bool | None = None


def _network_of(value: str, key: str) -> str:
    try:
        return str(ipaddress.ip_interface(value).network)
    except ValueError as exc:
        raise errors.ConfigError(f"failed to parse {key}={value!r}: not a CIDR") from exc


def read_subnet_env(path: str) -> SubnetEnv:
    try:
        with open(path) as fh:
            text = fh.read()
    except OSError as exc:
        raise errors.NetPluginError(
            f"failed to load flannel 'subnet.env' file {path}", str(exc), code=errors.NOT_AVAILABLE
        ) from exc
    env = SubnetEnv()
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep:
            continue
        value = value.strip()
        if key == "FLANNEL_NETWORK":
            env.network = _network_of(value, key)
        elif key == "FLANNEL_SUBNET":
            env.subnet = _network_of(value, key)
        elif key == "FLANNEL_IPV6_NETWORK":
            env.ipv6_network = _network_of(value, key)
        elif key == "FLANNEL_IPV6_SUBNET":
            env.ipv6_subnet = _network_of(value, key)
        elif key == "FLANNEL_MTU":
            try:
                env.mtu = int(value)
            except ValueError as exc:
                raise errors.ConfigError(f"failed to parse FLANNEL_MTU={value!r}") from exc
        elif key == "FLANNEL_IPMASQ":
            env.ipmasq = value.lower() == "true"
    missing = [
        k
        for k, v in (("FLANNEL_SUBNET", env.subnet or env.ipv6_subnet), ("FLANNEL_MTU", env.mtu))
        if v is None or v == ""
    ]
    if env.ipmasq is None:
        missing.append("FLANNEL_IPMASQ")
    if missing:
        raise errors.ConfigError(f"failed to load {path}: {', '.join(missing)} missing")
    return env


def build_delegate(netconf: dict[str, Any], env: SubnetEnv) -> dict[str, Any]:
    """The delegate configuration the reference plugin would produce."""
    delegate = dict(netconf.get("delegate") or {})
    delegate["name"] = netconf["name"]
    delegate.setdefault("type", "bridge")
    if "ipMasq" not in delegate:
        delegate["ipMasq"] = not env.ipmasq
    if "mtu" not in delegate:
        delegate["mtu"] = env.mtu
    if delegate["type"] == "bridge":
        delegate.setdefault("isGateway", True)
    if netconf.get("cniVersion"):
        delegate["cniVersion"] = netconf["cniVersion"]
    if netconf.get("runtimeConfig"):
        delegate["runtimeConfig"] = netconf["runtimeConfig"]
    ipam = dict(netconf.get("ipam") or delegate.get("ipam") or {})
    ipam.setdefault("type", "host-local")
    ranges = [[{"subnet": s}] for s in (env.subnet, env.ipv6_subnet) if s]
    ipam["ranges"] = ranges
    routes = list(ipam.get("routes") or [])
    routes += [{"dst": n} for n in (env.network, env.ipv6_network) if n]
    ipam["routes"] = routes
    ipam.pop("subnet", None)
    delegate["ipam"] = ipam
    return delegate


def _conf_paths(netconf: dict[str, Any], container_id: str | None) -> tuple[str, str, str]:
    """Subnet file, data dir and the saved delegate's path (empty when ``container_id`` is
    None: GC and STATUS have no container)."""
    if not netconf.get("name"):
        raise errors.ConfigError("failed to load flannel config: missing network 'name'")
    subnet_file = str(netconf.get("subnetFile") or DEFAULT_SUBNET_FILE)
    data_dir = str(netconf.get("dataDir") or DEFAULT_DATA_DIR)
    saved = "" if container_id is None else state_path(data_dir, container_id, "container id")
    return subnet_file, data_dir, saved


def _save(path: str, delegate: dict[str, Any]) -> None:
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    try:
        write_atomic(path, json.dumps(delegate).encode(), mode=0o600)
    except OSError as exc:
        raise errors.IOFailure(f"failed to save delegate {path}", str(exc)) from exc


def _load_saved(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise errors.IOFailure(f"failed to read saved delegate {path}", str(exc)) from exc
    if not isinstance(data, dict):
        raise errors.IOFailure(f"failed to read saved delegate {path}: not a JSON object")
    return data


def cmd_add(args: skel.CmdArgs) -> dict[str, Any]:
    subnet_file, _, saved = _conf_paths(args.netconf, args.container_id)
    delegate = build_delegate(args.netconf, read_subnet_env(subnet_file))
    # Saved first: if the delegate fails half-way, the runtime's DEL still finds it.
    _save(saved, delegate)
    result = delegation.delegate("ADD", str(delegate["type"]), delegate, args)
    assert result is not None
    return normalize(result)


def cmd_del(args: skel.CmdArgs) -> None:
    _, _, saved = _conf_paths(args.netconf, args.container_id)
    delegate = _load_saved(saved)
    if delegate is None:
        return  # nothing was set up (or DEL already ran): DEL must succeed
    delegation.delegate("DEL", str(delegate["type"]), delegate, args)
    with contextlib.suppress(FileNotFoundError):
        os.remove(saved)


def cmd_check(args: skel.CmdArgs) -> None:
    _, _, saved = _conf_paths(args.netconf, args.container_id)
    delegate = _load_saved(saved)
    if delegate is None:
        raise errors.CheckFailed(f"flannel: no saved delegate for container {args.container_id}")
    if "prevResult" in args.netconf:
        delegate["prevResult"] = args.netconf["prevResult"]
    delegation.delegate("CHECK", str(delegate["type"]), delegate, args)


DEFAULT_IFNAME = "eth0"  # what runtimes name the pod interface; a lost attachment's is unknown


def cmd_gc(args: skel.CmdArgs) -> None:
    """SPEC 1.1 GC: tear down this network's attachments missing from the valid ones.

    ``dataDir`` may be shared by several flannel networks, so only saved delegates whose
    ``name`` is this network's are touched. Each stale one gets its delegate's DEL with the
    configuration it was set up with (like a runtime's DEL after the netns is gone: empty
    CNI_NETNS); its file goes only once that DEL succeeded, so a failed teardown is retried at
    the next GC. Then the delegate's own GC (bridge -> host-local) runs, as before.
    """
    subnet_file, data_dir, _ = _conf_paths(args.netconf, None)
    network = str(args.netconf["name"])
    attachments = [
        a for a in args.netconf.get("cni.dev/valid-attachments") or [] if isinstance(a, dict)
    ]
    valid = {str(a.get("containerID", "")) for a in attachments}
    sweep_temp_files(data_dir)  # leftovers of saves killed half-way (see _save)
    failure: errors.NetPluginError | None = None
    for container_id in _saved_ids(data_dir):
        if container_id in valid:
            continue
        try:
            _delete_stale(args, data_dir, network, container_id)
        except errors.NetPluginError as exc:
            failure = failure or exc  # go on: one broken leftover must not pin the others
    delegate = build_delegate(args.netconf, read_subnet_env(subnet_file))
    delegate["cni.dev/valid-attachments"] = attachments
    delegation.delegate("GC", str(delegate["type"]), delegate, args)
    if failure is not None:
        raise failure


def _saved_ids(data_dir: str) -> list[str]:
    try:
        names = os.listdir(data_dir)
    except FileNotFoundError:
        return []
    # Temp files are saves in progress (see _save; ".tmp<pid>" of older versions), not
    # attachments.
    return sorted(
        n
        for n in names
        if not is_temp_file(n) and ".tmp" not in n and os.path.isfile(os.path.join(data_dir, n))
    )


def _delete_stale(args: skel.CmdArgs, data_dir: str, network: str, container_id: str) -> None:
    path = state_path(data_dir, container_id, "saved delegate name")
    try:
        delegate = _load_saved(path)
    except errors.IOFailure:
        return  # not a delegate we can read, so not provably this network's: leave it
    if delegate is None or delegate.get("name") != network or not delegate.get("type"):
        return
    env = dict(args.env)
    env.update(
        CNI_COMMAND="DEL", CNI_CONTAINERID=container_id, CNI_NETNS="", CNI_IFNAME=DEFAULT_IFNAME
    )
    del_args = dataclasses.replace(
        args,
        command="DEL",
        container_id=container_id,
        netns="",
        ifname=DEFAULT_IFNAME,
        netconf=delegate,
        env=env,
    )
    try:
        delegation.delegate("DEL", str(delegate["type"]), delegate, del_args)
    except errors.NetPluginError as exc:
        raise errors.NetPluginError(
            f"failed to delete stale attachment {container_id}: {exc.msg}", exc.details, exc.code
        ) from exc
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def cmd_status(args: skel.CmdArgs) -> None:
    """SPEC 1.1 STATUS: not ready (50) until flanneld has written the subnet file."""
    subnet_file, _, _ = _conf_paths(args.netconf, None)
    read_subnet_env(subnet_file)


PLUGIN = skel.PluginSpec(
    name="flannel",
    add=cmd_add,
    delete=cmd_del,
    check=cmd_check,
    gc=cmd_gc,
    status=cmd_status,
)


def main() -> None:
    skel.main(PLUGIN)
