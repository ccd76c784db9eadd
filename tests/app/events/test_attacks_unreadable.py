"""End to end: attacks on the handling of scale sets poolsync may not fully read, and on the full
reconcile's rebuild of the member index. Through the Event Grid trigger, the emulator over HTTPS and
Azurite (world and fixture of test_scale_sets_unreadable.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from emulator import Emulator
from shared.app.flusher import FlushFailed
from shared.app.owner_round import OWNER_READ_LIMIT
from shared.core.ids import id_key
from shared.storage.intents import backoff_seconds
from tests.app.events.conftest import Stack, create_vm, facts
from tests.app.events.helpers import WRITE, eventgrid_event
from tests.app.events.test_scale_sets import instance_ips, ips
from tests.app.events.test_scale_sets_unreadable import (
    FLEX,
    OTHER_GROUP,
    SOLOS,
    _reader_of_own_group_only,
    _set_id,
    built_stack,
)
from tests.fixtures.arm import LOCATION, POOL, RESOURCE_GROUP, SUBNET, SUBSCRIPTION, VNET, ids

pytestmark = pytest.mark.timeout(240)

# The sets' Compute resources (the sets, their instances, Uniform NICs), not the Network RP's NICs
OTHER_COMPUTE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{OTHER_GROUP}/providers/Microsoft.Compute"


@pytest.fixture
def stack(arm: Emulator, storage_connection_string: str) -> Iterator[Stack]:
    yield from built_stack(arm, storage_connection_string)


def test_the_full_reconcile_keeps_the_entries_of_flexible_instances_whose_nics_it_may_not_list(stack: Stack):
    before = ips(stack, POOL)
    flex_ips = instance_ips(stack.arm, _set_id(FLEX))
    assert flex_ips <= before
    # flex's VMs are listed (all of its capacity), their NICs filtered out of the NIC list
    _reader_of_own_group_only(stack.arm, OTHER_COMPUTE)

    outcomes = stack.runtime.reconciler.reconcile()

    assert ips(stack, POOL) == before  # an attached NIC exists: its absence from a list proves nothing
    assert [o.status for o in outcomes] == ["unchanged"]


def _vm_on_nic_of_other_group(network, compute, name: str,
                              vm_group: str = RESOURCE_GROUP) -> tuple[str, str, str]:
    """A tagged VM (of `vm_group`) on a NIC of the sets' group, deleted with the VM; their ids and its IP."""
    nic = network.network_interfaces.begin_create_or_update(OTHER_GROUP, f"{name}-nic", {
        "location": LOCATION,
        "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
            "subnet": {"id": ids.subnet(VNET, SUBNET)}, "privateIPAllocationMethod": "Dynamic"}}]},
    }).result()
    nics = [{"id": nic.id, "properties": {"primary": True, "deleteOption": "Delete"}}]
    vm = compute.virtual_machines.begin_create_or_update(vm_group, name, {
        "location": LOCATION, "tags": {"poolsync": "true"},
        "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"},
                       "networkProfile": {"networkInterfaces": nics}},
    }).result()
    return str(vm.id), str(nic.id), str(nic.ip_configurations[0].private_ip_address)


def test_the_full_reconcile_keeps_the_entry_of_a_vm_whose_nic_it_may_not_list(stack: Stack, network, compute):
    *_, address = _vm_on_nic_of_other_group(network, compute, "solo-9")
    stack.deliver(*stack.emitted())
    before = ips(stack, POOL)
    assert address in before
    _reader_of_own_group_only(stack.arm)  # the VM is listed, its NIC (another group's) is not

    outcomes = stack.runtime.reconciler.reconcile()

    assert ips(stack, POOL) == before  # the listed VM still uses the NIC: it exists
    assert [o.status for o in outcomes] == ["unchanged"]


def test_a_burst_read_by_lists_keeps_the_entry_of_a_vm_whose_nic_it_may_not_list(stack: Stack, network,
                                                                                  compute, monkeypatch):
    *_, address = _vm_on_nic_of_other_group(network, compute, "solo-9")
    for i in range(10, 10 + OWNER_READ_LIMIT // 2):
        create_vm(network, compute, f"solo-{i}")
    stack.deliver(*stack.emitted())
    before = ips(stack, POOL)
    assert address in before
    _reader_of_own_group_only(stack.arm)
    burst = [eventgrid_event(WRITE, vm.id) for vm in compute.virtual_machines.list(RESOURCE_GROUP)
             if vm.name.startswith("solo-")]
    assert len(burst) > OWNER_READ_LIMIT // 2  # read by one list read of the subscription

    stack.deliver(*burst)

    assert ips(stack, POOL) == before  # the listed VM still uses the NIC the list leaves out: it exists
    (waiting,) = stack.service.intents.pending(SUBSCRIPTION, due_only=False)  # undecided, with entries
    assert waiting.subject.lower().endswith("/virtualmachines/solo-9")

    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "solo-9").result()
    stack.emitted()  # its delete events are lost: the waiting intent alone must bring the pool there
    stack.arm.configure_rbac(None)
    later = datetime.now(UTC) + timedelta(seconds=backoff_seconds(1) + 1)
    monkeypatch.setattr(stack.service.intents, "_clock", lambda: later)
    stack.service.sweep()

    assert ips(stack, POOL) == before - {address}
    assert stack.pending_intents() == 0


