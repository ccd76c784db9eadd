"""Safety invariants for scale sets and for the flush's own queue trigger, under orders, faults and mixes the
other tests do not try, end to end through the trigger functions (emulator over HTTPS, Azurite): an IP a
live Uniform instance gave up taken by a VM whose event comes first, a Flexible instance on a NIC of another
resource group, a list read failing mid-page, whole sets deleted, and pipelined flush rounds working on the
same owner. Each ends with the pools holding what Azure says - or the intent still pending."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest
from azure.functions.queue import QueueMessage
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import VirtualMachineScaleSetVMInstanceRequiredIDs
from azure.mgmt.network.models import LoadBalancerBackendAddress, SubResource
from azure.storage.blob import BlobLeaseClient

from emulator import Emulator
from handlers.events import flush_requests, full_reconcile_timer, intents_sweep_timer
from shared.app.flusher import FlushFailed
from shared.app.runtime import set_runtime
from shared.core.changes import KIND_VM, Owner
from shared.core.events import parse_event
from shared.storage.flush_requests import request_message
from shared.storage.intents import scope_partition_key
from tests.app.events.conftest import ALL_POOL, OTHER_SUBNET, Stack, create_vm, facts, pool_key
from tests.app.events.helpers import WRITE, eventgrid_event, runtime_env
from tests.app.events.test_attacks import _set_tags, _static_vm
from tests.app.events.test_scale_sets import FLEXIBLE, UNIFORM, instance_ips, ips, scale
from tests.fixtures.arm import LB, LOCATION, POOL, RESOURCE_GROUP, SUBNET, SUBSCRIPTION, VNET, ids, topology
from tests.storage.helpers import locks_container

pytestmark = pytest.mark.timeout(240)

OTHER_GROUP = "rg-other"
TAGGED = {"poolsync": "true"}
# pool-app: tagged VMs, the Uniform set's instances among them (they carry the set's tags); pool-all: the
# Flexible set's instances. Both over the whole VNet (the set's model may move its instances).
RULES = [
    {"name": "tagged", "pool": ids.pool(POOL), "virtualNetwork": ids.vnet(VNET), "cidrs": ["10.0.0.0/16"],
     "tags": TAGGED},
    {"name": "flexible", "pool": ids.pool(ALL_POOL), "virtualNetwork": ids.vnet(VNET),
     "cidrs": ["10.0.0.0/16"], "scaleSets": [ids.scale_set(FLEXIBLE)]},
]


TINY_SUBNET = "tiny"  # a /29: three usable addresses, so a freed one is the next one handed out


def world(uniform_subnet: str = SUBNET) -> dict:
    doc = topology(
        [{"name": "solo-1", "subnet": f"{VNET}/{SUBNET}", "tags": TAGGED}],
        vnets=[{"name": VNET, "address_space": ["10.0.0.0/16"],
                "subnets": [{"name": SUBNET, "prefix": "10.0.0.0/24"},
                            {"name": OTHER_SUBNET, "prefix": "10.0.1.0/24"},
                            {"name": TINY_SUBNET, "prefix": "10.0.2.0/29"}]}],
        lbs=[{"name": LB, "sku": "Standard", "pools": [{"name": POOL}, {"name": ALL_POOL}]}],
    )
    doc["scale_sets"] = [
        {"name": UNIFORM, "capacity": 3, "subnet": f"{VNET}/{uniform_subnet}", "tags": TAGGED},
        {"name": FLEXIBLE, "mode": "Flexible", "capacity": 2, "subnet": f"{VNET}/{SUBNET}"},
    ]
    return doc


def _stack(arm: Emulator, storage_connection_string: str, doc: dict, **env: str) -> Stack:
    arm.reset(doc)
    built = Stack(arm, runtime_env(arm.url, arm.ca_path, storage_connection_string, RULES, **env))
    assert [o.status for o in built.runtime.reconciler.reconcile()] == ["written", "written"]
    built.emitted()
    arm.stats.reset()
    return built


@pytest.fixture
def sets(arm: Emulator, storage_connection_string: str) -> Iterator[Stack]:
    yield _stack(arm, storage_connection_string, world())
    set_runtime(None)


@pytest.fixture
def tiny(arm: Emulator, storage_connection_string: str) -> Iterator[Stack]:
    """The Uniform set fills a /29: a scale-out after a scale-in gets the freed address."""
    yield _stack(arm, storage_connection_string, world(TINY_SUBNET))
    set_runtime(None)


def _wait_until(condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _flush_in_background(stack: Stack) -> tuple[threading.Thread, list[FlushFailed]]:
    """The queued request's flush, running; the FlushFailed it raised lands in the list."""
    failures: list[FlushFailed] = []

    def flush() -> None:
        try:
            stack.service.flush(SUBSCRIPTION)
        except FlushFailed as failed:
            failures.append(failed)

    running = threading.Thread(target=flush)
    running.start()
    return running, failures


