"""Shared fixtures: Azurite (tests/fixtures/storage.py) and the ARM emulator (tests/fixtures/arm.py), one of
each per pytest-xdist worker (session scope is per worker); and the order tests are handed out in."""

from __future__ import annotations

import pytest

pytest_plugins = ["tests.fixtures.storage", "tests.fixtures.arm"]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long scenarios (marked slow) first: under pytest-xdist they start at once, side by side, while the
    short tests fill the other workers, instead of one of them ending the run alone."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
