"""critest v1.36.0, the CRI validation suite every production runtime runs, against a private
cri-shim on our own CNI plugins. The test compares every spec's outcome with expected.tsv and
fails on any difference: a new failure, and also a spec that newly passes (update the file).

    CRITEST_FOCUS=REGEX          run only the matching specs (compares only those)
    CRITEST_WRITE_EXPECTED=1     rewrite expected.tsv from this run (new reasons read TODO and
                                 must be filled in by hand before the test passes again)
    CRITEST_KEEP=DIR             keep the JUnit report and critest's output in DIR"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.critest import suite
from tests.e2e.harness import REFERENCE_PLUGINS, Shim

pytestmark = pytest.mark.integration


def _needs_host() -> str | None:
    if os.geteuid() != 0:
        return "needs root"
    if subprocess.run(["/usr/bin/docker", "info"], capture_output=True, check=False).returncode:
        return "needs a running Docker engine (make setup starts one)"
    if not os.path.exists(os.path.join(REFERENCE_PLUGINS, "portmap")):
        return "needs the reference CNI plugins (containernetworking-plugins)"
    return suite.critest_available()


@pytest.fixture(scope="module")
def critest_shim() -> Iterator[Shim]:
    reason = _needs_host()
    if reason:
        pytest.skip(reason)
    # Every run: the previous one removed some images from Docker on purpose.
    suite.prepare_images()
    before = set(suite.critest_containers())
    with suite.private_shim() as shim:
        yield shim
    left = {cid: name for cid, name in suite.critest_containers().items() if cid not in before}
    for cid in left:
        subprocess.run(["/usr/bin/docker", "rm", "-f", cid], capture_output=True, check=False)
    assert not left, f"critest containers left in Docker after the shim's cleanup: {left}"


@pytest.mark.timeout(2400)
def test_critest_matches_expected(critest_shim: Shim) -> None:
    focus = os.environ.get("CRITEST_FOCUS") or None
    run = suite.run_critest(critest_shim.endpoint, focus=focus, timeout=2100)
    keep = os.environ.get("CRITEST_KEEP")
    if keep:
        os.makedirs(keep, exist_ok=True)
        if os.path.exists(run.report):
            shutil.copy(run.report, keep)
        with open(os.path.join(keep, "critest.log"), "w") as f:
            f.write(run.output)
    assert run.results, (
        f"critest wrote no JUnit report (exit {run.returncode}):\n{run.output[-5000:]}"
        f"\n--- shim log ---\n{critest_shim.log()[-5000:]}"
    )
    # Only the specs that ran count in a focused run; Ginkgo reports the rest as skipped.
    results = run.results
    if focus:
        results = {name: r for name, r in results.items() if r.outcome != "skipped"}
    print(suite.format_summary(results, messages=False))
    print(f"critest took {run.seconds:.0f}s")

    if os.environ.get("CRITEST_WRITE_EXPECTED"):
        old = suite.load_expected() if os.path.exists(suite.EXPECTED) else {}
        merged = dict(results) if not focus else _merge_focused(old, results)
        suite.write_expected(merged, old)
        pytest.skip(f"wrote {suite.EXPECTED}: check every TODO reason by hand")

    differences = suite.compare(suite.load_expected(), results, partial=bool(focus))
    tally = suite.counts(results.values())
    assert not differences, (
        f"critest: {tally['passed']} passed, {tally['failed']} failed, {tally['skipped']} "
        f"skipped; {len(differences)} specs differ from {suite.EXPECTED}:\n"
        + suite.format_differences(differences)
    )


# critest's switches for client-go's WebSocket clients: exec and attach over
# v5.channel.k8s.io, port-forward through the SPDY/3.1+portforward.k8s.io tunnel.
WEBSOCKET_FLAGS = ("-websocket-exec", "-websocket-attach", "-websocket-portforward")
STREAMING_FOCUS = r"\[k8s\.io\] Streaming"


@pytest.mark.timeout(600)
def test_critest_streaming_over_websocket(critest_shim: Shim) -> None:
    """The Streaming specs once more, with the WebSocket transports instead of SPDY: every one
    that passes over SPDY (expected.tsv) must pass here too."""
    run = suite.run_critest(
        critest_shim.endpoint, focus=STREAMING_FOCUS, timeout=500, extra=WEBSOCKET_FLAGS
    )
    assert run.results, (
        f"critest wrote no JUnit report (exit {run.returncode}):\n{run.output[-5000:]}"
        f"\n--- shim log ---\n{critest_shim.log()[-5000:]}"
    )
    ran = {name: r for name, r in run.results.items() if r.outcome != "skipped"}
    print(suite.format_summary(ran, messages=False))
    wanted = {
        name
        for name, e in suite.load_expected().items()
        if e.outcome == "passed" and re.search(STREAMING_FOCUS, name)
    }
    assert len(wanted) == 5, f"expected.tsv lists {len(wanted)} passing Streaming specs, not 5"
    assert set(ran) == wanted, f"critest ran {sorted(ran)}, expected {sorted(wanted)}"
    failed = {name: r.message[-2000:] for name, r in ran.items() if r.outcome != "passed"}
    assert not failed, f"Streaming specs failed over WebSocket: {failed}" + (
        f"\n--- shim log ---\n{critest_shim.log()[-5000:]}"
    )


def _merge_focused(
    old: dict[str, suite.Expected], results: dict[str, suite.SpecResult]
) -> dict[str, suite.SpecResult]:
    """The old file's outcomes with this focused run's ones laid over them."""
    merged = {name: suite.SpecResult(name, e.outcome) for name, e in old.items()}
    merged.update(results)
    return merged
