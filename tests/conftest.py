"""Shared fixtures: Azurite (tests/fixtures/storage.py) and the ARM emulator (tests/fixtures/arm.py), one of
each per pytest-xdist worker (session scope is per worker); and the order tests are handed out in."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.storage", "tests.fixtures.arm"]


# The longest of the slow scenarios (minutes each), handed out before the other slow ones.
LONGEST = ("tests/reliability/test_stateful_pipeline.py", "tests/devstack/test_make_bench.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long scenarios (marked slow) first, the longest of them before the rest: under pytest-xdist
    (`make test` hands out one test at a time) they start at once, side by side, while the short tests
    fill the other workers, instead of one of them ending the run alone."""
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None,
                                 not item.nodeid.startswith(LONGEST)))