def _uniform_nic(arm: Emulator, instance: str) -> dict:
    (nic,) = [n for n in arm.world.list_scale_set_nics(ids.scale_set(UNIFORM)) or []
              if f"/virtualmachines/{instance}/" in n["id"].lower()]
    return nic


def _ip_of(nic: dict) -> str:
    return nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]


def _move_uniform_instance_to(compute: ComputeManagementClient, subnet: str, instance: str) -> None:
    """The set's model takes another subnet; a manual upgrade of one instance rebuilds its NIC there (same
    NIC, same resourceGuid, a new IP: the old one is free)."""
    model = compute.virtual_machine_scale_sets.get(RESOURCE_GROUP, UNIFORM)
    for config in model.virtual_machine_profile.network_profile.network_interface_configurations:
        for ipconfig in config.ip_configurations:
            ipconfig.subnet.id = ids.subnet(VNET, subnet)
    compute.virtual_machine_scale_sets.begin_create_or_update(RESOURCE_GROUP, UNIFORM, model).result()
    compute.virtual_machine_scale_sets.begin_update_instances(
        RESOURCE_GROUP, UNIFORM, VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=[instance])
    ).result()


# -- scale sets ------------------------------------------------------------------------------------------


def test_a_live_uniform_instance_pulled_in_by_a_conflict_keeps_its_entry_at_its_new_ip(
        sets: Stack, arm: Emulator, network, compute):
    freed = _ip_of(_uniform_nic(arm, "1"))
    _move_uniform_instance_to(compute, OTHER_SUBNET, "1")
    sets.emitted()  # the set's write and upgrade events are late: not delivered here
    assert _ip_of(_uniform_nic(arm, "1")) != freed
    _static_vm(network, compute, "solo-2", freed, TAGGED)

    sets.deliver(*sets.emitted())  # solo-2 wants the IP instance 1's entry still holds: instance 1 is read

    expected = instance_ips(arm, UNIFORM) | {sets.nic_ip("solo-1-nic"), freed}
    assert ips(sets, POOL) == expected  # instance 1 moved with its NIC, never dropped as "not selected"
    assert sets.pending_intents() == 0


def test_a_flexible_instance_on_a_nic_of_another_resource_group_stays_through_its_sets_events(
        sets: Stack, arm: Emulator, network, compute):
    (name, _) = [vm["name"] for vm in arm.world.list_scale_set_instances(ids.scale_set(FLEXIBLE)) or []]
    nic = network.network_interfaces.begin_create_or_update(OTHER_GROUP, f"{name}-nic2", {
        "location": LOCATION,
        "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
            "subnet": {"id": ids.subnet(VNET, SUBNET)}, "privateIPAllocationMethod": "Dynamic"}}]},
    }).result()
    vm = compute.virtual_machines.get(RESOURCE_GROUP, name)
    vm.network_profile.network_interfaces = [{"id": nic.id, "primary": True, "delete_option": "Delete"}]
    compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, name, vm).result()
    sets.deliver(*sets.emitted())
    moved = nic.ip_configurations[0].private_ip_address
    assert moved in ips(sets, ALL_POOL)

    scale(compute, FLEXIBLE, 3)  # any later event of the set: its lists are read again
    sets.deliver(*sets.emitted())

    assert ips(sets, ALL_POOL) == instance_ips(arm, FLEXIBLE) and moved in ips(sets, ALL_POOL)
    assert sets.pending_intents() == 0


