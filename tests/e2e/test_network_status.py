"""For a CNI 1.1 network, NetworkReady comes from the plugins' STATUS answers (codes 50/51 mean
not ready), and it follows them without a restart."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest

from cri_api import api_pb2
from tests.e2e.conftest import Pods, make_shim, running_shim
from tests.e2e.harness import REFERENCE_PLUGINS, NetworkPlan, Shim, script_plugins

pytestmark = pytest.mark.integration

# A 1.1 plugin whose STATUS fails with code 50 while the file named in its config exists.
GATED = """#!/bin/sh
conf=$(cat)
gate=$(printf '%s' "$conf" | sed -n 's/.*"gate": *"\\([^"]*\\)".*/\\1/p')
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}' ;;
STATUS) if [ -e "$gate.hang" ]; then sleep 8; fi
        if [ -e "$gate" ]; then
          echo '{"cniVersion":"1.1.0","code":50,"msg":"e2e-gated: overlay not up yet"}'
          exit 1
        fi ;;
ADD) echo '{"cniVersion":"1.1.0","ips":[{"address":"10.200.250.9/24"}]}' ;;
esac
exit 0
"""


@pytest.fixture
def gated_plugin_dir() -> Iterator[str]:
    with script_plugins({"e2e-gated": GATED}) as directory:
        yield directory


@pytest.fixture
def gated_shim(plan: NetworkPlan, pods: Pods, gated_plugin_dir: str) -> Iterator[Shim]:
    yield from make_shim(plan, pods, bin_dirs=[gated_plugin_dir, REFERENCE_PLUGINS])


def _network_ready(shim: Shim) -> api_pb2.RuntimeCondition:
    status = shim.runtime().Status(api_pb2.StatusRequest(), timeout=30)
    return next(c for c in status.status.conditions if c.type == "NetworkReady")


def test_status_of_a_1_1_network_drives_network_ready(
    gated_shim: Shim, gated_plugin_dir: str
) -> None:
    gate = os.path.join(gated_plugin_dir, "not-ready")
    open(gate, "w").close()
    gated_shim.write_conf(
        "10-e2e.conflist",
        {"cniVersion": "1.1.0", "name": "gated", "plugins": [{"type": "e2e-gated", "gate": gate}]},
    )
    condition = _network_ready(gated_shim)
    assert not condition.status
    assert condition.reason == "NetworkPluginNotReady"
    assert "e2e-gated: overlay not up yet" in condition.message
    os.unlink(gate)
    # Answers are reused for a few seconds (kubelet asks every 5 s): it follows soon after.
    deadline = time.monotonic() + 15
    while not _network_ready(gated_shim).status and time.monotonic() < deadline:
        time.sleep(0.3)
    assert _network_ready(gated_shim).status


def test_a_hanging_status_does_not_hang_status(gated_shim: Shim, gated_plugin_dir: str) -> None:
    """A STATUS that hangs costs Status a short wait of its own, not the plugin timeout, and
    calls do not pile up behind it (issue 10, item 7)."""
    gate = os.path.join(gated_plugin_dir, "not-ready")
    open(gate + ".hang", "w").close()
    gated_shim.write_conf(
        "10-e2e.conflist",
        {"cniVersion": "1.1.0", "name": "gated", "plugins": [{"type": "e2e-gated", "gate": gate}]},
    )
    for _ in range(3):
        started = time.monotonic()
        condition = _network_ready(gated_shim)
        assert time.monotonic() - started < 5
        assert not condition.status
        assert "STATUS did not answer within" in condition.message
    os.unlink(gate + ".hang")


FLAKY = """#!/bin/sh
# VERSION fails the first time (a timeout under load, say), then answers.
case "$CNI_COMMAND" in
VERSION) marker="$(dirname "$0")/answered-once"
         if [ ! -e "$marker" ]; then : > "$marker"; echo '{"code":999,"msg":"busy"}'; exit 1; fi
         echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0"]}' ;;
esac
exit 0
"""
OLD_BINARY = """#!/bin/sh
[ "$CNI_COMMAND" = VERSION ] && echo '{"cniVersion":"0.4.0","supportedVersions":["0.4.0"]}'
exit 0
"""
NEW_BINARY = """#!/bin/sh
[ "$CNI_COMMAND" = VERSION ] && echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'
exit 0
"""


def _wait_network_ready(shim: Shim, timeout: float = 20) -> api_pb2.RuntimeCondition:
    deadline = time.monotonic() + timeout
    condition = _network_ready(shim)
    while not condition.status and time.monotonic() < deadline:
        time.sleep(0.5)
        condition = _network_ready(shim)
    return condition


def test_a_passing_plugin_failure_is_looked_at_again(plan: NetworkPlan, pods: Pods) -> None:
    """A failure while choosing the network is not remembered until the conf dir changes
    (issue 10, item 9): NetworkReady recovers by itself."""
    with (
        script_plugins({"e2e-flaky": FLAKY}) as plugin_dir,
        running_shim(plan, pods, bin_dirs=[plugin_dir, REFERENCE_PLUGINS]) as shim,
    ):
        shim.write_conf(
            "10-e2e.conflist",
            {"cniVersion": "1.0.0", "name": "flaky", "plugins": [{"type": "e2e-flaky"}]},
        )
        first = _network_ready(shim)
        assert not first.status and "busy" in first.message
        assert _wait_network_ready(shim).status


def test_a_binary_replaced_in_place_is_noticed(plan: NetworkPlan, pods: Pods) -> None:
    with (
        script_plugins({"e2e-upgraded": OLD_BINARY}) as plugin_dir,
        running_shim(plan, pods, bin_dirs=[plugin_dir, REFERENCE_PLUGINS]) as shim,
    ):
        shim.write_conf(
            "10-e2e.conflist",
            {"cniVersion": "1.0.0", "name": "up", "plugins": [{"type": "e2e-upgraded"}]},
        )
        assert not _network_ready(shim).status
        # Overwritten in place: same name, same inode, same directory entry.
        with open(os.path.join(plugin_dir, "e2e-upgraded"), "r+") as f:
            f.write(NEW_BINARY)
            f.truncate()
        assert _network_ready(shim).status


def test_special_files_in_the_conf_dir_are_listed_as_skipped(shim: Shim) -> None:
    """A FIFO or a directory named like a config is reported with its reason (issue 10,
    item 14), and the FIFO is never opened (which would block)."""
    os.mkfifo(os.path.join(shim.conf_dir, "00-fifo.conflist"))
    os.mkdir(os.path.join(shim.conf_dir, "01-dir.conflist"))
    info = shim.runtime().Status(api_pb2.StatusRequest(verbose=True), timeout=10).info
    skipped = json.loads(info["cniconfig"])["skipped"]
    assert any("00-fifo.conflist" in s and "it is a FIFO" in s for s in skipped), skipped
    assert any("01-dir.conflist" in s and "it is a directory" in s for s in skipped), skipped
    assert _network_ready(shim).status  # the real config after them is still chosen
