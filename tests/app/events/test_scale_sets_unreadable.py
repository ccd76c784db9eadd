"""End to end: scale sets poolsync may not read (403 AuthorizationFailed: a principal with a reader role on
some resource groups still receives the whole subscription's events). Such a set is neither present nor
gone: nothing is decided for it, its entries stay, other owners of the round proceed, and its intent waits
(entries at stake) or is consumed with an `owner_unreadable` alert (none). Through the Event Grid trigger,
the emulator over HTTPS and Azurite."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute.models import Sku, VirtualMachineScaleSetUpdate

from emulator import Emulator
from shared.app.runtime import set_runtime
from shared.core.ids import id_key
from shared.storage.intents import backoff_seconds
from tests.app.events.conftest import Stack, create_vm, facts, pool_key
from tests.app.events.helpers import runtime_env
from tests.app.events.test_scale_sets import instance_ips, ips
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, SUBNET, SUBSCRIPTION, VNET, ids, topology

pytestmark = pytest.mark.timeout(240)

OTHER_GROUP = "rg-elsewhere"
SETS_SUBNET = "sets"
SOLOS = 5
# Uniform sets web and batch, Flexible set flex, all in OTHER_GROUP; the rules select web's and flex's
# instances, not batch's
WEB, BATCH, FLEX = "web", "batch", "flex"

RULES = [
    {"name": "sets", "pool": ids.pool(POOL), "virtualNetwork": ids.vnet(VNET), "cidrs": ["10.0.1.0/24"],
     "scaleSets": ["web*", "flex*"]},
    {"name": "tagged", "pool": ids.pool(POOL), "virtualNetwork": ids.vnet(VNET), "cidrs": ["10.0.0.0/24"],
     "tags": {"poolsync": "true"}},
]


def _set_id(name: str) -> str:
    return ids.scale_set(name).replace(f"/resourceGroups/{RESOURCE_GROUP}/",
                                       f"/resourceGroups/{OTHER_GROUP}/")


def _world() -> dict:
    doc = topology(
        [{"count": SOLOS, "name": "solo-{i}", "subnet": f"{VNET}/{SUBNET}", "tags": {"poolsync": "true"}}],
        vnets=[{"name": VNET, "address_space": ["10.0.0.0/16"],
                "subnets": [{"name": SUBNET, "prefix": "10.0.0.0/24"},
                            {"name": SETS_SUBNET, "prefix": "10.0.1.0/24"}]}],
        lbs=[{"name": LB, "sku": "Standard", "pools": [{"name": POOL}]}],
    )
    doc["scale_sets"] = [{"name": name, "capacity": 2, "subnet": ids.subnet(VNET, SETS_SUBNET), "mode": mode,
                          "resource_group": OTHER_GROUP}
                         for name, mode in ((WEB, "Uniform"), (BATCH, "Uniform"), (FLEX, "Flexible"))]
    return doc


def _reader_of_own_group_only(arm: Emulator, *also: str) -> None:
    """poolsync may read its own resource group (and `also`) and write its load balancer; the sets' group
    is not readable (the test's own clients, principal `x`, make the changes)."""
    arm.configure_rbac({
        "devstack": {"read": [f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}", *also],
                     "write": [ids.lb(LB)]},
        "x": {"write": [f"/subscriptions/{SUBSCRIPTION}"]},
    })


def _scale(compute, name: str, capacity: int) -> None:
    compute.virtual_machine_scale_sets.begin_update(
        OTHER_GROUP, name, VirtualMachineScaleSetUpdate(sku=Sku(capacity=capacity))).result()


def built_stack(arm: Emulator, storage_connection_string: str) -> Iterator[Stack]:
    """The solo VMs and the instances of web and flex in the pool (built while every read was allowed)."""
    arm.reset(_world())
    built = Stack(arm, runtime_env(arm.url, arm.ca_path, storage_connection_string, RULES))
    assert [o.status for o in built.runtime.reconciler.reconcile()] == ["written"]
    built.emitted()
    arm.stats.reset()
    yield built
    set_runtime(None)


@pytest.fixture
def stack(arm: Emulator, storage_connection_string: str) -> Iterator[Stack]:
    yield from built_stack(arm, storage_connection_string)


def _web_ips(arm: Emulator) -> set[str]:
    return instance_ips(arm, _set_id(WEB))


def _selected_ips(stack: Stack) -> set[str]:
    """What the pool must hold as Azure is now: the solo VMs and the instances of web and flex."""
    solos = {stack.nic_ip(f"solo-{i}-nic") for i in range(1, SOLOS + 1)}
    return solos | _web_ips(stack.arm) | instance_ips(stack.arm, _set_id(FLEX))


def test_an_unreadable_scale_set_in_the_round_does_not_stop_a_vm_joining(stack: Stack, network, compute,
                                                                         caplog):
    assert ips(stack, POOL) == _selected_ips(stack)
    _reader_of_own_group_only(stack.arm)
    _scale(compute, BATCH, 3)  # a set with no entries anywhere: its read is refused
    create_vm(network, compute, "solo-9")

    with caplog.at_level(logging.INFO, logger="poolsync"):
        stack.deliver(*stack.emitted())  # one round: the set's read refused, the VM's allowed

    assert stack.pool(POOL)[pool_key("solo-9-nic")] == stack.nic_ip("solo-9-nic")
    assert ips(stack, POOL) == _selected_ips(stack) | {stack.nic_ip("solo-9-nic")}
    assert stack.pending_intents() == 0  # nothing of poolsync's at stake for the set: consumed
    alerts = facts(caplog, "owner_unreadable")
    assert [(a["owner"], a["has_entries"]) for a in alerts] == [(id_key(_set_id(BATCH)), False)]
    assert _set_id(BATCH).lower() in alerts[0]["reason"].lower()


def test_a_scale_in_of_an_unreadable_set_waits_and_the_sweep_applies_it_once_readable(
        stack: Stack, compute, caplog, monkeypatch):
    before = ips(stack, POOL)
    _reader_of_own_group_only(stack.arm)
    _scale(compute, WEB, 1)
    events = stack.emitted()

    with caplog.at_level(logging.INFO, logger="poolsync"):
        stack.deliver(*events)

    assert ips(stack, POOL) == before  # its entries stay: poolsync cannot tell which instances went
    (waiting,) = stack.service.intents.pending(SUBSCRIPTION, due_only=False)
    assert waiting.attempts == 1 and id_key(waiting.subject) == id_key(_set_id(WEB))
    (row,) = stack.service.intents.table.list_entities()
    assert _set_id(WEB).lower() in row["DeferredBecause"].lower()
    assert [(a["owner"], a["has_entries"]) for a in facts(caplog, "owner_unreadable")] == \
        [(id_key(_set_id(WEB)), True)]

    stack.arm.configure_rbac(None)  # the role assignment is fixed
    later = datetime.now(UTC) + timedelta(seconds=backoff_seconds(1) + 1)
    monkeypatch.setattr(stack.service.intents, "_clock", lambda: later)  # the back-off has passed
    stack.service.sweep()

    assert ips(stack, POOL) == _selected_ips(stack) and len(_web_ips(stack.arm)) == 1
    assert stack.pending_intents() == 0


def test_the_full_reconcile_keeps_the_entries_of_a_set_it_may_not_read(stack: Stack):
    before = ips(stack, POOL)  # web's and flex's 4 instances of 9 managed entries: within the guard's share
    # web: not in the list of sets, its GET refused; flex: listed, but its VMs and NICs filtered out
    _reader_of_own_group_only(stack.arm, _set_id(FLEX))

    outcomes = stack.runtime.reconciler.reconcile()

    assert [o.status for o in outcomes] == ["unchanged"]
    assert ips(stack, POOL) == before


def test_a_scale_set_read_failing_past_the_retries_fails_the_round_and_keeps_its_intent(stack: Stack,
                                                                                       compute):
    before = ips(stack, POOL)
    _scale(compute, WEB, 1)
    events = stack.emitted()
    stack.arm.faults.add("503", method="GET", resource_type="virtualMachineScaleSets/virtualMachines")
    short_retries = {"POOLSYNC_RETRY_DEADLINE": "2", "POOLSYNC_RETRY_MAX_ATTEMPTS": "3"}
    stack = Stack(stack.arm, {**stack.env, **short_retries})

    with pytest.raises(HttpResponseError) as failed:  # transient, not "unreadable": the round fails
        stack.deliver(*events)

    assert failed.value.status_code == 503
    assert ips(stack, POOL) == before and stack.pending_intents() == 1
    stack.arm.faults.clear()
    stack.service.sweep()  # not deferred: the next flush retries it at once
    assert ips(stack, POOL) == _selected_ips(stack) and stack.pending_intents() == 0


def test_a_flexible_set_whose_lists_rbac_filters_is_not_taken_for_scaled_in(stack: Stack, compute, caplog):
    before = ips(stack, POOL)
    _reader_of_own_group_only(stack.arm, _set_id(FLEX))  # the set itself, not its VMs and NICs
    _scale(compute, FLEX, 1)
    events = stack.emitted()

    with caplog.at_level(logging.INFO, logger="poolsync"):
        stack.deliver(*events)  # the set's lists are filtered silently: they show no instance at all

    assert ips(stack, POOL) == before  # neither instance is confirmed gone by a list that hides them
    (waiting,) = stack.service.intents.pending(SUBSCRIPTION, due_only=False)
    assert id_key(waiting.subject) == id_key(_set_id(FLEX))
    assert [(a["owner"], a["has_entries"]) for a in facts(caplog, "owner_unreadable")] == \
        [(id_key(_set_id(FLEX)), True)]
