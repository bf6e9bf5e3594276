"""Fixtures shared by the netplugins integration tests (tests/integration/test_netplugins_*).

Only tests that request a fixture by name get it, so the other packages' tests in this
directory are unaffected. Helpers that are not fixtures stay in ``test_netplugins_support``.
"""

from __future__ import annotations

import pytest

from netplugins.install import install


@pytest.fixture(scope="module")
def ours(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Our plugins installed into a fresh directory, once per test module that asks."""
    directory = tmp_path_factory.mktemp("netplugins-bin")
    install(str(directory))
    return str(directory)
