"""The checked-in cri_api/ bindings are what `make proto` makes from proto/, and they load.

`make proto-check` does the same diff in CI; this test lets a plain `pytest` catch a proto edit
that was not followed by `make proto`.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cri_api import api_pb2, api_pb2_grpc

REPO_ROOT = Path(__file__).resolve().parents[2]
PROTO_SRC = "proto/cri_api/api.proto"
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py", "api_pb2_grpc.pyi")


def test_generated_bindings_are_fresh(tmp_path: Path) -> None:
    venv_bin = Path(sys.executable).parent
    if shutil.which("protoc-gen-mypy", path=str(venv_bin)) is None:
        pytest.skip(f"mypy-protobuf plugin not installed in {venv_bin}")
    # The mypy plugins are found on PATH, as in the Makefile's proto rule.
    env = {**os.environ, "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
    outputs = ("--python_out", "--grpc_python_out", "--mypy_out", "--mypy_grpc_out")
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iproto"]
        + [f"{flag}={tmp_path}" for flag in outputs]
        + [PROTO_SRC],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"failed to generate {PROTO_SRC}: {proc.stderr}"
    _, mismatch, errors = filecmp.cmpfiles(
        tmp_path / "cri_api", REPO_ROOT / "cri_api", GENERATED, shallow=False
    )
    assert not mismatch and not errors, f"cri_api/ is stale, run `make proto`: {mismatch + errors}"


def test_services_are_complete() -> None:
    services = api_pb2.DESCRIPTOR.services_by_name
    assert api_pb2.DESCRIPTOR.package == "runtime.v1"
    assert len(services["RuntimeService"].methods) == 35
    assert len(services["ImageService"].methods) == 6
    # Server-side hooks exist for every RPC, so the shim can override a subset.
    for method in services["RuntimeService"].methods:
        assert hasattr(api_pb2_grpc.RuntimeServiceServicer, method.name), method.name
    for method in services["ImageService"].methods:
        assert hasattr(api_pb2_grpc.ImageServiceServicer, method.name), method.name


def test_round_trip_of_a_sandbox_status() -> None:
    sent = api_pb2.PodSandboxStatusResponse(
        status=api_pb2.PodSandboxStatus(
            id="abc",
            metadata=api_pb2.PodSandboxMetadata(name="p", namespace="ns", uid="u"),
            state=api_pb2.SANDBOX_READY,
            created_at=1,
            network=api_pb2.PodSandboxNetworkStatus(
                ip="10.88.0.2", additional_ips=[api_pb2.PodIP(ip="fd00::2")]
            ),
            labels={"app": "x"},
        ),
        info={"info": "{}"},
    )
    received = api_pb2.PodSandboxStatusResponse.FromString(sent.SerializeToString())
    assert received == sent
    assert received.status.network.additional_ips[0].ip == "fd00::2"
