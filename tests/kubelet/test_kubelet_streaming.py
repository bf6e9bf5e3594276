"""kubectl's path to cri-shim's streaming server, minus the API server (issue 9): kubelet
v1.34's `/exec`, `/attach` and `/portForward` on 10250 ask the shim for a URL and pass the
upgraded connection through to it. The clients are independent of the shim: the Python
`kubernetes` client's WebSocket stream module (v4 and v5 subprotocols, port-forward) and, for
SPDY, the test suite's own SPDY client over TLS. One kubelet and one shim serve the module."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as _k8s_client
from kubernetes.stream import ws_client as _ws_client

from tests.e2e.spdy_client import run_command
from tests.kubelet import pods
from tests.kubelet.conftest import Node
from tests.kubelet.harness import LOOPBACK, container_running, phase, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

# The kubernetes package has no type hints: it is reached through Any.
k8s: Any = _k8s_client
ws: Any = _ws_client
V4, V5 = ws.V4_CHANNEL_PROTOCOL, ws.V5_CHANNEL_PROTOCOL
NS = pods.NAMESPACE
STDOUT, STDERR, ERROR, RESIZE = 1, 2, 3, 4
PAGE = "hello through the port-forward of kubelet"


@pytest.fixture(scope="module")
def streaming_pods(node: Node) -> Iterator[Node]:
    web = (
        f"mkdir -p /www && echo '{PAGE}' > /www/index.html"
        " && head -c 300000 /dev/zero > /www/big && exec httpd -f -p 80 -h /www"
    )
    # MARK is in the environment of the console's main shell only, not of exec sessions (the
    # pod's containers share its PID namespace: $$ cannot tell them apart).
    console = pods.container("console", "exec env MARK=main-process sh", stdin=True, tty=True)
    manifests = [
        pods.pod("shell", [pods.container("shell", "exec sleep 100000")]),
        pods.pod("web", [pods.container("web", web, ports=[{"containerPort": 80}])]),
        pods.pod("console", [console]),
    ]
    for manifest in manifests:
        node.kubelet.add_manifest(manifest)
    for name in ("shell", "web", "console"):
        running(node, name)
    yield node
    for name in ("shell", "web", "console"):
        node.kubelet.remove_manifest(name)


def running(node: Node, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        pod = node.kubelet.pod(name)
        return pod if phase(pod) == "Running" and container_running(pod, name) else None

    try:
        return wait_for(f"pod {name} running", probe, 180)
    except TimeoutError as err:
        raise AssertionError(f"{err}\n{node.kubelet.log()[-3000:]}") from None


def configuration(node: Node) -> Any:
    config = k8s.Configuration()
    config.host = f"https://{LOOPBACK}:{node.kubelet.ports.port}"
    config.verify_ssl = False  # kubelet's serving certificate is self-signed
    return config


def kubelet_url(node: Node, path: str, query: list[tuple[str, str]]) -> str:
    return f"https://{LOOPBACK}:{node.kubelet.ports.port}{path}?{urllib.parse.urlencode(query)}"


def exec_path(node: Node, name: str) -> str:
    return f"/exec/{NS}/{node.kubelet.pod_name(name)}/{name}"


def command_query(*cmd: str, stdin: bool = False, tty: bool = False) -> list[tuple[str, str]]:
    # kubelet's own parameter names (the API server translates stdout=true to output=1).
    query = [("command", c) for c in cmd] + [("output", "1")]
    query += [("error", "0" if tty else "1"), ("input", "1" if stdin else "0")]
    query += [("tty", "1" if tty else "0")]
    return query


def ws_client(node: Node, url: str, protocol: str | None = None) -> Any:
    headers = {"sec-websocket-protocol": protocol} if protocol else None
    return ws.WSClient(configuration(node), ws.get_websocket_url(url), headers, capture_all=True)


def finish(client: Any, timeout: float = 60) -> dict[str, Any]:
    """Run the session to its end; the status JSON kubelet's runtime sent on channel 3."""
    client.run_forever(timeout=timeout)
    assert not client.is_open(), "the session did not end"
    raw = client.read_channel(ERROR)
    status: dict[str, Any] = json.loads(raw) if raw else {}
    return status


def exit_code(status: dict[str, Any]) -> int:
    if status.get("status") == "Success":
        return 0
    causes = status.get("details", {}).get("causes", [])
    return int(next(c["message"] for c in causes if c.get("reason") == "ExitCode"))


# -- exec ---------------------------------------------------------------------------------------


