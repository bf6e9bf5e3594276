"""`scripts/two-nodes.sh`: the netns simulation for a person, not a test.

    python -m tests.overlay.twonodes up      # build it; prints one JSON line of what it made
    python -m tests.overlay.twonodes down    # remove everything `up` made (idempotent)

`up` leaves the daemons and etcd running after it exits and records their pids, the namespaces
and the work directory in STATE, so that `down` (another process) can remove exactly those.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

from tests.overlay.harness import VXLAN_CONFIG, Simulation, host_missing, new_workdir, run

STATE = Path("/run/cri-shim-two-nodes.json")


def up() -> int:
    if STATE.exists():
        print(f"already up ({STATE}); run down first", file=sys.stderr)
        return 1
    reason = host_missing()
    if reason:
        print(reason, file=sys.stderr)
        return 1
    sim = Simulation(new_workdir())
    state: dict[str, Any] = {"namespaces": sim.namespaces, "workdir": str(sim.workdir)}
    try:
        sim.start_etcd()
        sim.put_config(VXLAN_CONFIG)
        for index in (1, 2):
            sim.add_node(index).start("--ip-masq")
        sim.wait_converged()
        pods = [sim.nodes[i].add_pod() for i in (1, 2)]
    except Exception:
        sim.close()
        raise
    assert sim.etcd is not None and sim.etcd.pid is not None
    state["pids"] = [sim.etcd.pid, *(n.proc.pid for n in sim.nodes.values() if n.proc)]
    STATE.write_text(json.dumps(state))
    print(
        json.dumps(
            {
                "pod1": pods[0].name,
                "pod1_ip": pods[0].ip,
                "pod2": pods[1].name,
                "pod2_ip": pods[1].ip,
                "workdir": str(sim.workdir),
            }
        )
    )
    return 0


def down() -> int:
    if not STATE.exists():
        return 0
    state = json.loads(STATE.read_text())
    for pid in state["pids"]:
        # Only if the pid is still ours (etcd or our daemon), not a later process reusing it.
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            if b"etcd" in cmdline[0] or b"overlay" in cmdline:
                os.kill(pid, signal.SIGTERM)
    for ns in reversed(state["namespaces"]):
        run("ip", "netns", "del", ns, check=False)
    shutil.rmtree(state["workdir"], ignore_errors=True)
    STATE.unlink()
    return 0


def main(argv: list[str]) -> int:
    if argv[1:] == ["up"]:
        return up()
    if argv[1:] == ["down"]:
        return down()
    print("usage: python -m tests.overlay.twonodes up|down", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