def test_a_scale_in_then_a_scale_out_reusing_the_freed_ip_delivered_late_twice_and_reversed(
        tiny: Stack, arm: Emulator, compute):
    freed = _ip_of(_uniform_nic(arm, "2"))
    scale(compute, UNIFORM, 2)
    scale_in = tiny.emitted()
    scale(compute, UNIFORM, 3)
    scale_out = tiny.emitted()
    assert _ip_of(_uniform_nic(arm, "3")) == freed  # instance 3 has instance 2's old address

    tiny.deliver(*scale_out, *scale_in, *scale_out)

    assert ips(tiny, POOL) == instance_ips(arm, UNIFORM) | {tiny.nic_ip("solo-1-nic")}
    names = {n for n in tiny.pool(POOL) if "-web-" in n}
    assert names == {f"psync-web-{i}-web-nic-ipconfig1" for i in (0, 1, 3)}  # the entry is instance 3's
    assert tiny.pending_intents() == 0


def test_a_deleted_set_whose_freed_ip_a_vm_takes_before_the_sets_event_comes(
        sets: Stack, arm: Emulator, network, compute):
    freed = _ip_of(_uniform_nic(arm, "0"))
    compute.virtual_machine_scale_sets.begin_delete(RESOURCE_GROUP, UNIFORM).result()
    deleted = sets.emitted()
    _static_vm(network, compute, "solo-2", freed, TAGGED)

    sets.deliver(*sets.emitted())  # the VM's events first: the instance holding its IP is read (gone)

    assert ips(sets, POOL) >= {freed, sets.nic_ip("solo-1-nic")}
    assert sets.pending_intents() == 0
    sets.deliver(*deleted, *deleted)  # then the set's delete, twice
    assert ips(sets, POOL) == {freed, sets.nic_ip("solo-1-nic")}
    assert ips(sets, ALL_POOL) == instance_ips(arm, FLEXIBLE)


def test_a_truncated_instance_list_never_counts_live_instances_gone(sets: Stack, arm: Emulator, compute):
    scale(compute, UNIFORM, 7)
    sets.deliver(*sets.emitted())
    arm.page_size = 2  # four pages of instances
    scale(compute, UNIFORM, 5)
    events = sets.emitted()
    pages = arm.faults.add_sequence(["pass", "429", "pass", "pass", "500", "pass", "pass", "503"],
                                    method="GET", path=f"/virtualMachineScaleSets/{UNIFORM}/virtualMachines")

    sets.deliver(*events)

    assert pages.exhausted()  # failures on the second, third and fourth page: the list was read again
    assert ips(sets, POOL) == instance_ips(arm, UNIFORM) | {sets.nic_ip("solo-1-nic")}
    assert len(instance_ips(arm, UNIFORM)) == 5
    assert sets.pending_intents() == 0


def test_a_set_untagged_out_of_the_rules_is_held_by_the_guard_with_an_alert(
        sets: Stack, arm: Emulator, compute, caplog):
    before = ips(sets, POOL)
    model = compute.virtual_machine_scale_sets.get(RESOURCE_GROUP, UNIFORM)
    model.tags = {}
    compute.virtual_machine_scale_sets.begin_create_or_update(RESOURCE_GROUP, UNIFORM, model).result()

    with caplog.at_level("INFO", logger="poolsync"):
        sets.deliver(*sets.emitted())

    assert ips(sets, POOL) == before  # three of four entries unconfirmed: beyond the share
    assert facts(caplog, "guard_refused")
    assert sets.pending_intents() == 1


