"""The wheel: `python -m build` makes it from the source tree, it installs with its
dependencies into a fresh venv, and that venv's console scripts work (`cri-shim --version`
prints the one version, from shim.__version__)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator

import pytest

from shim import __version__

pytestmark = pytest.mark.integration

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What the build reads; copied so that the build writes nothing into the work tree.
SOURCES = ("pyproject.toml", "README.md", "shim", "cri_api", "cnilib", "netplugins", "overlay")
BUDGET_S = 90


def _run(
    cmd: list[str], timeout: float = 120, cwd: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    run = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout, check=False, cwd=cwd, env=env
    )
    assert run.returncode == 0, (
        f"{' '.join(cmd)} failed ({run.returncode}):\n{run.stdout}\n{run.stderr}"
    )
    return run


@pytest.fixture(scope="module")
def workdir() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="crishim-wheel-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def installed(workdir: str) -> Iterator[str]:
    """The bin/ of a fresh venv with the freshly built wheel installed, its dependencies from
    the package registry (pip's cache makes that quick)."""
    started = time.monotonic()
    src = os.path.join(workdir, "src")
    for name in SOURCES:
        path = os.path.join(REPO, name)
        if os.path.isdir(path):
            shutil.copytree(
                path, os.path.join(src, name), ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            os.makedirs(src, exist_ok=True)
            shutil.copy(path, src)
    dist = os.path.join(workdir, "dist")
    # Isolated: the build backend (setuptools) comes from the registry, as on any machine.
    _run([sys.executable, "-m", "build", "--wheel", "--outdir", dist, src], timeout=180)
    wheels = os.listdir(dist)
    assert wheels == [f"cri_shim-{__version__}-py3-none-any.whl"]
    venv = os.path.join(workdir, "venv")
    _run([sys.executable, "-m", "venv", venv])
    bin_dir = os.path.join(venv, "bin")
    _run(
        [os.path.join(bin_dir, "pip"), "install", "--quiet", os.path.join(dist, wheels[0])],
        timeout=180,
    )
    elapsed = time.monotonic() - started
    print(f"wheel built and installed in {elapsed:.1f} s")
    assert elapsed < BUDGET_S
    yield bin_dir


def _clean_env() -> dict[str, str]:
    """No trace of the development venv or the source tree."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin"
    return env


def test_cri_shim_version_and_help(installed: str, workdir: str) -> None:
    run = _run([os.path.join(installed, "cri-shim"), "--version"], cwd=workdir, env=_clean_env())
    assert run.stdout.strip() == f"cri-shim {__version__}"
    help_text = _run(
        [os.path.join(installed, "cri-shim"), "--help"], cwd=workdir, env=_clean_env()
    ).stdout
    help_text = " ".join(help_text.split())  # argparse wraps to the terminal's width
    assert "--log-format" in help_text and "(default: unix:///run/cri-shim.sock)" in help_text


def test_the_installed_code_is_the_wheels(installed: str, workdir: str) -> None:
    python = os.path.join(installed, "python")
    run = _run(
        [
            python,
            "-c",
            "import importlib.metadata as m, shim;"
            " print(m.version('cri-shim')); print(shim.__file__)",
        ],
        cwd=workdir,
        env=_clean_env(),
    )
    version, location = run.stdout.split()
    assert version == __version__
    assert location.startswith(os.path.dirname(installed) + "/"), location
    _run([os.path.join(installed, "pip"), "check"], env=_clean_env())  # dependencies complete


def test_every_console_script_is_installed(installed: str, workdir: str) -> None:
    with open(os.path.join(REPO, "pyproject.toml"), "rb") as f:
        scripts = tomllib.load(f)["project"]["scripts"]
    assert {"cri-shim", "cnitool", "pyflanneld", "netplugins"} <= set(scripts)
    for name in scripts:
        assert os.access(os.path.join(installed, name), os.X_OK), f"{name} is not installed"
    # netplugins writes our CNI plugins from the installed package.
    plugins = os.path.join(workdir, "cni-bin")
    _run([os.path.join(installed, "netplugins"), "install", plugins], env=_clean_env())
    assert {"bridge", "host-local", "loopback", "portmap"} <= set(os.listdir(plugins))
    version = subprocess.run(
        [os.path.join(plugins, "loopback")],
        env={**_clean_env(), "CNI_COMMAND": "VERSION"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert version.returncode == 0 and "supportedVersions" in version.stdout, version.stderr
