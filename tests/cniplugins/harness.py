"""Helpers for tests that drive cnilib against the recording plugin."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cnilib.api import CNIConfig
from cnilib.conf import parse_conf
from cnilib.errors import CNIError
from cnilib.types import RuntimeConf

RECORDER = Path(__file__).with_name("recorder.py")


def install_recorder(
    bin_dir: Path,
    name: str,
    supported_versions: list[str] | None = None,
    log: Path | None = None,
    behave: dict[str, Any] | None = None,
) -> Path:
    """Copy the recorder into `bin_dir` as plugin type `name`.

    The shebang is rewritten to this interpreter so the test does not depend on which
    python3 is first on PATH. The sidecar file carries what VERSION must answer.
    """
    bin_dir.mkdir(parents=True, exist_ok=True)
    target = bin_dir / name
    text = RECORDER.read_text().split("\n", 1)[1]
    target.write_text(f"#!{sys.executable}\n{text}")
    target.chmod(0o755)
    sidecar: dict[str, Any] = {}
    if supported_versions is not None:
        sidecar["supportedVersions"] = supported_versions
    if log is not None:
        sidecar["log"] = str(log)
    if behave is not None:
        sidecar["behave"] = behave
    if sidecar:
        Path(f"{target}.json").write_text(json.dumps(sidecar))
    return target


def read_log(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def calls(path: Path, command: str | None = None) -> list[dict[str, Any]]:
    """Logged calls other than VERSION (or only `command`), in order."""
    records = read_log(path)
    if command is None:
        return [r for r in records if r["command"] != "VERSION"]
    return [r for r in records if r["command"] == command]


@dataclass
class ListSpec:
    """Builds a conflist of recorder plugins."""

    name: str
    cni_version: str
    log: Path
    plugins: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def plugin(self, plugin_type: str, tag: str, **fields: Any) -> ListSpec:
        self.plugins.append({"type": plugin_type, "tag": tag, "log": str(self.log), **fields})
        return self

    def to_bytes(self) -> bytes:
        obj = {"cniVersion": self.cni_version, "name": self.name, **self.extra}
        obj["plugins"] = self.plugins
        return json.dumps(obj).encode()


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent, or a zombie nobody reaped: no init here)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def cleanup_pid(pid: int) -> None:
    if not process_gone(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)


def delete_leftover_attachments(cni: CNIConfig, netns: str) -> None:
    """Finalizer: a test that failed after ADD must not leave iptables rules or veths."""
    for att in cni.get_cached_attachments(""):
        rt = RuntimeConf(att.container_id, netns, att.ifname, att.args, att.capability_args)
        try:
            cni.del_network_list(parse_conf(att.config), rt)
        except CNIError as err:
            print(f"cleanup DEL of {att.container_id} failed: {err}")