def _instance_ip(arm: Emulator, vm: dict) -> str:
    nic = arm.world.get_nic(vm["properties"]["networkProfile"]["networkInterfaces"][0]["id"])
    return str(nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"])


def test_a_flexible_instance_deleted_leaves_at_once_though_its_sets_read_is_refused_in_the_same_round(
        stack: Stack, compute):
    before = ips(stack, POOL)
    gone, kept = stack.arm.world.list_scale_set_instances(_set_id(FLEX)) or []
    gone_nic = gone["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
    gone_ip, kept_ip = _instance_ip(stack.arm, gone), _instance_ip(stack.arm, kept)
    # poolsync may read that instance and its NIC, not the set nor the set's other instance
    _reader_of_own_group_only(stack.arm, gone["id"], gone_nic)
    compute.virtual_machines.begin_delete(OTHER_GROUP, gone["name"]).result()
    events = [*stack.emitted(), eventgrid_event(WRITE, _set_id(FLEX))]  # the set's write too (autoscale)

    stack.deliver(*events)  # one round: the VM's delete and the set's write

    assert ips(stack, POOL) == before - {gone_ip}  # read gone by its own GET: removed
    assert kept_ip in ips(stack, POOL)  # the set's other instance: neither listed nor gone, left as it is
    (waiting,) = stack.service.intents.pending(SUBSCRIPTION, due_only=False)  # the set, for that instance
    assert waiting.subject.lower() == _set_id(FLEX).lower()


def test_an_index_row_a_full_reconcile_kept_for_a_deferred_intent_does_not_make_an_unreadable_vm_wait(
        stack: Stack, network, compute, caplog, monkeypatch):
    before = ips(stack, POOL)
    vm_id, nic_id, _ = _vm_on_nic_of_other_group(network, compute, "solo-9", vm_group=OTHER_GROUP)
    created = stack.emitted()
    stack.arm.faults.add("500", method="PUT", resource_type="backendAddressPools")
    short_retries = {"POOLSYNC_RETRY_DEADLINE": "2", "POOLSYNC_RETRY_MAX_ATTEMPTS": "2"}
    failing = Stack(stack.arm, {**stack.env, **short_retries})
    with pytest.raises(FlushFailed):
        failing.deliver(*created)  # the round wrote its index rows; its PUT failed: the intent is deferred
    stack.arm.faults.clear()
    compute.virtual_machines.begin_delete(OTHER_GROUP, "solo-9").result()  # with its NIC
    deleted = stack.emitted()
    assert [o.status for o in stack.runtime.reconciler.reconcile()] == ["unchanged"]
    assert ips(stack, POOL) == before  # solo-9 never had an entry
    _reader_of_own_group_only(stack.arm)  # from now on poolsync may not read solo-9's group

    with caplog.at_level(logging.INFO, logger="poolsync"):
        stack.deliver(*deleted)
        later = datetime.now(UTC) + timedelta(seconds=backoff_seconds(1) + 1)
        monkeypatch.setattr(stack.service.intents, "_clock", lambda: later)  # the creation's back-off passed
        stack.service.sweep()

    assert ips(stack, POOL) == before
    assert stack.pending_intents() == 0  # nothing of poolsync's at stake: consumed, with an alert
    alerts = facts(caplog, "owner_unreadable")
    assert {a["owner"] for a in alerts} == {id_key(vm_id), id_key(nic_id)}
    assert not any(a["has_entries"] for a in alerts)


def test_a_full_reconcile_removes_every_deleted_vm_past_the_guard_and_keeps_the_sets_it_may_not_read(
        stack: Stack, compute):
    solos = {stack.nic_ip(f"solo-{i}-nic") for i in range(1, SOLOS + 1)}
    before = ips(stack, POOL)
    _reader_of_own_group_only(stack.arm)  # web and flex: their reads refused
    for i in range(1, SOLOS + 1):  # more than the guard's share of the pool; their events lost
        compute.virtual_machines.begin_delete(RESOURCE_GROUP, f"solo-{i}").result()

    outcomes = stack.runtime.reconciler.reconcile()

    # the guard holds the removals a list read alone suggests; direct reads confirm them; the sets' stay
    assert ips(stack, POOL) == before - solos
    assert [o.status for o in outcomes] == ["written"]
