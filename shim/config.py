"""Command-line configuration, with the flag names cri-dockerd uses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from shim import __version__
from shim.config_file import ConfigFileError, load_config_file
from shim.logformat import LOG_FORMATS
from shim.metrics.address import split_address
from shim.streaming.urls import parse_bind_addr

DEFAULT_ENDPOINT = "unix:///run/cri-shim.sock"


@dataclass(frozen=True)
class ShimConfig:
    endpoint: str = DEFAULT_ENDPOINT
    docker_endpoint: str = "unix:///var/run/docker.sock"
    cni_conf_dir: str = "/etc/cni/net.d"
    cni_bin_dirs: tuple[str, ...] = ("/opt/cni/bin",)
    cni_cache_dir: str = "/var/lib/cni/cache"
    pod_infra_container_image: str = "registry.k8s.io/pause:3.10"
    root_directory: str = "/var/lib/cri-shim"
    log_level: str = "info"
    log_format: str = "text"
    # How long one CNI plugin may run before it is killed (a hung plugin must not hang the pod).
    cni_plugin_timeout: float = 60.0
    # Run our own plugins (netplugins) in a warm pre-forked worker instead of exec'ing them cold.
    cni_warm_plugins: bool = True
    # host:port of the Prometheus /metrics endpoint; empty: not served.
    metrics_address: str = ""
    # Events a GetContainerEvents subscriber may be behind before it is disconnected.
    container_events_buffer: int = 256
    # host:port of the streaming server (Exec/Attach/PortForward URLs); port 0 picks one.
    streaming_bind_addr: str = "127.0.0.1:0"

    @property
    def socket_path(self) -> str:
        return socket_path_of(self.endpoint)

    def to_args(self) -> list[str]:
        """The command line that gives this configuration (tests and benchmarks start
        private shims this way)."""
        args = [
            "--container-runtime-endpoint", self.endpoint,
            "--docker-endpoint", self.docker_endpoint,
            "--cni-conf-dir", self.cni_conf_dir,
            "--cni-bin-dir", ",".join(self.cni_bin_dirs),
            "--cni-cache-dir", self.cni_cache_dir,
            "--pod-infra-container-image", self.pod_infra_container_image,
            "--root-directory", self.root_directory,
            "--log-level", self.log_level,
            "--log-format", self.log_format,
            "--cni-plugin-timeout", str(self.cni_plugin_timeout),
        ]  # fmt: skip
        if not self.cni_warm_plugins:
            args.append("--no-cni-warm-plugins")
        if self.metrics_address:
            args += ["--metrics-address", self.metrics_address]
        args += ["--container-events-buffer", str(self.container_events_buffer)]
        args += ["--streaming-bind-addr", self.streaming_bind_addr]
        return args


def socket_path_of(endpoint: str) -> str:
    if not endpoint.startswith("unix://"):
        raise ValueError(f"only unix:// endpoints are supported, got {endpoint!r}")
    return endpoint.removeprefix("unix://")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's defaults formatter, except that a help text which states its default in
    words ("default: the warm worker runs them") keeps them instead of getting "(default:
    True)"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.help and "default:" in action.help:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    """Every flag with a description; --help shows each one's default."""
    defaults = ShimConfig()
    parser = argparse.ArgumentParser(
        prog="cri-shim",
        description="CRI v1 runtime shim over Docker with CNI pod networking.",
        formatter_class=_HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"cri-shim {__version__}")
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=None,
        help="TOML file with the same keys as these flags (container-runtime-endpoint = ...);"
        " flags on the command line win over it (YAML is not supported; default: no file)",
    )
    parser.add_argument(
        "--container-runtime-endpoint",
        default=defaults.endpoint,
        help="unix:// socket the CRI gRPC server listens on; under systemd socket activation"
        " (LISTEN_FDS) the inherited socket bound to this path is served",
    )
    parser.add_argument(
        "--docker-endpoint", default=defaults.docker_endpoint, help="Docker Engine API endpoint"
    )
    parser.add_argument(
        "--cni-conf-dir",
        default=defaults.cni_conf_dir,
        help="directory of CNI network configurations; the first valid one is used",
    )
    parser.add_argument(
        "--cni-bin-dir",
        default=",".join(defaults.cni_bin_dirs),
        help="comma-separated list of directories searched for CNI plugins",
    )
    parser.add_argument(
        "--cni-cache-dir",
        default=defaults.cni_cache_dir,
        help="directory of libcni's result cache (CHECK and DEL read it)",
    )
    parser.add_argument(
        "--pod-infra-container-image",
        default=defaults.pod_infra_container_image,
        help="image of the infra (pause) container that holds each pod's namespaces",
    )
    parser.add_argument(
        "--root-directory",
        default=defaults.root_directory,
        help="directory of cri-shim's state: sandbox checkpoints, pinned netns, lock",
    )
    parser.add_argument(
        "--log-level",
        default=defaults.log_level,
        choices=["debug", "info", "warning", "error"],
        help="least severe level that is logged",
    )
    parser.add_argument(
        "--log-format",
        default=defaults.log_format,
        choices=list(LOG_FORMATS),
        help="text lines, or one JSON object a line (time, level, logger, message,"
        " sandbox_id, container_id)",
    )
    parser.add_argument(
        "--cni-plugin-timeout",
        type=float,
        default=defaults.cni_plugin_timeout,
        help="seconds one CNI plugin may run before it is killed",
    )
    parser.add_argument(
        "--no-cni-warm-plugins",
        dest="cni_warm_plugins",
        action="store_false",
        help="exec our own CNI plugins cold instead of through the warm worker"
        " (default: the warm worker runs them)",
    )
    parser.add_argument(
        "--metrics-address",
        default=defaults.metrics_address,
        metavar="HOST:PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics, e.g. 127.0.0.1:9099"
        " (default: not served)",
    )
    parser.add_argument(
        "--container-events-buffer",
        type=int,
        default=defaults.container_events_buffer,
        help="events a GetContainerEvents subscriber may fall behind before it is disconnected",
    )
    parser.add_argument(
        "--streaming-bind-addr",
        default=defaults.streaming_bind_addr,
        metavar="HOST:PORT",
        help="where the streaming server for exec, attach and port-forward listens; port 0"
        " picks a free one, host 0.0.0.0 serves all addresses (default: 127.0.0.1:0, loopback"
        " only: the URLs' one-time token is its only protection)",
    )
    return parser


