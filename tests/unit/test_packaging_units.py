"""packaging/: the systemd units socket-activate cri-shim on its default socket with a
command line cri-shim accepts, `systemd-analyze verify` finds nothing to say about them, and
the example crictl.yaml points at the same socket."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

import pytest

from shim.config import DEFAULT_ENDPOINT, parse_args, socket_path_of

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNITS = os.path.join(REPO, "packaging", "systemd")
BINARY = "/usr/local/bin/cri-shim"


def _unit(name: str) -> configparser.ConfigParser:
    # Unit files are ini-like, but keys are case-sensitive and may repeat.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    with open(os.path.join(UNITS, name)) as f:
        parser.read_file(f)
    return parser


def test_socket_unit_listens_on_the_default_endpoint_root_only() -> None:
    socket_unit = _unit("cri-shim.socket")["Socket"]
    assert socket_unit["ListenStream"] == socket_path_of(DEFAULT_ENDPOINT)
    assert socket_unit["SocketMode"] == "0660"
    assert socket_unit["SocketUser"] == "root"
    assert _unit("cri-shim.socket")["Install"]["WantedBy"] == "sockets.target"


def test_service_unit_needs_docker_and_its_socket() -> None:
    unit = _unit("cri-shim.service")
    requires = unit["Unit"]["Requires"].split()
    after = unit["Unit"]["After"].split()
    assert {"docker.service", "cri-shim.socket"} <= set(requires)
    assert {"network-online.target", "docker.service", "cri-shim.socket"} <= set(after)
    assert unit["Service"]["Restart"] == "always"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


def test_service_command_line_is_one_cri_shim_accepts() -> None:
    exec_start = shlex.split(_unit("cri-shim.service")["Service"]["ExecStart"])
    assert exec_start[0] == BINARY
    args = [a for a in exec_start[1:] if a != "$CRI_SHIM_OPTS"]  # empty without the env file
    config = parse_args(args)
    # The inherited socket is served only when the endpoint names its path.
    assert config.socket_path == _unit("cri-shim.socket")["Socket"]["ListenStream"]


def test_example_crictl_yaml_points_at_the_socket() -> None:
    with open(os.path.join(REPO, "packaging", "crictl.yaml")) as f:
        settings = dict(
            line.split(": ", 1) for line in f.read().splitlines() if line and line[0] != "#"
        )
    assert settings["runtime-endpoint"] == DEFAULT_ENDPOINT
    assert settings["image-endpoint"] == DEFAULT_ENDPOINT


def test_systemd_analyze_verify_is_silent() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze could not be installed (Debian's systemd package)")
    # verify checks that ExecStart's binary exists: point it at this venv's console script.
    binary = os.path.join(os.path.dirname(sys.executable), "cri-shim")
    assert os.access(binary, os.X_OK), f"{binary}: the venv has no cri-shim console script"
    with tempfile.TemporaryDirectory(prefix="crishim-units-") as d:
        for name in ("cri-shim.socket", "cri-shim.service"):
            with open(os.path.join(UNITS, name)) as src, open(os.path.join(d, name), "w") as dst:
                dst.write(src.read().replace(BINARY, binary))
        run = subprocess.run(
            [
                analyze,
                "verify",
                os.path.join(d, "cri-shim.socket"),
                os.path.join(d, "cri-shim.service"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 0, run.stderr
    assert run.stderr.strip() == "", run.stderr  # warnings such as "Unknown key" count too


def test_example_config_file_is_accepted() -> None:
    config = parse_args(["--config", os.path.join(REPO, "packaging", "cri-shim.toml")])
    assert config.log_format == "json"
    assert config.cni_bin_dirs == ("/opt/cni/bin",)
    assert config.endpoint == DEFAULT_ENDPOINT  # the unit's command line names it
