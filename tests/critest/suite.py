"""Run critest (the CRI validation suite of cri-tools v1.36.0) against a cri-shim socket, read its
JUnit report per spec, and compare that with the checked-in expected results (expected.tsv).

The binary comes from scripts/critest-tools.sh and the images from scripts/critest-images.sh (a
registry on 127.0.0.1:5000 plus the same images seeded in Docker); see
/work/shared/docs/CRITEST-OFFLINE.md for why each substitute image looks as it does."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

from tests.e2e.harness import REPO, NetworkPlan, Shim, new_workdir, serve_shim

VERSION = "v1.36.0"
CRITEST = os.path.join(REPO, ".tools", "bin", "critest")
EXPECTED = os.path.join(os.path.dirname(os.path.abspath(__file__)), "expected.tsv")
IMAGES_SCRIPT = os.path.join(REPO, "scripts", "critest-images.sh")
REGISTRY_PREFIX = "localhost:5000"
# Every sandbox critest makes lives in a Kubernetes namespace named so (framework.RunPodSandbox).
NAMESPACE_PREFIX = "cri-test-namespace"

OUTCOMES = ("passed", "failed", "skipped")

# Why a spec is expected not to pass. A failure must name one of these: the machine's causes
# (CRITEST-OFFLINE.md, "Failures that are this machine's") or a feature we have not built yet.
CAUSES: dict[str, str] = {
    "no-cap-sys-resource": "the VM's bounding set lacks CAP_SYS_RESOURCE: a privileged or "
    "ALL-capabilities container cannot start (runc: unable to apply caps)",
    "registry-prefix": "--registry-prefix pulls localhost:5000/<path>: a spec that removes the "
    "canonical image and then pulls never sees the canonical name again",
    "busybox-ls-builtin": "busybox-static's sh runs ls as a built-in applet and never execs the "
    "masked /bin/ls",
}
SKIP_CAUSES: dict[str, str] = {
    "no-apparmor": "no AppArmor on this kernel",
    "no-userns-feature": "the runtime advertises no user-namespace runtime handler feature",
    "no-supplemental-groups-policy": "the runtime advertises no SupplementalGroupsPolicy feature",
    "benchmark": "benchmarks run only with -benchmark",
    "no-rro-feature": "the runtime advertises no recursive read-only mounts feature (Docker "
    "20.10 cannot make one)",
}


@dataclass(frozen=True)
class SpecResult:
    """One spec of a JUnit report: its outcome and, when it did not pass, why (the message)."""

    name: str
    outcome: str
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Expected:
    name: str
    outcome: str
    reason: str


@dataclass(frozen=True)
class Difference:
    name: str
    expected: str
    actual: str
    reason: str
    message: str


@dataclass
class Run:
    """A finished critest run."""

    returncode: int
    seconds: float
    report: str
    output: str
    results: dict[str, SpecResult]


def critest_available() -> str | None:
    """Why critest cannot run here, or None."""
    if not os.access(CRITEST, os.X_OK):
        return f"{CRITEST} is missing (scripts/critest-tools.sh builds it)"
    out = subprocess.run([CRITEST, "--version"], capture_output=True, text=True, check=False)
    if VERSION not in out.stdout:
        return f"{CRITEST} is not critest {VERSION}: {out.stdout.strip()!r}"
    return None


def prepare_images() -> None:
    """Start the registry if needed and (re-)seed Docker: a critest run removes some images."""
    subprocess.run(["bash", IMAGES_SCRIPT], check=True, timeout=600)


def critest_command(
    endpoint: str,
    report: str,
    focus: str | None = None,
    skip: str | None = None,
    extra: Iterable[str] = (),
) -> list[str]:
    cmd = [
        CRITEST,
        "--runtime-endpoint",
        endpoint,
        "--image-endpoint",
        endpoint,
        "--registry-prefix",
        REGISTRY_PREFIX,
        "--ginkgo.seed",
        "1",
        "--ginkgo.junit-report",
        report,
        "--ginkgo.no-color",
    ]
    if focus:
        cmd += ["--ginkgo.focus", focus]
    if skip:
        cmd += ["--ginkgo.skip", skip]
    return [*cmd, *extra]


def run_critest(
    endpoint: str,
    focus: str | None = None,
    skip: str | None = None,
    timeout: float = 1800,
    output_path: str | None = None,
    extra: Iterable[str] = (),
) -> Run:
    """Run critest once against `endpoint`; its output goes to `output_path` (or a temp file)."""
    workdir = tempfile.mkdtemp(prefix="critest-")
    report = os.path.join(workdir, "junit.xml")
    output_path = output_path or os.path.join(workdir, "critest.log")
    cmd = critest_command(endpoint, report, focus, skip, extra)
    started = time.monotonic()
    # critest writes its temp files (log dirs of the pods) in the cwd's TMPDIR: keep it private.
    env = dict(os.environ, TMPDIR=workdir)
    with open(output_path, "w") as out:
        proc = subprocess.run(
            cmd, stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env, timeout=timeout
        )
    seconds = time.monotonic() - started
    with open(output_path, errors="replace") as f:
        output = f.read()
    results = parse_junit(report) if os.path.exists(report) else {}
    return Run(proc.returncode, seconds, report, output, results)


# Ginkgo reports the suite's set-up and tear-down nodes as test cases too: not specs.
_SUITE_NODES = re.compile(r"^\[(Synchronized)?(Before|After|ReportBefore|ReportAfter)Suite\]")


def parse_junit(path: str) -> dict[str, SpecResult]:
    """Spec name -> result. Names drop Ginkgo's leading "[It] " node-type marker."""
    results: dict[str, SpecResult] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        raw = case.get("name", "")
        if _SUITE_NODES.match(raw):
            continue
        name = spec_name(raw)
        failure = case.find("failure")
        error = case.find("error")
        skipped = case.find("skipped")
        status = case.get("status", "")
        if failure is not None or error is not None or status in ("failed", "panicked"):
            node = failure if failure is not None else error
            outcome, message = "failed", _message(node)
        elif skipped is not None or status in ("skipped", "pending"):
            outcome, message = "skipped", _message(skipped)
        else:
            outcome, message = "passed", ""
        results[name] = SpecResult(name, outcome, message, float(case.get("time", "0") or 0))
    return results


