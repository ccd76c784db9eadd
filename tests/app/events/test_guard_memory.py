"""End to end, through the trigger functions: what the guard and drains remember beyond one round.

- A bad rules edit un-selects most of a pool: the full reconcile holds the removals, and routine VM events
  delivered one round at a time must not remove them slice by slice (POOLSYNC_GUARD_WINDOW).
- A drained VM that leaves its pool and comes back (same NIC incarnation) comes back drained, until an
  operator enables it or the drain is older than POOLSYNC_DRAIN_MAX_AGE.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.functions.timer import TimerRequest
from azure.mgmt.compute import ComputeManagementClient

from emulator import Emulator
from handlers.audit_timer import audit_timer
from handlers.events import full_reconcile_timer
from shared.app.runtime import set_runtime
from shared.storage.report_store import DrainLedger
from tests.api.helpers import ApiClient, pool_path
from tests.app.events.conftest import Stack, facts, member_key, pool_key
from tests.app.events.helpers import rules_json, runtime_env
from tests.fixtures.arm import POOL, RESOURCE_GROUP, VNET, ids, topology

pytestmark = pytest.mark.timeout(300)

FULL_RECONCILE = full_reconcile_timer.build().get_user_function()
AUDIT = audit_timer.build().get_user_function()
VMS = [f"web-{i}" for i in range(1, 11)]
TAGGED = {"name": "tagged", "pool": ids.pool(POOL), "virtualNetwork": ids.vnet(VNET),
          "cidrs": ["10.0.0.0/24"], "tags": {"poolsync": "true"}}
BAD_EDIT = {**TAGGED, "vmNames": ["web-1"]}  # meant "web-*": un-selects 9 of the 10 VMs


def _touch(compute: ComputeManagementClient, vm: str, tag: str, value: str) -> None:
    """A routine VM update (one write event): set one tag."""
    current = compute.virtual_machines.get(RESOURCE_GROUP, vm)
    current.tags = {**(current.tags or {}), tag: value}
    compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, vm, current).result()


def _entry(stack: Stack, nic: str) -> dict | None:
    raw = stack.arm.world.get_pool(ids.pool(POOL))
    found = [a for a in raw["properties"].get("loadBalancerBackendAddresses", [])
             if member_key(a["name"]) == pool_key(nic)]
    return found[0] if found else None


def _admin(stack: Stack, nic: str) -> str:
    entry = _entry(stack, nic)
    assert entry is not None, f"{nic} is not in {POOL}"
    return entry["properties"].get("adminState", "None")


@pytest.fixture
def ten(arm: Emulator, storage_connection_string: str) -> Iterator[tuple[Stack, dict[str, str]]]:
    """10 tagged VMs, all in the pool, as after the first full reconcile; and the app settings."""
    arm.reset(topology(10))
    env = runtime_env(arm.url, arm.ca_path, storage_connection_string, [TAGGED])
    stack = Stack(arm, env)
    assert [o.status for o in stack.runtime.reconciler.reconcile()] == ["written"]
    assert len(stack.pool()) == 10
    stack.emitted()
    yield stack, env
    set_runtime(None)


def test_a_bad_rules_edit_is_not_carried_out_by_routine_events_one_round_at_a_time(ten, compute, caplog):
    before, env = ten
    stack = Stack(before.arm, {**env, "POOLSYNC_RULES": rules_json([BAD_EDIT])})  # the edit is deployed

    with caplog.at_level(logging.INFO, logger="poolsync"):
        FULL_RECONCILE(TimerRequest(past_due=False))  # the hourly anti-entropy sees 9 of 10 go: held
        assert len(stack.pool()) == 10
        for vm in VMS[1:]:  # then each un-selected VM has a routine update, each event its own round
            _touch(compute, vm, "patched", "2026-12")
            stack.deliver(*stack.emitted())

    pool = stack.pool()
    assert len(pool) >= 5, f"the guard let events remove {10 - len(pool)} of 10: {sorted(pool)}"
    assert len(pool) < 10  # removals within the allowed share still go ahead
    assert pool_key("web-1-nic") in pool
    refused = [f for f in facts(caplog, "guard_refused") if f["pool"] == ids.pool(POOL)]
    assert refused and "POOLSYNC_GUARD_WINDOW" in refused[-1]["reason"]
    assert facts(caplog, "intents_deferred")
    assert stack.pending_intents() == len(pool) - 1  # the held VMs' intents wait, they are not consumed

    api = ApiClient()
    pools = api.call("GET", "/api/pools").body["pools"]
    (listed,) = [p for p in pools if p["id"].lower() == ids.pool(POOL).lower()]
    assert listed["windowRemovals"] == 10 - len(pool)
    assert listed["heldRemovals"] >= 1  # from the last round, which the guard refused
    planned = api.call("POST", "/api/reconcile", {"pool": ids.pool(POOL), "dryRun": True})
    assert planned.status == 422 and planned.error["code"] == "GuardRefused"
    diff = planned.body["pools"][0]["plan"]["diff"]
    assert len([line for line in diff if "removal held" in line]) == len(pool) - 1
    assert "POOLSYNC_GUARD_WINDOW" in planned.error["message"]

    # A VM that is really gone (a direct read says 404) leaves at once: confirmed removals never count.
    held_vm = next(vm for vm in VMS[1:] if pool_key(f"{vm}-nic") in pool)
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, held_vm).result()
    stack.deliver(*stack.emitted())
    assert pool_key(f"{held_vm}-nic") not in stack.pool()
    assert len(stack.pool()) == len(pool) - 1


# -- drains --------------------------------------------------------------------------------------------


def _drain(api: ApiClient, stack: Stack, nic: str, action: str = "drain") -> str:
    answer = api.call("POST", f"{pool_path()}/addresses/{stack.nic_ip(nic)}/{action}")
    assert answer.status == 200, answer.body
    return answer.body["addresses"][0]["name"]


def _leave_and_rejoin(stack: Stack, compute: ComputeManagementClient, vm: str) -> None:
    """Tag the VM out of the pool's rule, then back in, each change delivered as its event."""
    _touch(compute, vm, "poolsync", "paused")
    stack.deliver(*stack.emitted())
    assert _entry(stack, f"{vm}-nic") is None
    _touch(compute, vm, "poolsync", "true")
    stack.deliver(*stack.emitted())


