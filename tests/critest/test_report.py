"""The critest report reader and comparison on small hand-written JUnit files (no critest)."""

from __future__ import annotations

import pathlib

import pytest

from tests.critest import suite

JUNIT = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" failures="1">
  <testsuite name="critest">
    <testcase name="[BeforeSuite]" classname="critest" status="passed" time="0.1"></testcase>
    <testcase name="[It] [k8s.io] A spec that passes" classname="critest" status="passed"
      time="1.5"></testcase>
    <testcase name="[It] [k8s.io] A spec that fails" classname="critest" status="failed" time="2">
      <failure message="failed to start container: unable to apply caps" type="failed">
        [FAILED] details here</failure>
    </testcase>
    <testcase name="[It] [k8s.io] AppArmor spec" classname="critest" status="skipped" time="0">
      <skipped message="skipped - AppArmor is disabled on this host"></skipped>
    </testcase>
  </testsuite>
</testsuites>
"""

EXPECTED = (
    "# comment\n"
    "passed\t-\t[k8s.io] A spec that passes\n"
    "passed\t-\t[k8s.io] A spec that fails\n"
    "skipped\tno-apparmor\t[k8s.io] AppArmor spec\n"
    "failed\tno-cap-sys-resource\t[k8s.io] A spec that is gone\n"
)


def test_parse_junit_per_spec(tmp_path: pathlib.Path) -> None:
    report = tmp_path / "r.xml"
    report.write_text(JUNIT)
    results = suite.parse_junit(str(report))
    assert sorted(results) == [
        "[k8s.io] A spec that fails",
        "[k8s.io] A spec that passes",
        "[k8s.io] AppArmor spec",
    ]
    failed = results["[k8s.io] A spec that fails"]
    assert failed.outcome == "failed"
    assert "unable to apply caps" in failed.message
    assert "details here" in failed.message
    assert results["[k8s.io] AppArmor spec"].outcome == "skipped"
    assert suite.counts(results.values()) == {"passed": 1, "failed": 1, "skipped": 1}


def test_compare_reports_every_difference(tmp_path: pathlib.Path) -> None:
    report, expected = tmp_path / "r.xml", tmp_path / "e.tsv"
    report.write_text(JUNIT)
    expected.write_text(EXPECTED)
    differences = suite.compare(suite.load_expected(str(expected)), suite.parse_junit(str(report)))
    assert [(d.name, d.expected, d.actual) for d in differences] == [
        ("[k8s.io] A spec that fails", "passed", "failed"),
        ("[k8s.io] A spec that is gone", "failed", "(missing)"),
    ]
    table = suite.format_differences(differences)
    assert "unable to apply caps" in table
    partial = suite.compare(
        suite.load_expected(str(expected)), suite.parse_junit(str(report)), partial=True
    )
    assert len(partial) == 1


@pytest.mark.parametrize(
    "line",
    [
        "failed\tTODO\tspec",
        "failed\tsomething vague\tspec",
        "skipped\t-\tspec",
        "passed\tno-apparmor\tspec",
        "flaky\t-\tspec",
        "passed\tspec",
    ],
)
def test_expected_file_needs_known_reasons(tmp_path: pathlib.Path, line: str) -> None:
    expected = tmp_path / "e.tsv"
    expected.write_text(line + "\n")
    with pytest.raises(ValueError):
        suite.load_expected(str(expected))


def test_write_expected_keeps_reasons_and_marks_new_ones(tmp_path: pathlib.Path) -> None:
    expected = tmp_path / "e.tsv"
    old = {"a": suite.Expected("a", "failed", "registry-prefix")}
    actual = {
        "a": suite.SpecResult("a", "failed", "msg"),
        "b": suite.SpecResult("b", "failed", "msg"),
        "c": suite.SpecResult("c", "passed"),
    }
    suite.write_expected(actual, old, str(expected))
    rows = [line for line in expected.read_text().splitlines() if not line.startswith("#")]
    assert rows == ["failed\tregistry-prefix\ta", "failed\tTODO\tb", "passed\t-\tc"]


def test_checked_in_file_is_valid() -> None:
    expected = suite.load_expected()
    assert len(expected) == 122
