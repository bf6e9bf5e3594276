"""What the shim knows about one container.

Container states, as the CRI draws them:

    CreateContainer ──▶ CREATED ──StartContainer──▶ RUNNING ──exits / StopContainer──▶ EXITED
                           │                                                            │
                           └──────────────── RemoveContainer (from any state) ◀─────────┘

Docker is the durable store: the facts fixed at create time travel in one Docker label
(`io.cri-shim.container`, JSON) so that a restarted shim rebuilds every record from `docker
inspect` alone and no checkpoint file can be half written. The run-time facts (pid, times,
exit code) are Docker's own, refreshed on every event Docker reports for the container.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any


class ContainerState(enum.Enum):
    CREATED = "created"
    RUNNING = "running"
    EXITED = "exited"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ContainerSpec:
    """The create-time facts: what CreateContainer was asked, as the CRI reports it back."""

    sandbox_id: str
    name: str  # ContainerMetadata.name
    attempt: int
    image: str  # ImageSpec.image as the caller gave it
    image_id: str  # sha256:<config digest>, the same value as Image.id
    created_at: int  # nanoseconds since the epoch
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    log_path: str = ""  # absolute path of the CRI log file, "" when the caller wants none
    tty: bool = False
    stdin: bool = False
    stdin_once: bool = False
    mounts: list[dict[str, Any]] = field(default_factory=list)  # CRI Mount fields
    user_specified_image: str = ""
    # What status reports as the image: a name, never the bare id kubelet passes (kubelet
    # shows it in the pod status, as dockershim and containerd do).
    image_name: str = ""

    def to_label(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_label(cls, raw: str) -> ContainerSpec:
        data = json.loads(raw)
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ContainerRecord:
    id: str
    spec: ContainerSpec
    state: ContainerState = ContainerState.CREATED
    pid: int = 0
    started_at: int = 0  # nanoseconds; 0 until started
    finished_at: int = 0
    exit_code: int = 0
    reason: str = ""
    message: str = ""
    # The CRI Container message last built for this record (ListContainers, every second from
    # kubelet): rebuilt only when the reported state changes, the rest being fixed at create.
    cri_view: Any = field(default=None, compare=False, repr=False)
    # Docker's inspect of the container as last read (start, stop, update, and every state
    # event the watcher sees): ContainerStatus answers from it instead of asking Docker.
    inspected: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def sandbox_id(self) -> str:
        return self.spec.sandbox_id
