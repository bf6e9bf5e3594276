"""Sandbox checkpoints: round trip, id prefixes, and the undo stack's ordering."""

from __future__ import annotations

import base64
import os

import pytest

from cri_api import api_pb2
from shim.errors import InvalidArgumentError, NotFoundError
from shim.store.sandbox_record import (
    NetworkAttachment,
    NetworkPhase,
    SandboxRecord,
    SandboxState,
    ips_of_result,
)
from shim.store.sandbox_store import SandboxStore
from shim.undo import UndoStack


def _record(sandbox_id: str, **kwargs: object) -> SandboxRecord:
    return SandboxRecord(
        id=sandbox_id,
        name="web",
        namespace="ns",
        uid="u",
        attempt=1,
        created_at=1,
        **{"config_b64": "", **kwargs},  # type: ignore[arg-type]
    )


def test_record_round_trip() -> None:
    record = _record(
        "a" * 64,
        state=SandboxState.READY,
        network_phase=NetworkPhase.ATTACHED,
        netns_path="/x",
        network=NetworkAttachment(
            network_name="n",
            conf_source="/c",
            conf_bytes_b64="e30=",
            ifname="eth0",
            cni_args=[("K8S_POD_NAME", "web")],
            capability_args={"portMappings": []},
            result={"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]},
        ),
        labels={"a": "b"},
        config_b64=base64.b64encode(
            api_pb2.PodSandboxConfig(labels={"a": "b"}).SerializeToString()
        ).decode(),
    )
    again = SandboxRecord.from_json(record.to_json())
    assert again == record
    assert again.ips == ["10.0.0.2"]
    assert again.network is not None and again.network.conf_bytes == b"{}"


def test_ips_are_bare_addresses() -> None:
    result = {"ips": [{"address": "10.0.0.2/24"}, {"address": "fd00::2/64"}]}
    assert ips_of_result(result) == ["10.0.0.2", "fd00::2"]


def test_store_persists_and_resolves_prefixes(tmp_path: os.PathLike[str]) -> None:
    store = SandboxStore(str(tmp_path))
    store.save(_record("abc123" + "0" * 58))
    store.save(_record("abd456" + "0" * 58))
    assert store.resolve("abc") == "abc123" + "0" * 58
    with pytest.raises(InvalidArgumentError, match="ambiguous"):
        store.resolve("ab")
    with pytest.raises(NotFoundError, match="'ff' not found"):
        store.resolve("ff")
    with pytest.raises(InvalidArgumentError, match="empty"):
        store.resolve("")

    reloaded = SandboxStore(str(tmp_path))
    assert {r.id for r in reloaded.load()} == {"abc123" + "0" * 58, "abd456" + "0" * 58}
    reloaded.delete("abc123" + "0" * 58)
    assert [r.id for r in SandboxStore(str(tmp_path)).load()] == ["abd456" + "0" * 58]


def test_store_skips_corrupt_checkpoint(tmp_path: os.PathLike[str]) -> None:
    store = SandboxStore(str(tmp_path))
    with open(os.path.join(tmp_path, "sandboxes", "bad.json"), "w") as f:
        f.write("{")
    assert store.load() == []


def test_undo_runs_newest_first_and_continues_after_failure() -> None:
    calls: list[str] = []
    undo = UndoStack("test")
    undo.push("first", lambda: calls.append("first"))

    def broken() -> None:
        calls.append("second")
        raise OSError("device busy")

    undo.push("second", broken)
    undo.push("third", lambda: calls.append("third"))
    assert [str(f) for f in undo.rollback()] == ["second: device busy"]
    assert calls == ["third", "second", "first"]


def test_failed_undo_that_keeps_earlier_steps_stops_the_rollback() -> None:
    """A failed CNI DEL must keep the pin and the container that a retried DEL needs."""
    calls: list[str] = []
    undo = UndoStack("test")
    undo.push("container", lambda: calls.append("container"))
    undo.push("pin", lambda: calls.append("pin"))

    def failing_del() -> None:
        raise OSError("plugin failed")

    undo.push("network", failing_del, keeps_earlier=True)
    failures = undo.rollback()
    assert undo.failed("network") and not undo.failed("pin")
    assert [f.step for f in failures] == ["network"]
    assert calls == []
    assert undo.kept == ["pin", "container"]


def test_undo_commit_keeps_everything() -> None:
    calls: list[str] = []
    undo = UndoStack("test")
    undo.push("x", lambda: calls.append("x"))
    undo.commit()
    assert undo.rollback() == []
    assert calls == []


def test_checkpoint_holds_labels_and_annotations_once() -> None:
    big = "x" * 100_000
    config = api_pb2.PodSandboxConfig(labels={"app": "web"}, annotations={"note": big})
    record = SandboxRecord(
        id="a" * 64,
        name="p",
        namespace="n",
        uid="u",
        attempt=0,
        created_at=1,
        config_b64=base64.b64encode(config.SerializeToString()).decode(),
        labels={"app": "web"},
        annotations={"note": big},
    )
    raw = record.to_json()
    assert len(raw) < 1.5 * len(big)  # base64 of the config, and nothing more of that size
    back = SandboxRecord.from_json(raw)
    assert back.labels == {"app": "web"} and back.annotations == {"note": big}