def test_exec_over_websocket_v4(streaming_pods: Node) -> None:
    node = streaming_pods
    script = "echo out-$((40+2)); echo err-here >&2; exit 3"
    url = kubelet_url(node, exec_path(node, "shell"), command_query("sh", "-c", script))
    client = ws_client(node, url, V4)
    assert client.subprotocol == V4
    status = finish(client)
    assert client.read_channel(STDOUT) == "out-42\n"
    assert client.read_channel(STDERR) == "err-here\n"
    assert status["status"] == "Failure" and status["reason"] == "NonZeroExitCode", status
    assert exit_code(status) == 3


# The client sends a str as a text message and bytes as a binary one; the Go servers take
# either on every channel protocol (each message's first byte is the channel).
@pytest.mark.parametrize("frames", ["text", "binary"])
def test_exec_over_websocket_v5_with_stdin_half_close(streaming_pods: Node, frames: str) -> None:
    """The client's default offer (v5, v4): v5 lets it close stdin alone, which ends `tr`."""
    node = streaming_pods
    query = command_query("tr", "a-z", "A-Z", stdin=True)
    client = ws_client(node, kubelet_url(node, exec_path(node, "shell"), query))
    assert client.subprotocol == V5
    line = "hello from a v5 client\n"
    client.write_stdin(line if frames == "text" else line.encode())
    client.close_channel(0)
    status = finish(client)
    assert client.read_channel(STDOUT) == "HELLO FROM A V5 CLIENT\n"
    assert exit_code(status) == 0


def test_exec_with_tty_and_resize_over_websocket(streaming_pods: Node) -> None:
    node = streaming_pods
    query = command_query("sh", "-c", "sleep 2; stty size", tty=True)
    client = ws_client(node, kubelet_url(node, exec_path(node, "shell"), query), V4)
    client.write_channel(RESIZE, json.dumps({"Width": 77, "Height": 22}))
    status = finish(client)
    assert client.read_channel(STDOUT).strip() == "22 77"
    assert exit_code(status) == 0


def test_exec_over_spdy_through_kubelet(streaming_pods: Node) -> None:
    """What kubectl sends through an API server: SPDY, passed through by kubelet."""
    node = streaming_pods
    query = command_query("sh", "-c", "cat; echo spdy-$((1+1)); exit 6", stdin=True)
    result = run_command(
        kubelet_url(node, exec_path(node, "shell"), query), stdin=b"piped over spdy\n"
    )
    assert result.protocol == "v4.channel.k8s.io"
    assert result.stdout == b"piped over spdy\nspdy-2\n"
    assert result.exit_code == 6


# -- attach -------------------------------------------------------------------------------------


def test_attach_over_websocket(streaming_pods: Node) -> None:
    node = streaming_pods
    path = f"/attach/{NS}/{node.kubelet.pod_name('console')}/console"
    query = [("input", "1"), ("output", "1"), ("error", "0"), ("tty", "1")]
    client = ws_client(node, kubelet_url(node, path, query), V4)
    try:
        client.write_stdin("echo attached-$((3+4)) $MARK\n")
        seen = ""
        deadline = time.monotonic() + 30
        while "attached-7 main-process" not in seen and time.monotonic() < deadline:
            client.update(timeout=1)
            seen += client.read_stdout(timeout=0) or ""
        assert "attached-7 main-process" in seen, seen
    finally:
        client.close()
    # Detaching leaves the container's shell running.
    time.sleep(1)
    assert container_running(node.kubelet.pod("console"), "console")


# -- port-forward -------------------------------------------------------------------------------


def http_over(sock: Any, path: str) -> tuple[bytes, bytes]:
    """An HTTP/1.0 GET on a forwarded socket: the response head and the body (read up to its
    Content-Length, so that the test does not depend on when the tunnel closes)."""
    sock.sendall(f"GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n".encode())
    sock.settimeout(30)
    buf = b""
    while True:
        head, sep, body = buf.partition(b"\r\n\r\n")
        if sep:
            lengths = [
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            ]
            if lengths and len(body) >= lengths[0]:
                return head, body
        chunk = sock.recv(65536)
        if not chunk:
            return head, body
        buf += chunk


@pytest.mark.parametrize("path", ["/index.html", "/big"])
def test_port_forward_over_websocket(streaming_pods: Node, path: str) -> None:
    node = streaming_pods
    pf_path = f"/portForward/{NS}/{node.kubelet.pod_name('web')}"
    # `port` is kubelet's parameter; the client reads `ports` for its own channel map.
    url = kubelet_url(node, pf_path, [("port", "80"), ("ports", "80")])
    websocket = ws.create_websocket(configuration(node), ws.get_websocket_url(url))
    forward = ws.PortForward(websocket, [80])
    try:
        head, body = http_over(forward.socket(80), path)
    finally:
        forward.close()
    assert b" 200 " in head.split(b"\r\n")[0], head
    if path == "/big":
        assert body == b"\0" * 300000
    else:
        assert body.decode().strip() == PAGE
    assert forward.error(80) is None
