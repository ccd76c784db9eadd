"""Shared fixtures: Azurite (tests/fixtures/storage.py) and the ARM emulator (tests/fixtures/arm.py)."""

pytest_plugins = ["tests.fixtures.storage", "tests.fixtures.arm"]
