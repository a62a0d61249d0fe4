"""Fault scenarios kill and restart servers and measure recovery: under ``make test``'s
parallel run (pytest-xdist, ``--dist loadgroup``) they share one worker, one after another,
so two of them never compete for the machine's two cores."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/faults/test_sentinel.py" in item.nodeid:  # mostly waiting on failovers: beside the others
            item.add_marker(pytest.mark.xdist_group("sentinel"))
        elif "tests/faults/" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("faults"))