def test_another_writer_changing_the_pool_during_a_scale_set_round_keeps_its_entry(
        sets: Stack, arm: Emulator, network, compute):
    scale(compute, UNIFORM, 5)
    events = sets.emitted()
    arm.faults.add("slow", method="PUT", resource_type="backendAddressPools", delay=2, times=1)
    round_thread = threading.Thread(target=sets.deliver, args=tuple(events))
    round_thread.start()
    _wait_until(lambda: arm.stats.requests("PUT", "backendAddressPools") > 0)  # poolsync's PUT is on its way
    pool = network.load_balancer_backend_address_pools.get(RESOURCE_GROUP, LB, POOL)
    pool.load_balancer_backend_addresses.append(LoadBalancerBackendAddress(
        name="manual-1", ip_address="10.0.0.250", virtual_network=SubResource(id=ids.vnet(VNET))))
    pools = network.load_balancer_backend_address_pools
    pools.begin_create_or_update(RESOURCE_GROUP, LB, POOL, pool).result()
    round_thread.join(60)

    assert arm.stats.rejections(412) >= 1  # poolsync's PUT carried the older ETag
    assert ips(sets, POOL) == instance_ips(arm, UNIFORM) | {sets.nic_ip("solo-1-nic"), "10.0.0.250"}
    assert sets.pending_intents() == 0


# -- the flush beside other writers ----------------------------------------------------------------------

FULL_RECONCILE = full_reconcile_timer.build().get_user_function()
FLUSH = flush_requests.build().get_user_function()
SWEEP = intents_sweep_timer.build().get_user_function()


def test_a_vm_added_while_a_full_reconcile_reads_keeps_its_index_row_and_leaves_on_its_delete(
        stack: Stack, arm: Emulator, network, compute):
    # The hourly full reconcile holds the write lease and reads the subscription; its scale-set list is slow.
    arm.faults.add("slow", delay=4, times=1,
                   path=f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Compute/virtualMachineScaleSets")
    hourly = threading.Thread(target=FULL_RECONCILE, args=(None,))
    hourly.start()
    _wait_until(lambda: arm.stats.requests("GET", "Microsoft.Compute/virtualMachineScaleSets") > 0)
    create_vm(network, compute, "web-9")  # after the reconcile's VM and NIC lists: it does not see web-9

    stack.deliver(*stack.emitted())  # the event round records web-9's rows, waits for the lease, adds it
    hourly.join(60)
    for pool in (POOL, ALL_POOL):
        assert pool_key("web-9-nic") in stack.pool(pool)

    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-9").result()  # its NIC goes with it
    stack.deliver(*stack.emitted())

    for pool in (POOL, ALL_POOL):
        assert pool_key("web-9-nic") not in stack.pool(pool), f"deleted VM still in {pool}"
    assert stack.pending_intents() == 0


def _record(stack: Stack, *events: dict) -> None:
    """Deliveries recorded without a flush (the queued request's flush runs elsewhere)."""
    for event in events:
        stack.service.intents.record(parse_event(event))


def test_pipelined_rounds_on_one_vm_deleted_then_recreated_leave_its_entry_and_its_index_row(
        stack: Stack, arm: Emulator, compute):
    kept_vm = compute.virtual_machines.get(RESOURCE_GROUP, "kept-1")  # deleteOption Detach: the NIC stays
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "kept-1").result()
    _record(stack, *stack.emitted())
    # Round one reads kept-1 (slowly) and removes its entry (slowly); round two reads it while that PUT runs.
    reads = arm.faults.add_sequence(["slow", "slow"], method="GET", path="/virtualMachines/kept-1", delay=2)
    arm.faults.add("slow", method="PUT", resource_type="backendAddressPools", delay=5, times=1)
    flush, _ = _flush_in_background(stack)
    _wait_until(lambda: reads._position >= 1)  # round one is reading: what arrives now is round two's
    _record(stack, eventgrid_event(WRITE, ids.vm("kept-1")))
    _wait_until(reads.exhausted)  # round two is reading, round one waits for its PUT
    kept_vm.network_profile.network_interfaces[0].delete_option = "Detach"
    compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, "kept-1", kept_vm).result()
    flush.join(60)
    stack.emitted()

    for pool in (POOL, ALL_POOL):
        assert pool_key("kept-1-nic") in stack.pool(pool)
    assert stack.pending_intents() == 0

    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "kept-1").result()
    stack.deliver(*stack.emitted())  # the row round two wrote survived round one's clean-up: it is found

    for pool in (POOL, ALL_POOL):
        assert pool_key("kept-1-nic") not in stack.pool(pool)


