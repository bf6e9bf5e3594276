"""Command-line configuration, with the flag names cri-dockerd uses."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from shim import __version__

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
    # How long one CNI plugin may run before it is killed (a hung plugin must not hang the pod).
    cni_plugin_timeout: float = 60.0
    # Run our own plugins (netplugins) in a warm pre-forked worker instead of exec'ing them cold.
    cni_warm_plugins: bool = True

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
            "--cni-plugin-timeout", str(self.cni_plugin_timeout),
        ]  # fmt: skip
        if not self.cni_warm_plugins:
            args.append("--no-cni-warm-plugins")
        return args


def socket_path_of(endpoint: str) -> str:
    if not endpoint.startswith("unix://"):
        raise ValueError(f"only unix:// endpoints are supported, got {endpoint!r}")
    return endpoint.removeprefix("unix://")


def parse_args(argv: list[str] | None = None) -> ShimConfig:
    defaults = ShimConfig()
    parser = argparse.ArgumentParser(
        prog="cri-shim", description="CRI v1 runtime shim over Docker with CNI pod networking."
    )
    parser.add_argument("--version", action="version", version=f"cri-shim {__version__}")
    parser.add_argument("--container-runtime-endpoint", default=defaults.endpoint)
    parser.add_argument("--docker-endpoint", default=defaults.docker_endpoint)
    parser.add_argument("--cni-conf-dir", default=defaults.cni_conf_dir)
    parser.add_argument(
        "--cni-bin-dir",
        default=",".join(defaults.cni_bin_dirs),
        help="comma-separated list of directories searched for CNI plugins",
    )
    parser.add_argument("--cni-cache-dir", default=defaults.cni_cache_dir)
    parser.add_argument("--pod-infra-container-image", default=defaults.pod_infra_container_image)
    parser.add_argument("--root-directory", default=defaults.root_directory)
    parser.add_argument(
        "--log-level", default=defaults.log_level, choices=["debug", "info", "warning", "error"]
    )
    parser.add_argument("--cni-plugin-timeout", type=float, default=defaults.cni_plugin_timeout)
    parser.add_argument(
        "--no-cni-warm-plugins",
        dest="cni_warm_plugins",
        action="store_false",
        help="exec our own CNI plugins cold instead of through the warm worker",
    )
    ns = parser.parse_args(argv)
    try:
        socket_path_of(ns.container_runtime_endpoint)
    except ValueError as err:
        parser.error(str(err))
    bin_dirs = tuple(d for d in ns.cni_bin_dir.split(",") if d)
    if not bin_dirs:
        parser.error("--cni-bin-dir names no directory")
    return ShimConfig(
        endpoint=ns.container_runtime_endpoint,
        docker_endpoint=ns.docker_endpoint,
        cni_conf_dir=ns.cni_conf_dir,
        cni_bin_dirs=bin_dirs,
        cni_cache_dir=ns.cni_cache_dir,
        pod_infra_container_image=ns.pod_infra_container_image,
        root_directory=ns.root_directory,
        log_level=ns.log_level,
        cni_plugin_timeout=ns.cni_plugin_timeout,
        cni_warm_plugins=ns.cni_warm_plugins,
    )
