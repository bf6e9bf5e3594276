"""What Docker alone needs for a burst of pods on this machine: the floor under kubelet's
burst figure.

Each "pod" is what the engine does for one of kubelet's: an infra container (the pause image,
no network, shareable IPC, unconfined seccomp as cri-shim gives an unset profile) and one app
container joined to its network and IPC (a pod's containers keep PID namespaces of their own by
default), both created and started, all pods at once from one thread each. No kubelet, no CRI,
no CNI: whatever the kubelet burst takes beyond this is kubelet, cri-shim and the network. On a
2-core machine this floor alone can exceed the 5 s SLO, and the report says so with the number.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from typing import Any

import docker

from bench.stats import percentile

DOCKER_API = "1.41"
# What cri-shim gives Docker for kubelet's pods, whose seccomp profile is unset (unconfined).
UNCONFINED = ["seccomp=unconfined"]


def docker_burst(
    pods: int, pause_image: str, app_image: str | None, command: list[str] | None = None
) -> dict[str, Any]:
    """`pods` pods at once; with `app_image` None, infra containers only (what RunPodSandbox
    asks of Docker)."""
    client = docker.APIClient(
        base_url="unix:///var/run/docker.sock", version=DOCKER_API, timeout=300
    )
    prefix = f"crbench-floor-{os.getpid()}"
    took: dict[int, float] = {}
    errors: list[str] = []
    lock = threading.Lock()

    def one(i: int) -> None:
        begin = time.monotonic()
        try:
            infra = client.create_container(
                pause_image,
                name=f"{prefix}-pod-{i}",
                host_config=client.create_host_config(
                    network_mode="none", ipc_mode="shareable", security_opt=UNCONFINED
                ),
            )["Id"]
            client.start(infra)
            if app_image is not None:
                joined = f"container:{infra}"
                app = client.create_container(
                    app_image,
                    command=command,
                    name=f"{prefix}-app-{i}",
                    host_config=client.create_host_config(
                        network_mode=joined, ipc_mode=joined, security_opt=UNCONFINED
                    ),
                )["Id"]
                client.start(app)
        except docker.errors.DockerException as err:
            with lock:
                errors.append(str(err))
            return
        with lock:
            took[i] = time.monotonic() - begin

    threads = [threading.Thread(target=one, args=(i,)) for i in range(pods)]
    wall = time.monotonic()
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.monotonic() - wall
    finally:
        _remove(client, prefix)
        client.close()
    times = sorted(took.values())
    return {
        "pods": pods,
        "what": (
            "pause + one app container per pod"
            if app_image is not None
            else "one pause container per pod"
        )
        + ", created and started through Docker at once",
        "wall_s": round(wall, 2),
        "p50_s": round(percentile(times, 50), 2) if times else None,
        "p99_s": round(percentile(times, 99), 2) if times else None,
        "errors": errors[:5],
    }


def _remove(client: docker.APIClient, prefix: str) -> None:
    # Apps first: an infra container is in use while an app shares its namespaces.
    found = client.containers(all=True, filters={"name": prefix})
    for kind in ("-app-", "-pod-"):
        for container in found:
            if any(kind in name for name in container.get("Names") or []):
                with contextlib.suppress(docker.errors.DockerException):
                    client.remove_container(container["Id"], force=True)
