"""The boundary between the sandbox lifecycle and the engine that runs infra containers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import docker


@dataclass(frozen=True)
class InfraSpec:
    """What RunPodSandbox asks of the engine for one infra container."""

    name: str
    image: str
    hostname: str
    labels: dict[str, str]
    host_network: bool
    oom_score_adj: int
    host_pid: bool = False
    host_ipc: bool = False
    cgroup_parent: str = ""
    sysctls: dict[str, str] = field(default_factory=dict)
    security_opt: tuple[str, ...] = ()  # Docker's SecurityOpt (the sandbox's seccomp profile)


@dataclass(frozen=True)
class InfraState:
    id: str
    running: bool
    pid: int
    started_at: str
    labels: dict[str, str]
    created_at_ns: int
    resolv_conf_path: str = ""


@dataclass(frozen=True)
class ImageInfo:
    id: str
    repo_tags: list[str]
    repo_digests: list[str]
    size: int
    user: str


class InfraRuntime(Protocol):
    @property
    def client(self) -> docker.APIClient: ...
    def create_container(self, body: dict[str, Any], name: str) -> str: ...
    def inspect_raw(self, container_id: str) -> dict[str, Any] | None: ...
    def list_containers(self) -> list[dict[str, Any]]: ...
    def update_resources(self, container_id: str, resources: dict[str, Any]) -> None: ...
    def ping(self) -> None: ...
    def pull_image(self, image: str) -> str: ...
    def create(self, spec: InfraSpec) -> str: ...
    def start(self, container_id: str) -> None: ...
    def write_resolv_conf(self, state: InfraState, content: str) -> None: ...
    def inspect(self, container_id: str) -> InfraState | None: ...
    def stop(self, container_id: str, timeout: int) -> None: ...
    def remove(self, container_id: str) -> None: ...
    def list_infra(self) -> list[InfraState]: ...
    def list_images(self) -> list[ImageInfo]: ...
    def image_info(self, image: str) -> ImageInfo | None: ...
    def remove_image(self, image: str) -> None: ...
    def images_root(self) -> str: ...
    def cgroup_driver(self) -> str: ...
