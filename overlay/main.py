"""The ``pyflanneld`` command: flanneld's flags (and ``FLANNELD_*`` environment), logging,
signals, exit codes.

Exit 0 on SIGTERM/SIGINT, leaving the lease and the kernel state for the next start; exit 2 on
a bad flag (argparse's usage error); exit 1 on a bad network config, a kernel refusal at
start-up, or a lease that was revoked ("Lease has been revoked. Shutting down daemon.", as
flanneld says) - a supervisor restarts us then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from pyroute2 import AsyncIPRoute

from overlay.daemon import Daemon, Options
from overlay.errors import LeaseRevoked, OverlayError
from overlay.store.etcd import EtcdClient
from overlay.store.leases import DEFAULT_LEASE_TTL, DEFAULT_PREFIX, EtcdSubnetManager

log = logging.getLogger("overlay")

ENV_PREFIX = "FLANNELD_"


def parse_bool(text: str) -> bool:
    """Go's strconv.ParseBool, which flanneld's boolean flags use."""
    low = text.strip().lower()
    if low in ("1", "t", "true"):
        return True
    if low in ("0", "f", "false"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean (true or false)")


def _bool_flag(parser: argparse.ArgumentParser, name: str, default: bool, help: str) -> None:
    # `--ip-masq` alone means true; `--ip-masq=false` turns it off, as with Go's flag package.
    parser.add_argument(
        name, nargs="?", const=True, default=default, type=parse_bool, metavar="BOOL", help=help
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pyflanneld",
        description="flanneld's job in Python: subnet leases in etcd, VXLAN or host-gw routes, "
        "iptables rules and subnet.env for the flannel CNI plugin",
    )
    p.add_argument("--etcd-endpoints", default="http://127.0.0.1:4001,http://127.0.0.1:2379")
    p.add_argument("--etcd-prefix", default=DEFAULT_PREFIX)
    p.add_argument("--etcd-keyfile", default="")
    p.add_argument("--etcd-certfile", default="")
    p.add_argument("--etcd-cafile", default="")
    p.add_argument("--etcd-username", default="")
    p.add_argument("--etcd-password", default="")
    p.add_argument("--iface", action="append", default=[], help="interface name or IP (repeatable)")
    p.add_argument("--iface-regex", action="append", default=[])
    p.add_argument("--iface-can-reach", default="")
    p.add_argument("--public-ip", default="")
    p.add_argument("--public-ipv6", default="")
    p.add_argument("--subnet-file", default="/run/flannel/subnet.env")
    p.add_argument("--subnet-lease-renew-margin", type=int, default=60, help="minutes (1..1439)")
    p.add_argument(
        "--subnet-lease-ttl",
        type=int,
        default=DEFAULT_LEASE_TTL,
        help="seconds; not a flanneld flag, for tests that let a lease expire",
    )
    _bool_flag(p, "--ip-masq", False, "masquerade traffic that leaves the cluster network")
    _bool_flag(p, "--ip-masq-fully-random-disable", False, "masquerade without --random-fully")
    p.add_argument("--iptables-resync", type=int, default=5, help="seconds")
    _bool_flag(p, "--iptables-forward-rules", True, "accept the cluster network in FORWARD")
    _bool_flag(p, "--kube-subnet-mgr", False, "the Kubernetes API as the store (not yet)")
    p.add_argument("--kube-api-url", default="")
    p.add_argument("--kubeconfig-file", default="")
    p.add_argument("--kube-annotation-prefix", default="flannel.alpha.coreos.com")
    p.add_argument("--net-config-path", default="/etc/kube-flannel/net-conf.json")
    p.add_argument("--healthz-ip", default="0.0.0.0")
    p.add_argument("--healthz-port", type=int, default=0, help="0: no healthz server")
    p.add_argument("-v", type=int, default=0, dest="verbosity", help="log verbosity (glog -v)")
    return p


def _env_defaults(parser: argparse.ArgumentParser, environ: dict[str, str]) -> None:
    """FLANNELD_<FLAG> sets a flag's default (flanneld's flagutil.SetFlagsFromEnv)."""
    defaults: dict[str, Any] = {}
    for action in parser._actions:
        long = next((s for s in action.option_strings if s.startswith("--")), None)
        if long is None or action.dest == "help":
            continue
        value = environ.get(ENV_PREFIX + long[2:].upper().replace("-", "_"))
        if value is None:
            continue
        try:
            if isinstance(action, argparse._AppendAction):
                defaults[action.dest] = [v for v in value.split(",") if v]
            elif action.type is not None and callable(action.type):
                defaults[action.dest] = action.type(value)
            else:
                defaults[action.dest] = value
        except (ValueError, argparse.ArgumentTypeError) as exc:
            parser.error(
                f"invalid {ENV_PREFIX}{long[2:].upper().replace('-', '_')}={value!r}: {exc}"
            )
    parser.set_defaults(**defaults)


def parse_args(
    argv: Sequence[str] | None, environ: dict[str, str] | None = None
) -> argparse.Namespace:
    parser = build_parser()
    _env_defaults(parser, dict(os.environ if environ is None else environ))
    args = parser.parse_args(argv)
    if not 1 <= args.subnet_lease_renew_margin <= 1439:
        parser.error(
            f"--subnet-lease-renew-margin {args.subnet_lease_renew_margin} is out of range 1..1439"
        )
    if args.subnet_lease_ttl < 2:
        parser.error(f"--subnet-lease-ttl {args.subnet_lease_ttl} is too short (at least 2 s)")
    if args.iptables_resync < 1:
        parser.error(f"--iptables-resync {args.iptables_resync} must be at least 1 second")
    if not 0 <= args.healthz_port <= 65535:
        parser.error(f"--healthz-port {args.healthz_port} is out of range 0..65535")
    if args.kube_subnet_mgr:
        parser.error("--kube-subnet-mgr is not supported yet: pyflanneld keeps leases in etcd")
    if args.public_ipv6:
        parser.error("--public-ipv6 is not supported: pyflanneld is IPv4-only")
    if bool(args.etcd_username) != bool(args.etcd_password):
        parser.error("--etcd-username and --etcd-password go together")
    return args


def options_of(args: argparse.Namespace) -> Options:
    return Options(
        ifaces=list(args.iface),
        iface_regex=list(args.iface_regex),
        iface_can_reach=args.iface_can_reach or None,
        public_ip=args.public_ip or None,
        subnet_file=args.subnet_file,
        renew_margin=args.subnet_lease_renew_margin * 60.0,
        ip_masq=args.ip_masq,
        random_fully=not args.ip_masq_fully_random_disable,
        forward_rules=args.iptables_forward_rules,
        iptables_resync=float(args.iptables_resync),
        healthz_ip=args.healthz_ip,
        healthz_port=args.healthz_port,
    )


async def _serve(args: argparse.Namespace) -> int:
    try:
        store = EtcdClient(
            args.etcd_endpoints.split(","),
            cafile=args.etcd_cafile or None,
            certfile=args.etcd_certfile or None,
            keyfile=args.etcd_keyfile or None,
            username=args.etcd_username or None,
            password=args.etcd_password or None,
        )
    except ValueError as exc:
        log.error("invalid etcd settings: %s", exc)
        return 1
    manager = EtcdSubnetManager(store, args.etcd_prefix, ttl=args.subnet_lease_ttl)
    daemon = Daemon(manager, options_of(args))
    loop = asyncio.get_running_loop()
    main_task = asyncio.current_task()
    assert main_task is not None
    stopping: list[str] = []

    def stop(name: str) -> None:
        log.info("%s: shutting down (the lease and the kernel state stay)", name)
        stopping.append(name)
        main_task.cancel()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, sig.name)
    try:
        async with AsyncIPRoute() as ipr:
            await daemon.run(ipr)
        return 0
    except asyncio.CancelledError:
        if stopping:
            return 0
        raise
    except (OverlayError, ExceptionGroup) as exc:
        return _exit_code(exc)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        with contextlib.suppress(Exception):
            await store.aclose()


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _exit_code(exc: BaseException) -> int:
    """Log why the daemon stops; errors that are not ours propagate with their traceback."""
    leaves = _leaves(exc)
    revoked = [e for e in leaves if isinstance(e, LeaseRevoked)]
    if revoked:
        log.error("%s. Lease has been revoked. Shutting down daemon.", revoked[0])
        return 1
    ours = [e for e in leaves if isinstance(e, OverlayError)]
    if len(ours) != len(leaves):
        raise exc
    for err in ours:
        log.error("%s", err)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    log.setLevel(logging.DEBUG if args.verbosity >= 3 else logging.INFO)
    return asyncio.run(_serve(args))