def test_a_drained_vm_that_leaves_and_rejoins_its_pool_stays_drained_until_enabled(stack: Stack, compute):
    api = ApiClient()
    name = _drain(api, stack, "web-1-nic")

    _leave_and_rejoin(stack, compute, "web-1")

    entry = _entry(stack, "web-1-nic")
    assert entry is not None and entry["name"] == name  # the same identity (same NIC incarnation)...
    assert _admin(stack, "web-1-nic") == "Down"  # ...keeps its drain: it takes no traffic
    assert stack.pending_intents() == 0

    _drain(api, stack, "web-1-nic", "enable")  # the operator ends the drain
    _leave_and_rejoin(stack, compute, "web-1")
    assert _admin(stack, "web-1-nic") == "None"


def test_a_drain_older_than_the_maximum_age_does_not_carry_over(stack: Stack, compute):
    api = ApiClient()
    name = _drain(api, stack, "web-2-nic")
    ledger = DrainLedger(stack.runtime.storage, stack.env["POOLSYNC_DRAIN_TABLE"])
    ledger.record_drain(ids.pool(POOL), name, datetime.now(UTC) - timedelta(days=8))  # 8 days pass (max P7D)

    _leave_and_rejoin(stack, compute, "web-2")

    assert _admin(stack, "web-2-nic") == "None"


def test_a_drain_of_a_vm_that_left_before_the_audit_survives_the_audit(stack: Stack, compute):
    api = ApiClient()
    _drain(api, stack, "web-3-nic")
    _touch(compute, "web-3", "poolsync", "paused")
    stack.deliver(*stack.emitted())
    assert _entry(stack, "web-3-nic") is None

    AUDIT(TimerRequest(past_due=False))  # the daily audit runs while the VM is out of the pool

    _touch(compute, "web-3", "poolsync", "true")
    stack.deliver(*stack.emitted())
    assert _admin(stack, "web-3-nic") == "Down"