def test_a_round_whose_write_fails_while_the_next_one_reads_keeps_only_its_own_intents(
        stack: Stack, arm: Emulator, network, compute):
    short = Stack(arm, {**stack.env, "POOLSYNC_RETRY_MAX_ATTEMPTS": "2"})
    create_vm(network, compute, "web-8")
    _record(short, *short.emitted())
    reads = arm.faults.add_sequence(["slow"], method="GET", path="/virtualMachines/web-8", delay=2)
    arm.faults.add_sequence(["500", "500"], method="PUT", path=f"/backendAddressPools/{POOL}")
    flushing, failures = _flush_in_background(short)
    _wait_until(reads.exhausted)  # round one reads web-8: web-9's events are the next round's
    create_vm(network, compute, "web-9")
    _record(short, *short.emitted())
    flushing.join(60)

    assert len(failures) == 1  # round one's pool-app write outlived its retries
    assert pool_key("web-9-nic") in short.pool(POOL) and pool_key("web-8-nic") not in short.pool(POOL)
    assert {pool_key("web-8-nic"), pool_key("web-9-nic")} <= set(short.pool(ALL_POOL))
    waiting = short.service.intents.pending(SUBSCRIPTION, due_only=False)
    assert {i.subject.lower() for i in waiting} == {ids.vm("web-8").lower(), ids.nic("web-8-nic").lower()}
    assert all(i.attempts == 1 for i in waiting)  # deferred: the sweep retries them after the back-off

    _wait_until(lambda: short.service.intents.has_pending(SUBSCRIPTION))  # the back-off (10 s) ran out
    short.service.sweep()
    assert pool_key("web-8-nic") in short.pool(POOL)
    assert short.pending_intents() == 0


def test_a_flush_request_delivered_twice_and_a_sweep_racing_it_write_each_pool_once(
        stack: Stack, arm: Emulator, network, compute):
    create_vm(network, compute, "web-9")
    _record(stack, *stack.emitted())
    arm.stats.reset()
    message = QueueMessage(id="m1", body=request_message(SUBSCRIPTION).encode())
    racers = [threading.Thread(target=FLUSH, args=(message,)) for _ in range(2)]
    racers.append(threading.Thread(target=SWEEP, args=(None,)))
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join(60)

    for pool in (POOL, ALL_POOL):
        assert pool_key("web-9-nic") in stack.pool(pool)
        assert arm.stats.pool_writes(ids.pool(pool)) == 1
    assert stack.pending_intents() == 0