def spec_name(raw: str) -> str:
    name = raw.removeprefix("[It] ")
    # One line per spec in expected.tsv: no tabs or new lines.
    return " ".join(name.split())


def _message(node: ET.Element | None) -> str:
    if node is None:
        return ""
    text = node.get("message", "") or ""
    body = (node.text or "").strip()
    if body and body not in text:
        text = f"{text}\n{body}" if text else body
    return text.strip()


def load_expected(path: str = EXPECTED) -> dict[str, Expected]:
    """Read expected.tsv: `outcome<TAB>reason<TAB>spec name` per line, `#` comments. A failed
    or skipped spec must give a known reason: the file is checked by hand, never just dumped."""
    expected: dict[str, Expected] = {}
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise ValueError(f"{path}:{number}: want outcome<TAB>reason<TAB>name: {line!r}")
            outcome, reason, name = fields
            if outcome not in OUTCOMES:
                raise ValueError(f"{path}:{number}: unknown outcome {outcome!r}")
            if outcome == "failed" and reason not in CAUSES:
                raise ValueError(f"{path}:{number}: a failure needs a reason from CAUSES: {reason}")
            if outcome == "skipped" and reason not in SKIP_CAUSES:
                raise ValueError(f"{path}:{number}: a skip needs a reason from SKIP_CAUSES")
            if outcome == "passed" and reason != "-":
                raise ValueError(f"{path}:{number}: a passing spec has reason '-'")
            if name in expected:
                raise ValueError(f"{path}:{number}: spec listed twice: {name}")
            expected[name] = Expected(name, outcome, reason)
    return expected


def compare(
    expected: Mapping[str, Expected], actual: Mapping[str, SpecResult], partial: bool = False
) -> list[Difference]:
    """Every spec whose outcome differs, a spec the file lacks, and (unless `partial`, for a
    focused run) a spec the file lists that did not run at all."""
    differences: list[Difference] = []
    for name, result in actual.items():
        want = expected.get(name)
        if want is None:
            differences.append(Difference(name, "(not listed)", result.outcome, "", result.message))
        elif want.outcome != result.outcome:
            differences.append(
                Difference(name, want.outcome, result.outcome, want.reason, result.message)
            )
    if not partial:
        for name, want in expected.items():
            if name not in actual:
                differences.append(Difference(name, want.outcome, "(missing)", want.reason, ""))
    return sorted(differences, key=lambda d: d.name)


