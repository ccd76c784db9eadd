"""The timer trigger: registered as `audit_timer` on the configured schedule, and it runs the audit."""

from __future__ import annotations

import importlib
import logging

import azure.functions as func
import pytest
from azure.functions.timer import TimerRequest
from azure.storage.blob import BlobServiceClient

import handlers.audit_timer
from emulator import Emulator
from shared.app.runtime import set_runtime
from tests.audit.helpers import make_runtime, rule
from tests.fixtures.arm import POOL, ids, topology


def timer_function(module) -> func.FunctionBuilder:
    app = func.FunctionApp()
    app.register_functions(module.bp)
    (function,) = app.get_functions()
    return function


def test_registered_daily_by_default_and_on_the_configured_schedule(monkeypatch: pytest.MonkeyPatch):
    function = timer_function(handlers.audit_timer)
    (binding,) = function.get_bindings()
    assert (function.get_function_name(), binding.type) == ("audit_timer", "timerTrigger")
    assert binding.get_dict_repr()["schedule"] == "0 0 3 * * *"

    monkeypatch.setenv("POOLSYNC_AUDIT_SCHEDULE", "0 */30 * * * *")
    try:
        reloaded = importlib.reload(handlers.audit_timer)
        (binding,) = timer_function(reloaded).get_bindings()
        assert binding.get_dict_repr()["schedule"] == "0 */30 * * * *"
    finally:
        monkeypatch.delenv("POOLSYNC_AUDIT_SCHEDULE")
        importlib.reload(handlers.audit_timer)


def test_timer_runs_the_audit_stores_the_report_and_logs_a_summary(
    arm: Emulator, storage_connection_string: str, unique_name: str, caplog: pytest.LogCaptureFixture
):
    arm.reset(topology(2))
    arm.world.add_pool_address(ids.pool(), "by-hand", "10.0.0.200", ids.vnet())
    rules = {"version": 1, "rules": [rule("web", f"lb-app/{POOL}", ["10.0.0.0/24"])]}
    runtime = make_runtime(
        arm,
        storage_connection_string,
        rules,
        POOLSYNC_AUDIT_CONTAINER=unique_name,
        POOLSYNC_DRAIN_TABLE=unique_name,
    )
    set_runtime(runtime)
    try:
        with caplog.at_level(logging.INFO, logger="poolsync.audit"):
            timer_function(handlers.audit_timer).get_user_function()(TimerRequest(past_due=True))
    finally:
        set_runtime(None)

    container = BlobServiceClient.from_connection_string(storage_connection_string).get_container_client(
        unique_name
    )
    names = sorted(blob.name for blob in container.list_blobs())
    assert len(names) == 2 and names[0].endswith(".html") and names[1].endswith(".json")
    (summary,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("audit 20")]
    assert "(read-only): 1 pools, 3 findings" in summary
    assert "by code: missing_address=2, unmanaged_orphan=1" in summary
    # Read-only by default: the pool still holds only the hand-added entry.
    assert [
        a["name"] for a in arm.world.get_pool(ids.pool())["properties"]["loadBalancerBackendAddresses"]
    ] == ["by-hand"]
