"""Shared test configuration.

``SPIKE_REQUIRE_PEERS=1`` (set by CI's peer step) turns a skipped ``peers`` test into a failure, so a
peer library that failed to install or import cannot hide behind a skip.
"""

import os

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if (os.environ.get("SPIKE_REQUIRE_PEERS") == "1" and report.skipped
            and item.get_closest_marker("peers") is not None):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"peers test skipped while SPIKE_REQUIRE_PEERS=1: {reason}"
