"""Fixtures for the HTTP API tests: the emulator seeded with `http_topology`, a Runtime installed for the
handlers, and an `ApiClient` that calls the registered functions."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from emulator import Emulator
from shared.app.runtime import Runtime, set_runtime
from shared.azure.retry import RetryStats
from tests.api.helpers import ApiClient, http_topology, runtime_env

Configure = Callable[..., Runtime]


@pytest.fixture
def configure(arm: Emulator, storage_connection_string: str, unique_name: str) -> Iterator[Configure]:
    """Install a Runtime for the handlers; keyword arguments override app settings."""

    def install(**overrides: str) -> Runtime:
        tables = {"POOLSYNC_RECONCILE_TABLE": unique_name, "POOLSYNC_DRAIN_TABLE": unique_name + "drains",
                  "POOLSYNC_REMOVALS_TABLE": unique_name + "removals"}
        env = runtime_env(arm.url, arm.ca_path, storage_connection_string, **{**tables, **overrides})
        runtime = Runtime.from_env(env, retry_stats=RetryStats())
        set_runtime(runtime)
        return runtime

    yield install
    set_runtime(None)


@pytest.fixture
def world(arm: Emulator) -> Emulator:
    arm.reset(http_topology())
    return arm


@pytest.fixture
def api(world: Emulator, configure: Configure) -> ApiClient:
    configure()
    return ApiClient()