def counts(results: Iterable[SpecResult]) -> dict[str, int]:
    tally = dict.fromkeys(OUTCOMES, 0)
    for result in results:
        tally[result.outcome] += 1
    return tally


def first_lines(message: str, limit: int = 6, width: int = 300) -> list[str]:
    lines = [line.rstrip()[:width] for line in message.strip().splitlines() if line.strip()]
    return lines[:limit] + (["..."] if len(lines) > limit else [])


def format_differences(differences: Iterable[Difference]) -> str:
    out = [f"{'expected':<12} {'actual':<12} spec", f"{'-' * 12} {'-' * 12} {'-' * 40}"]
    for d in differences:
        out.append(f"{d.expected:<12} {d.actual:<12} {d.name}")
        if d.reason and d.reason != "-":
            out.append(f"{'':25}expected because: {d.reason}")
        out.extend(f"{'':25}| {line}" for line in first_lines(d.message))
    return "\n".join(out)


def format_summary(results: Mapping[str, SpecResult], messages: bool = True) -> str:
    """A per-spec table of a run: outcome, seconds, name, and the failure message."""
    tally = counts(results.values())
    out = [
        f"critest {VERSION}: {tally['passed']} passed, {tally['failed']} failed, "
        f"{tally['skipped']} skipped ({len(results)} specs)"
    ]
    order = {"failed": 0, "passed": 1, "skipped": 2}
    for r in sorted(results.values(), key=lambda r: (order[r.outcome], r.name)):
        out.append(f"{r.outcome.upper():<8} {r.seconds:7.1f}s  {r.name}")
        if messages and r.outcome == "failed":
            out.extend(f"{'':19}| {line}" for line in first_lines(r.message))
    return "\n".join(out)


def write_expected(
    actual: Mapping[str, SpecResult], old: Mapping[str, Expected], path: str = EXPECTED
) -> None:
    """Regenerate expected.tsv from a run. Reasons carry over for specs whose outcome is
    unchanged; a new failure or skip gets `TODO`, which load_expected refuses until a person
    has looked at it and named the cause."""
    header = [
        "# critest " + VERSION + " expected results for cri-shim on this machine: one spec a line,",
        "# outcome<TAB>reason<TAB>spec name. tests/critest/test_critest.py fails on any spec whose",
        "# outcome differs. Reasons: '-' for passed; for failed one of suite.CAUSES; for skipped",
        "# one of suite.SKIP_CAUSES. Regenerate with CRITEST_WRITE_EXPECTED=1, then check by hand.",
    ]
    rows = []
    for name, result in sorted(actual.items()):
        prior = old.get(name)
        if result.outcome == "passed":
            reason = "-"
        elif prior is not None and prior.outcome == result.outcome:
            reason = prior.reason
        else:
            reason = "TODO"
        rows.append(f"{result.outcome}\t{reason}\t{name}")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join([*header, *rows]) + "\n")
    os.replace(tmp, path)


def critest_containers() -> dict[str, str]:
    """Docker containers (id -> name) of critest's pods: their namespace names them."""
    out = subprocess.run(
        [
            "/usr/bin/docker",
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            '{{.ID}}\t{{.Names}}\t{{.Label "io.kubernetes.pod.namespace"}}',
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        cid, name, namespace = [*line.split("\t"), "", ""][:3]
        if NAMESPACE_PREFIX in name or namespace.startswith(NAMESPACE_PREFIX):
            found[cid] = name
    return found


@contextmanager
def private_shim() -> Iterator[Shim]:
    """A cri-shim of its own (socket, root, CNI dirs) on our plugins (netplugins) and a private
    bridge network, torn down on exit even when the run failed: pods through the shim, then
    whatever is left by hand (tests/e2e/harness.force_cleanup)."""
    bin_dir = new_workdir()
    data_dir = new_workdir()
    n = os.getpid() % 250
    plan = NetworkPlan(
        bridge=f"crit{os.getpid() % 100000}",
        subnet=f"10.201.{n}.0/24",
        data_dir=data_dir,
        name="crishim-critest",
    )
    try:
        subprocess.run(
            [sys.executable, "-m", "netplugins", "install", bin_dir],
            check=True,
            capture_output=True,
        )
        yield from serve_shim(Shim(new_workdir(), [bin_dir]), plan, set())
    finally:
        for directory in (bin_dir, data_dir):
            shutil.rmtree(directory, ignore_errors=True)