def parse_args(argv: list[str] | None = None) -> ShimConfig:
    parser = build_parser()
    # --config first: the file's values become defaults, so the flags still win over them.
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config")
    config_file = pre.parse_known_args(argv)[0].config
    if config_file:
        try:
            parser.set_defaults(**load_config_file(config_file, parser))
        except ConfigFileError as err:
            parser.error(str(err))
    ns = parser.parse_args(argv)
    try:
        socket_path_of(ns.container_runtime_endpoint)
    except ValueError as err:
        parser.error(str(err))
    bin_dirs = tuple(d for d in ns.cni_bin_dir.split(",") if d)
    if not bin_dirs:
        parser.error("--cni-bin-dir names no directory")
    if ns.metrics_address:
        try:
            split_address(ns.metrics_address)
        except ValueError as err:
            parser.error(str(err))
    if ns.container_events_buffer < 1:
        parser.error("--container-events-buffer must be at least 1")
    try:
        parse_bind_addr(ns.streaming_bind_addr)
    except ValueError as err:
        parser.error(f"--streaming-bind-addr: {err}")
    return ShimConfig(
        endpoint=ns.container_runtime_endpoint,
        docker_endpoint=ns.docker_endpoint,
        cni_conf_dir=ns.cni_conf_dir,
        cni_bin_dirs=bin_dirs,
        cni_cache_dir=ns.cni_cache_dir,
        pod_infra_container_image=ns.pod_infra_container_image,
        root_directory=ns.root_directory,
        log_level=ns.log_level,
        log_format=ns.log_format,
        cni_plugin_timeout=ns.cni_plugin_timeout,
        cni_warm_plugins=ns.cni_warm_plugins,
        metrics_address=ns.metrics_address,
        container_events_buffer=ns.container_events_buffer,
        streaming_bind_addr=ns.streaming_bind_addr,
    )
