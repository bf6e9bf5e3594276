"""The streaming RPCs against a real shim and Docker (issue 9): every bad Exec, Attach and
PortForward request gets the right gRPC code and a message naming what is wrong; a good one
gets an absolute one-time URL; and a smoke run of `crictl exec` and `crictl port-forward`
(the broad crictl, hostile-input and kubelet proofs are in test_streaming_crictl.py,
test_streaming_hostile.py and tests/kubelet/test_kubelet_streaming.py)."""

from __future__ import annotations

import functools
import http.client
import json
import re
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from cri_api import api_pb2
from shim.process import stop_process
from tests.e2e.conftest import Pods, running_shim
from tests.e2e.harness import NetworkPlan, Shim, container_config, pod_config
from tests.e2e.streaming_support import (
    PAGE,
    Box,
    crictl_command,
    free_port,
    start_box,
    start_web_box,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

URL = re.compile(r"^http://127\.0\.0\.1:(\d+)/(exec|attach|portforward)/[A-Za-z0-9_-]{8}$")


def refused(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def status_of(url: str, method: str = "POST") -> int:
    """The HTTP status a plain (not upgrading) request to a streaming URL gets."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, parts.path)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.fixture
def box(shim: Shim, pods: Pods, tmp_path: Path) -> Box:
    b = start_box(shim, str(tmp_path / "logs"), name="streamrpc-box")
    pods.add(b.sandbox_id)
    return b


def test_exec_and_attach_refuse_bad_requests(shim: Shim, box: Box) -> None:
    rt = shim.runtime()
    exec_ = rt.Exec
    cid = box.container_id
    cases: list[tuple[Any, grpc.StatusCode, str]] = [
        (api_pb2.ExecRequest(cmd=["true"], stdout=True), grpc.StatusCode.INVALID_ARGUMENT,
         "container_id is empty"),
        (api_pb2.ExecRequest(container_id=cid, stdout=True), grpc.StatusCode.INVALID_ARGUMENT,
         "cmd is empty"),
        (api_pb2.ExecRequest(container_id=cid, cmd=["true"]), grpc.StatusCode.INVALID_ARGUMENT,
         "one of stdin, stdout and stderr"),
        (api_pb2.ExecRequest(container_id=cid, cmd=["sh"], tty=True, stdout=True, stderr=True),
         grpc.StatusCode.INVALID_ARGUMENT, "tty and stderr"),
        (api_pb2.ExecRequest(container_id="f" * 64, cmd=["true"], stdout=True),
         grpc.StatusCode.NOT_FOUND, "f" * 64),
    ]  # fmt: skip
    for request, code, words in cases:
        err = refused(functools.partial(exec_, request, timeout=10))
        assert (err.code(), words in (err.details() or "")) == (code, True), (request, err)

    attach_cases: list[tuple[Any, grpc.StatusCode, str]] = [
        (api_pb2.AttachRequest(stdout=True), grpc.StatusCode.INVALID_ARGUMENT,
         "container_id is empty"),
        (api_pb2.AttachRequest(container_id=cid), grpc.StatusCode.INVALID_ARGUMENT,
         "one of stdin, stdout and stderr"),
        (api_pb2.AttachRequest(container_id=cid, tty=True, stdout=True, stderr=True),
         grpc.StatusCode.INVALID_ARGUMENT, "tty and stderr"),
        (api_pb2.AttachRequest(container_id="e" * 64, stdout=True), grpc.StatusCode.NOT_FOUND,
         "e" * 64),
    ]  # fmt: skip
    for request, code, words in attach_cases:
        err = refused(functools.partial(rt.Attach, request, timeout=10))
        assert (err.code(), words in (err.details() or "")) == (code, True), (request, err)

    # A container that exists but does not run: FAILED_PRECONDITION, naming it.
    created = shim.create_container(
        box.sandbox_id, container_config("streamrpc-idle", ["sleep", "1"]), box.sandbox_config
    )
    for call in (
        lambda: exec_(api_pb2.ExecRequest(container_id=created, cmd=["true"], stdout=True)),
        lambda: rt.Attach(api_pb2.AttachRequest(container_id=created, stdout=True)),
    ):
        err = refused(call)
        assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
        assert created in (err.details() or "") and "not running" in (err.details() or "")


def test_port_forward_refuses_bad_requests(shim: Shim, box: Box, pods: Pods) -> None:
    rt = shim.runtime()
    cases: list[tuple[api_pb2.PortForwardRequest, grpc.StatusCode, str]] = [
        (api_pb2.PortForwardRequest(port=[80]), grpc.StatusCode.INVALID_ARGUMENT,
         "pod_sandbox_id is empty"),
        (api_pb2.PortForwardRequest(pod_sandbox_id="d" * 64), grpc.StatusCode.NOT_FOUND,
         "d" * 64),
        (api_pb2.PortForwardRequest(pod_sandbox_id=box.sandbox_id, port=[70000]),
         grpc.StatusCode.INVALID_ARGUMENT, "port 70000"),
        (api_pb2.PortForwardRequest(pod_sandbox_id=box.sandbox_id, port=[-1]),
         grpc.StatusCode.INVALID_ARGUMENT, "port -1"),
    ]  # fmt: skip
    for request, code, words in cases:
        err = refused(functools.partial(rt.PortForward, request, timeout=10))
        assert (err.code(), words in (err.details() or "")) == (code, True), (request, err)

    stopped = shim.run_pod(pod_config("streamrpc-stopped"))
    pods.add(stopped)
    shim.stop_pod(stopped)
    err = refused(lambda: rt.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=stopped)))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION, err
    assert stopped in (err.details() or "") and "not ready" in (err.details() or "")


def test_urls_are_absolute_one_time_and_unknown_ones_404(shim: Shim, box: Box) -> None:
    rt = shim.runtime()
    urls = [
        rt.Exec(api_pb2.ExecRequest(container_id=box.container_id, cmd=["true"], stdout=True)).url,
        rt.Attach(api_pb2.AttachRequest(container_id=box.container_id, stdout=True)).url,
        rt.PortForward(api_pb2.PortForwardRequest(pod_sandbox_id=box.sandbox_id)).url,
    ]
    matches = [URL.match(url) for url in urls]
    assert all(matches), urls
    assert [m.group(2) for m in matches if m] == ["exec", "attach", "portforward"]
    assert len({m.group(1) for m in matches if m}) == 1, "one streaming server, one port"
    info = rt.Status(api_pb2.StatusRequest(verbose=True), timeout=10).info
    streaming = json.loads(info["streaming"])
    assert urls[0].startswith(streaming["url"]), (streaming, urls)
    assert streaming["pendingTokens"] == 3, streaming
    # A request that does not upgrade uses the token up (400), and a second use is a 404.
    assert status_of(urls[0]) == 400
    assert status_of(urls[0]) == 404
    # A token of another verb's URL is no key to this one.
    exec_path = urls[1].replace("/attach/", "/exec/")
    assert status_of(exec_path) == 404
    assert status_of(urls[2].rsplit("/", 1)[0] + "/unknown1") == 404
    assert status_of(urls[2], method="DELETE") == 405


def test_crictl_exec_output_stdin_and_exit_code(shim: Shim, box: Box) -> None:
    script = "read line; echo out:$line; echo err:$line >&2; exit 3"
    result = subprocess.run(
        crictl_command(shim, "exec", "-i", box.container_id, "sh", "-c", script),
        input=b"streamed\n",
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == b"out:streamed\n", result
    assert result.stderr.startswith(b"err:streamed\n"), result
    assert b"exit code 3" in result.stderr, result
    # crictl exits 1 and names the command's exit code, which came as the v4 status's cause.
    assert result.returncode == 1, result


def test_crictl_port_forward_reaches_the_pod(shim: Shim, pods: Pods, tmp_path: Path) -> None:
    web = start_web_box(shim, str(tmp_path / "logs"))
    pods.add(web.sandbox_id)
    local = free_port()
    proc = subprocess.Popen(
        crictl_command(shim, "port-forward", web.sandbox_id, f"{local}:80"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def page() -> str | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{local}/", timeout=5) as r:
                    body: str = r.read().decode()
                    return body
            except OSError:
                return None

        assert PAGE in wait_for("the pod's page through crictl port-forward", page, 30)
        # Each request is a new forwarded connection over the same session.
        for _ in range(3):
            assert PAGE in (page() or "")
    finally:
        stop_process(proc)


def test_wildcard_bind_advertises_a_reachable_address(
    plan: NetworkPlan, pods: Pods, tmp_path: Path
) -> None:
    with running_shim(plan, pods, extra_args=["--streaming-bind-addr", "0.0.0.0:0"]) as shim:
        box = start_box(shim, str(tmp_path / "logs"), name="streamrpc-wild")
        pods.add(box.sandbox_id)
        url = (
            shim.runtime()
            .Exec(api_pb2.ExecRequest(container_id=box.container_id, cmd=["true"], stdout=True))
            .url
        )
        host = urllib.parse.urlsplit(url).hostname
        assert host and host not in ("0.0.0.0", "", "::"), url
        assert status_of(url) == 400  # reachable on the advertised address
