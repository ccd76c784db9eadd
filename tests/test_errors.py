"""poolsync's errors share one root by kind, and still are what their callers catch today."""

from __future__ import annotations

import pytest

from shared.api.operations import ApiError
from shared.app.flusher import FlushFailed
from shared.app.reconciler import UnmanagedPool
from shared.azure.pool_writer import LoadBalancerBusy
from shared.core.events import MalformedEvent
from shared.core.guard import GuardRefused
from shared.core.ids import InvalidResourceId
from shared.core.plan import PlanInputError
from shared.core.rules import RulesError
from shared.errors import AzureFailure, ConfigurationError, GuardError, InputError, LeaseError, PoolsyncError
from shared.storage.account import StorageNotConfigured
from shared.storage.intents import LeaseLost


@pytest.mark.parametrize(("error", "kind", "still_caught_as"), [
    (RulesError, ConfigurationError, ValueError),
    (StorageNotConfigured, ConfigurationError, RuntimeError),
    (InvalidResourceId, InputError, ValueError),
    (PlanInputError, InputError, ValueError),
    (MalformedEvent, InputError, ValueError),
    (FlushFailed, AzureFailure, RuntimeError),
    (GuardRefused, GuardError, Exception),
    (UnmanagedPool, GuardError, PermissionError),
    (LeaseLost, LeaseError, RuntimeError),
    (LoadBalancerBusy, LeaseError, RuntimeError),
])
def test_each_error_has_its_kind_under_one_root_and_keeps_its_old_base(error, kind, still_caught_as):
    assert issubclass(error, kind)
    assert issubclass(kind, PoolsyncError)
    assert issubclass(error, still_caught_as)


def test_api_errors_are_poolsync_errors():
    assert issubclass(ApiError, PoolsyncError)