def test_a_flusher_that_loses_its_lock_mid_round_to_a_sweep_leaves_the_pools_to_the_new_holder(
        stack: Stack, arm: Emulator, network, compute, storage_connection_string: str):
    create_vm(network, compute, "web-8")
    _record(stack, *stack.emitted())
    arm.faults.add("slow", method="PUT", resource_type="backendAddressPools", delay=3, times=1)
    first, failures = _flush_in_background(stack)
    _wait_until(lambda: arm.stats.requests("PUT", "backendAddressPools") > 0)  # its first PUT is on its way
    lock = locks_container(storage_connection_string, stack.env["POOLSYNC_LOCKS_CONTAINER"])
    BlobLeaseClient(lock.get_blob_client(scope_partition_key(SUBSCRIPTION))).break_lease(lease_break_period=0)
    create_vm(network, compute, "web-9")
    _record(stack, *stack.emitted())

    SWEEP(None)  # the next holder: takes every pending intent, waits for the load balancer's lease
    first.join(60)

    for pool in (POOL, ALL_POOL):
        assert {pool_key("web-8-nic"), pool_key("web-9-nic")} <= set(stack.pool(pool))
    assert len(failures) == 1  # the old holder's next PUT failed its proof: it wrote nothing after the loss
    # what the old holder deferred is done again, as a no-op, by the sweep once its back-off ran out
    _wait_until(lambda: stack.pending_intents() == 0 or stack.service.intents.has_pending(SUBSCRIPTION))
    SWEEP(None)
    assert stack.pending_intents() == 0


def test_pipelined_rounds_removing_from_one_pool_count_together_in_the_guards_window(
        stack: Stack, arm: Emulator, compute, caplog):
    guarded = Stack(arm, {**stack.env, "POOLSYNC_MAX_REMOVE_FRACTION": "0.4"})  # one of four; not two
    _set_tags(compute, "web-1", {})
    _set_tags(compute, "web-2", {})
    untagged = guarded.emitted()
    (web1,) = [e for e in untagged if e["subject"] == ids.vm("web-1")]
    (web2,) = [e for e in untagged if e["subject"] == ids.vm("web-2")]
    _record(guarded, web1)
    reads = arm.faults.add_sequence(["slow"], method="GET", path="/virtualMachines/web-1", delay=2)
    arm.faults.add("slow", method="PUT", resource_type="backendAddressPools", delay=3, times=1)
    flushing, _ = _flush_in_background(guarded)
    _wait_until(reads.exhausted)  # round one reads web-1: web-2's event is the next round's
    _record(guarded, web2)
    with caplog.at_level("INFO", logger="poolsync"):
        flushing.join(60)

    pool = guarded.pool(POOL)
    assert pool_key("web-1-nic") not in pool  # one of four: within the share
    assert pool_key("web-2-nic") in pool  # alone one of three, but the window holds both: two of four
    assert [f["pool"] for f in facts(caplog, "guard_refused")] == [ids.pool(POOL)]
    assert {i.subject.lower() for i in guarded.service.intents.pending(SUBSCRIPTION, due_only=False)} \
        == {ids.vm("web-2").lower()}


def test_a_full_reconcile_between_an_event_rounds_index_rows_and_its_write_leaves_the_rows(
        stack: Stack, network, compute):
    """An event round writes its index rows, then waits for the load balancer's lease; the hourly full
    reconcile takes that lease first, and the round's VM is deleted before the reconcile lists VMs. The
    round then adds the VM as it read it (its read is older than the delete): the rows must still be there
    when the delete event comes, or nothing ever finds the entry again."""
    create_vm(network, compute, "web-9")
    _record(stack, *stack.emitted())  # the round's intent: pending until the round is done

    def meanwhile() -> None:  # the round has written its rows and not yet asked for the lease
        compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-9").result()  # its NIC goes with it
        FULL_RECONCILE(None)

    stack.runtime.reconciler.reconcile_owners([Owner(KIND_VM, ids.vm("web-9"))], reads_done=meanwhile)
    assert pool_key("web-9-nic") in stack.pool(POOL)  # the round wrote what it had read

    stack.deliver(*stack.emitted())
    for pool in (POOL, ALL_POOL):
        assert pool_key("web-9-nic") not in stack.pool(pool), f"deleted VM still in {pool}"
    assert stack.pending_intents() == 0
