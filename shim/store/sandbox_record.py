"""What the shim knows about one sandbox, and its on-disk checkpoint.

Sandbox states (the CRI has only READY and NOTREADY; `network` tells how far networking got):

    RunPodSandbox ──create──▶ NOTREADY ──start, netns pinned, CNI ADD ok──▶ READY
                                  ▲                                          │
                                  └────────── StopPodSandbox (CNI DEL, stop) ┘
    any state ──RemovePodSandbox──▶ (record and checkpoint gone)

A READY sandbox whose infra container has died is reported NOTREADY. A failed step of
RunPodSandbox leaves NOTREADY (with its checkpoint) only when its undo also failed, so that a
later StopPodSandbox can finish the job.
"""

from __future__ import annotations

import base64
import enum
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from cri_api import api_pb2


class SandboxState(enum.Enum):
    READY = "ready"
    NOTREADY = "notready"


class NetworkPhase(enum.Enum):
    NONE = "none"  # no CNI work done (or host network): nothing to tear down
    PENDING = "pending"  # ADD may have started: DEL must run before the record goes away
    ATTACHED = "attached"  # ADD succeeded
    DETACHED = "detached"  # DEL succeeded


@dataclass
class NetworkAttachment:
    """Everything needed to replay CNI DEL exactly as ADD ran, even after a restart."""

    network_name: str
    conf_source: str
    conf_bytes_b64: str
    ifname: str
    cni_args: list[tuple[str, str]]
    capability_args: dict[str, Any]
    result: dict[str, Any] | None = None

    @property
    def conf_bytes(self) -> bytes:
        return base64.b64decode(self.conf_bytes_b64)


@dataclass
class SandboxRecord:
    id: str
    name: str
    namespace: str
    uid: str
    attempt: int
    created_at: int  # nanoseconds since the epoch
    config_b64: str  # serialized PodSandboxConfig
    state: SandboxState = SandboxState.NOTREADY
    host_network: bool = False
    netns_path: str = ""  # the pinned bind mount of the infra container's network namespace
    network_phase: NetworkPhase = NetworkPhase.NONE
    network: NetworkAttachment | None = None
    runtime_handler: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    # RunPodSandbox's steps and their durations, [{"step": "create", "seconds": 0.12}, ...]:
    # kept in the checkpoint, so PodSandboxStatus shows them after a restart too.
    startup_steps: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name_key(self) -> str:
        """The identity kubelet gives a sandbox: one sandbox per (name, namespace, uid, attempt)."""
        return name_key(self.name, self.namespace, self.uid, self.attempt)

    @property
    def ips(self) -> list[str]:
        if self.network is None or self.network.result is None:
            return []
        return ips_of_result(self.network.result)

    def sandbox_config(self) -> api_pb2.PodSandboxConfig:
        """The PodSandboxConfig RunPodSandbox was given."""
        config = api_pb2.PodSandboxConfig()
        config.ParseFromString(base64.b64decode(self.config_b64))
        return config

    def to_json(self) -> bytes:
        """The checkpoint. Labels and annotations are in the serialized config already, and
        may be large (256 KiB): they are stored once, there, and read back from it."""
        data = asdict(self)
        del data["labels"], data["annotations"]
        data["state"] = self.state.value
        data["network_phase"] = self.network_phase.value
        return json.dumps(data, indent=1, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> SandboxRecord:
        data = json.loads(raw)
        data["state"] = SandboxState(data["state"])
        data["network_phase"] = NetworkPhase(data["network_phase"])
        if data.get("network") is not None:
            net = data["network"]
            net["cni_args"] = [tuple(pair) for pair in net["cni_args"]]
            data["network"] = NetworkAttachment(**net)
        data.pop("labels", None)  # older checkpoints stored them twice
        data.pop("annotations", None)
        record = cls(**data)
        config = record.sandbox_config()
        record.labels = dict(config.labels)
        record.annotations = dict(config.annotations)
        return record


def name_key(name: str, namespace: str, uid: str, attempt: int) -> str:
    """One string per identity: JSON, because any separator could occur inside the names."""
    return json.dumps([name, namespace, uid, attempt], ensure_ascii=False)


def ips_of_result(result: dict[str, Any]) -> list[str]:
    """Bare addresses from a CNI result: kubelet drops every IP if one carries a prefix length."""
    return [str(ip["address"]).split("/", 1)[0] for ip in result.get("ips", [])]
