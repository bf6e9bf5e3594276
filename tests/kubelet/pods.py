"""Static pod manifests the kubelet tests run, as dicts (kubelet reads JSON as YAML). Every pod
uses the local busybox image with imagePullPolicy: Never: nothing is pulled."""

from __future__ import annotations

from typing import Any

from tests.e2e.harness import TEST_IMAGE

__all__ = ["TEST_IMAGE"]

NAMESPACE = "crishim-kubelet"
# A container as PID 1 ignores SIGTERM: a short grace keeps every stop quick.
GRACE_S = 1


def pod(
    name: str, containers: list[dict[str, Any]], namespace: str = NAMESPACE, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "containers": containers,
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": GRACE_S,
            **spec,
        },
    }


def container(name: str, script: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": TEST_IMAGE,
        "imagePullPolicy": "Never",
        "command": ["/bin/sh", "-c", script],
        **fields,
    }


def exec_probe(*command: str, period: int = 1, failures: int = 1) -> dict[str, Any]:
    # A probe that times out counts as failed (ExecProbeTimeout): a generous timeout keeps a
    # busy 2-core CI machine from restarting containers the test did not mean to.
    return {
        "exec": {"command": list(command)},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 10,
    }


WEB_BODY = "hello from a cri-shim pod"


def web(name: str = "web", port: int = 80) -> dict[str, Any]:
    script = (
        f"mkdir -p /www && echo '{WEB_BODY}' > /www/index.html && exec httpd -f -p {port} -h /www"
    )
    return pod(name, [container("web", script, ports=[{"containerPort": port}])])


def crash_loop(name: str = "crash") -> dict[str, Any]:
    return pod(name, [container("crash", "echo started; sleep 1; exit 3")])


INIT_BODY = "written by the init container"


def duo(name: str = "duo") -> dict[str, Any]:
    """An init container writes the page; a server on 127.0.0.1 and a client polling it over
    localhost share the pod's network namespace."""
    shared = [{"name": "shared", "mountPath": "/shared"}]
    init = container(
        "init", f"sleep 2; echo '{INIT_BODY}' > /shared/index.html", volumeMounts=shared
    )
    server = container("server", "exec httpd -f -p 127.0.0.1:8080 -h /shared", volumeMounts=shared)
    client = container(
        "client",
        "while true; do wget -q -O - http://127.0.0.1:8080/index.html || echo FAILED; sleep 1;"
        " done",
    )
    return pod(
        name,
        [server, client],
        initContainers=[init],
        volumes=[{"name": "shared", "emptyDir": {}}],
    )


def liveness(name: str = "live") -> dict[str, Any]:
    probe = exec_probe("test", "-f", "/tmp/alive", period=1, failures=3)
    return pod(
        name,
        [container("live", "touch /tmp/alive; exec sleep 100000", livenessProbe=probe)],
    )


def readiness(name: str = "ready") -> dict[str, Any]:
    probe = exec_probe("test", "-f", "/tmp/ready", period=1, failures=1)
    return pod(name, [container("ready", "exec sleep 100000", readinessProbe=probe)])


def host_network(port: int, name: str = "hostnet") -> dict[str, Any]:
    """httpd in the host's network namespace, on 127.0.0.1 only."""
    script = (
        f"mkdir -p /www && echo '{WEB_BODY}' > /www/index.html"
        f" && exec httpd -f -p 127.0.0.1:{port} -h /www"
    )
    return pod(name, [container("web", script)], hostNetwork=True)


def host_port(host_port: int, name: str = "hostport") -> dict[str, Any]:
    script = f"mkdir -p /www && echo '{WEB_BODY}' > /www/index.html && exec httpd -f -p 80 -h /www"
    ports = [{"containerPort": 80, "hostPort": host_port, "hostIP": "127.0.0.1"}]
    return pod(name, [container("web", script, ports=ports)])


LOG_PAD = "x" * 60


def logger(name: str = "logger") -> dict[str, Any]:
    """A numbered line every 0.2 s (~400 bytes/s): a 1 KiB log rotates every few seconds."""
    script = f'i=0; while true; do i=$((i+1)); echo "line $i {LOG_PAD}"; sleep 0.2; done'
    return pod(name, [container("logger", script)])


def guaranteed(name: str = "guaranteed") -> dict[str, Any]:
    resources = {"cpu": "100m", "memory": "64Mi"}
    return pod(
        name,
        [
            container(
                "main",
                "exec sleep 100000",
                resources={"requests": dict(resources), "limits": dict(resources)},
            )
        ],
    )


def idle(name: str, namespace: str = NAMESPACE) -> dict[str, Any]:
    """One container that sleeps: the bench's pod."""
    return pod(name, [container("main", "exec sleep 100000")], namespace=namespace)
