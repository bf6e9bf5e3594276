"""Suite-wide: in CI a test may not skip itself for want of the host it needs.

Outside CI, a developer without root, Docker or a built tool gets skips that say what is
missing. In CI (`CI` set, as `.ci/run` is run) the same skips would let a broken set-up pass
silently, so they are reported as failures instead.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

HOST_REQUIREMENTS = (
    "needs root",
    "needs a running docker",
    "needs the reference",
    "could not be installed",
    "could not be built",
)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[Any]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if not os.environ.get("CI") or not report.skipped:
        return
    reason = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
    if any(phrase in reason.lower() for phrase in HOST_REQUIREMENTS):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI for want of the host it needs: {reason}"
