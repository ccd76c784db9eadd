"""End to end: VM/NIC changes made through the real SDK on the emulator, their events delivered to the
trigger (through the Functions worker's decoding), intents in Azurite, pools checked in the emulator."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import NetworkInterfaceIPConfiguration, Subnet

from shared.app.flusher import FlushFailed
from shared.core.events import ResourceHint, parse_event
from shared.storage.intents import backoff_seconds
from tests.app.events.conftest import (
    ALL_POOL,
    ELSEWHERE_VNET,
    OTHER_SUBNET,
    Stack,
    create_vm,
    facts,
    member_key,
    pool_key,
)
from tests.app.events.helpers import DELETE, WRITE, WRITE_FAILURE, cloud_event, eventgrid_event
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, SUBNET, SUBSCRIPTION, VNET, ids

pytestmark = pytest.mark.timeout(240)


def _name(nic: str, ipconfig: str = "ipconfig1") -> str:
    return pool_key(nic, ipconfig)


def _update_nic(network: NetworkManagementClient, nic: str, change) -> None:
    current = network.network_interfaces.get(RESOURCE_GROUP, nic)
    change(current)
    network.network_interfaces.begin_create_or_update(RESOURCE_GROUP, nic, current).result()


# -- 1. creation ----------------------------------------------------------------------------------------


def test_created_vm_lands_in_every_matching_pool(stack: Stack, network, compute, caplog):
    create_vm(network, compute, "web-9")
    events = stack.emitted()
    assert [e["eventType"] for e in events] == [WRITE, WRITE]  # the NIC, then the VM

    with caplog.at_level(logging.INFO, logger="poolsync"):
        stack.deliver(*events)

    ip = stack.nic_ip("web-9-nic")
    assert stack.pool(POOL)[_name("web-9-nic")] == ip
    assert stack.pool(ALL_POOL)[_name("web-9-nic")] == ip
    assert stack.pending_intents() == 0
    assert [f["event_id"] for f in facts(caplog, "event_received")] == [e["id"] for e in events]
    applied = facts(caplog, "event_applied")
    assert applied and applied[0]["adds"] >= 1 and applied[0]["latency_ms"] >= 0


def test_created_vm_without_the_rule_tag_lands_only_in_the_untagged_rule_pool(stack: Stack, network, compute):
    create_vm(network, compute, "batch-1", tags={"role": "batch"})

    stack.deliver(*stack.emitted())

    assert _name("batch-1-nic") not in stack.pool(POOL)
    assert _name("batch-1-nic") in stack.pool(ALL_POOL)


# -- 2. deletion ----------------------------------------------------------------------------------------


def test_vm_deleted_with_its_nic_leaves_the_pools(stack: Stack, compute):
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-1").result()
    events = stack.emitted()
    assert {e["subject"] for e in events} == {ids.vm("web-1"), ids.nic("web-1-nic")}

    stack.deliver(*events)

    for pool in (POOL, ALL_POOL):
        assert _name("web-1-nic") not in stack.pool(pool)
        assert {_name("web-2-nic"), _name("web-3-nic"), _name("kept-1-nic")} <= stack.pool(pool).keys()


def test_vm_deleted_with_its_nic_kept_leaves_the_pools(stack: Stack, compute, network):
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "kept-1").result()
    events = stack.emitted()
    assert [e["subject"] for e in events] == [ids.vm("kept-1")]
    assert network.network_interfaces.get(RESOURCE_GROUP, "kept-1-nic").virtual_machine is None

    stack.deliver(*events)

    assert _name("kept-1-nic") not in stack.pool(POOL)
    assert _name("kept-1-nic") not in stack.pool(ALL_POOL)


# -- 3. changes -----------------------------------------------------------------------------------------


def test_changed_private_ip_is_readdressed_in_place(stack: Stack, network):
    def set_static_ip(nic):
        nic.ip_configurations[0].private_ip_allocation_method = "Static"
        nic.ip_configurations[0].private_ip_address = "10.0.0.200"

    _update_nic(network, "web-2-nic", set_static_ip)
    stack.deliver(*stack.emitted())

    assert stack.pool(POOL)[_name("web-2-nic")] == "10.0.0.200"
    assert stack.pool(ALL_POOL)[_name("web-2-nic")] == "10.0.0.200"


def test_nic_moved_to_another_subnet_follows_the_rules(stack: Stack, network):
    def move(nic):
        nic.ip_configurations[0].subnet = Subnet(id=ids.subnet(VNET, OTHER_SUBNET))
        nic.ip_configurations[0].private_ip_allocation_method = "Dynamic"
        nic.ip_configurations[0].private_ip_address = None

    _update_nic(network, "web-3-nic", move)
    stack.deliver(*stack.emitted())

    new_ip = stack.nic_ip("web-3-nic")
    assert new_ip.startswith("10.0.1.")
    assert _name("web-3-nic") not in stack.pool(POOL)  # 10.0.1.x is outside the tagged rule's 10.0.0.0/24
    assert stack.pool(ALL_POOL)[_name("web-3-nic")] == new_ip


def test_ipconfig_added_then_removed_is_followed_by_the_all_ipconfigs_rule(stack: Stack, network):
    def add_secondary(nic):
        nic.ip_configurations.append(NetworkInterfaceIPConfiguration(
            name="ipconfig2", subnet=Subnet(id=ids.subnet(VNET, SUBNET)),
            private_ip_allocation_method="Dynamic", primary=False))

    _update_nic(network, "web-1-nic", add_secondary)
    stack.deliver(*stack.emitted())

    secondary = _name("web-1-nic", "ipconfig2")
    assert stack.pool(ALL_POOL)[secondary] == stack.nic_ip("web-1-nic", 1)
    assert secondary not in stack.pool(POOL)  # that rule takes primary ipconfigs only

    _update_nic(network, "web-1-nic", lambda nic: nic.ip_configurations.pop())
    stack.deliver(*stack.emitted())

    assert secondary not in stack.pool(ALL_POOL)
    assert _name("web-1-nic") in stack.pool(ALL_POOL)


def test_vm_losing_the_rule_tag_leaves_only_the_tagged_pool(stack: Stack, compute):
    vm = compute.virtual_machines.get(RESOURCE_GROUP, "web-2")
    vm.tags = {"poolsync": "paused"}
    compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, "web-2", vm).result()

    stack.deliver(*stack.emitted())

    assert _name("web-2-nic") not in stack.pool(POOL)
    assert _name("web-2-nic") in stack.pool(ALL_POOL)


def _static_ip(ip: str):
    def change(nic) -> None:
        nic.ip_configurations[0].private_ip_allocation_method = "Static"
        nic.ip_configurations[0].private_ip_address = ip
    return change


def test_two_vms_that_swap_ips_each_keep_pointing_at_their_own_vm(stack: Stack, network):
    first, second = stack.nic_ip("web-1-nic"), stack.nic_ip("web-2-nic")
    _update_nic(network, "web-1-nic", _static_ip("10.0.0.201"))  # park, so the second can take its IP
    _update_nic(network, "web-2-nic", _static_ip(first))
    _update_nic(network, "web-1-nic", _static_ip(second))
    for event in stack.emitted():  # one burst, one round: the plan sees both entries move at once
        stack.service.intents.record(parse_event(event))

    stack.service.flusher.flush(SUBSCRIPTION)

    for pool in (POOL, ALL_POOL):
        assert stack.pool(pool)[_name("web-1-nic")] == second
        assert stack.pool(pool)[_name("web-2-nic")] == first
    assert stack.pending_intents() == 0


def _pool_entry(stack: Stack, pool: str, nic: str) -> dict:
    raw = stack.arm.world.get_pool(ids.pool(pool))
    (entry,) = [a for a in raw["properties"]["loadBalancerBackendAddresses"]
                if member_key(a["name"]) == _name(nic)]
    return entry


def test_a_drained_vm_recreated_with_the_same_names_does_not_come_back_drained(stack: Stack, network,
                                                                              compute):
    drained = _pool_entry(stack, POOL, "web-1-nic")
    pools = network.load_balancer_backend_address_pools
    pool = pools.get(RESOURCE_GROUP, LB, POOL)  # an operator drains it
    for address in pool.load_balancer_backend_addresses:
        if address.name == drained["name"]:
            address.admin_state = "Down"
    pools = network.load_balancer_backend_address_pools
    pools.begin_create_or_update(RESOURCE_GROUP, LB, POOL, pool).result()
    stack.emitted()
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-1").result()  # its NIC goes too
    stack.deliver(*stack.emitted())
    create_vm(network, compute, "web-1")  # same VM and NIC names: a new NIC (new resourceGuid)
    stack.deliver(*stack.emitted())

    entry = _pool_entry(stack, POOL, "web-1-nic")
    assert entry["name"] != drained["name"]  # another incarnation, another identity
    assert entry["properties"].get("adminState", "None") == "None"  # the old drain does not carry over
    assert entry["properties"]["ipAddress"] == stack.nic_ip("web-1-nic")


# -- 4. ignored cheaply ---------------------------------------------------------------------------------


def test_irrelevant_events_cost_no_arm_call_and_no_intent(stack: Stack):
    other_subscription = ids.vm("web-1").replace(SUBSCRIPTION, "99999999-8888-7777-6666-555555555555")
    stack.deliver(
        eventgrid_event(WRITE, ids.vnet(VNET)),  # another resource type
        eventgrid_event(WRITE, f"{ids.vm('web-1')}/extensions/CustomScript"),
        cloud_event(WRITE, other_subscription),
        eventgrid_event(WRITE_FAILURE, ids.vm("web-1")),
        eventgrid_event(WRITE, ids.vm("web-1"), status="Failed"),
    )

    assert stack.arm.stats.requests() == 0
    assert stack.pending_intents() == 0


def test_vm_outside_every_rules_network_costs_only_its_own_reads(stack: Stack):
    stack.deliver(eventgrid_event(WRITE, ids.vm("stranger-1")),
                  eventgrid_event(WRITE, ids.nic("stranger-1-nic")))

    assert stack.arm.stats.requests(method="PUT") == 0
    # one round for both events: the VM and its NIC, no list, no pool read
    assert stack.arm.stats.requests(method="GET") == 2
    assert stack.pending_intents() == 0
    assert ELSEWHERE_VNET not in str(stack.pool(ALL_POOL))


def test_matching_vm_whose_pools_are_already_right_causes_no_write(stack: Stack):
    stack.deliver(eventgrid_event(WRITE, ids.vm("web-1")))

    assert stack.arm.stats.pool_writes(ids.lb()) == 0
    assert stack.pending_intents() == 0


# -- 5. duplicates, reordering, replays -----------------------------------------------------------------


def test_duplicate_deliveries_collapse_into_one_intent_and_one_write(stack: Stack, network, compute):
    create_vm(network, compute, "web-9")
    vm_event = stack.emitted()[-1]
    hint = parse_event(vm_event)
    assert isinstance(hint, ResourceHint)
    stack.service.intents.record(hint)
    stack.service.intents.record(hint)
    assert stack.pending_intents() == 1

    stack.deliver(vm_event, vm_event, vm_event)

    assert _name("web-9-nic") in stack.pool(POOL)
    assert stack.arm.stats.pool_writes(ids.pool(POOL)) == 1
    assert stack.pending_intents() == 0


def test_delete_delivered_before_create_ends_with_what_azure_holds(stack: Stack, network, compute):
    create_vm(network, compute, "web-9")
    created = stack.emitted()
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-9").result()
    deleted = stack.emitted()

    stack.deliver(*deleted, *created)  # the create events arrive last, for a VM that no longer exists

    assert _name("web-9-nic") not in stack.pool(POOL)
    assert _name("web-9-nic") not in stack.pool(ALL_POOL)


def test_create_replayed_a_day_after_the_delete_does_not_resurrect(stack: Stack, compute):
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-1").result()
    stack.deliver(*stack.emitted())
    assert _name("web-1-nic") not in stack.pool(POOL)

    stack.deliver(eventgrid_event(WRITE, ids.vm("web-1"), age=timedelta(days=1)),
                  cloud_event(WRITE, ids.nic("web-1-nic")))

    assert _name("web-1-nic") not in stack.pool(POOL)
    assert _name("web-1-nic") not in stack.pool(ALL_POOL)


def test_delete_event_for_a_vm_that_exists_again_keeps_it(stack: Stack):
    stack.deliver(eventgrid_event(DELETE, ids.vm("web-2")))  # stale: web-2 is alive

    assert _name("web-2-nic") in stack.pool(POOL)
    assert stack.arm.stats.pool_writes(ids.lb()) == 0


# -- 6. malformed and transient -------------------------------------------------------------------------


def test_malformed_events_are_logged_with_their_id_and_dropped(stack: Stack, caplog):
    no_subject = eventgrid_event(WRITE, ids.vm("web-1"))
    del no_subject["subject"]
    unknown = {"id": "evt-unknown-schema", "something": "else"}

    with caplog.at_level(logging.INFO, logger="poolsync"):
        stack.deliver(no_subject, unknown)  # returns normally: Event Grid must not retry these

    dropped = [f for f in facts(caplog, "event_ignored") if f["reason"].startswith("malformed")]
    assert [f["event_id"] for f in dropped] == [no_subject["id"], "evt-unknown-schema"]
    assert "subject" in dropped[0]["reason"]
    assert stack.arm.stats.requests() == 0
    assert stack.pending_intents() == 0


def test_transient_failure_keeps_the_intent_and_the_sweep_finishes_after_the_back_off(
        stack: Stack, network, compute, caplog, monkeypatch):
    create_vm(network, compute, "web-9")
    events = stack.emitted()
    stack.arm.faults.add("500", method="PUT", resource_type="backendAddressPools")  # outlives every retry
    short_retries = {**stack.env, "POOLSYNC_RETRY_DEADLINE": "2", "POOLSYNC_RETRY_MAX_ATTEMPTS": "3"}
    stack = Stack(stack.arm, short_retries)

    with caplog.at_level(logging.INFO, logger="poolsync"), pytest.raises(FlushFailed):
        stack.deliver(events[-1])

    assert facts(caplog, "event_failed") == []  # the delivery itself succeeded: it only recorded the intent
    assert [f["intents"] for f in facts(caplog, "intents_deferred")] == [1]
    assert stack.pending_intents() == 1
    assert _name("web-9-nic") not in stack.pool(POOL)

    stack.arm.faults.clear()
    later = datetime.now(UTC) + timedelta(seconds=backoff_seconds(1) + 1)
    monkeypatch.setattr(stack.service.intents, "_clock", lambda: later)  # the back-off has passed
    stack.service.sweep()

    assert _name("web-9-nic") in stack.pool(POOL)
    assert stack.pending_intents() == 0


def test_confirmed_deletes_apply_even_beyond_the_guards_share(stack: Stack, compute, caplog):
    for vm in ("web-1", "web-2", "web-3"):  # 3 of the 4 managed members at once: more than half
        compute.virtual_machines.begin_delete(RESOURCE_GROUP, vm).result()
    events = stack.emitted()

    with caplog.at_level(logging.INFO, logger="poolsync"):
        stack.deliver(*events)

    # Each VM's delete is proven by a direct read (404): stale IPs must not stay in the pool.
    assert set(stack.pool(POOL)) == {_name("kept-1-nic")}
    assert facts(caplog, "guard_refused") == []
    assert stack.pending_intents() == 0


def test_a_rule_change_dropping_most_members_is_held_back_while_new_vms_still_join(stack: Stack, network,
                                                                                   compute, caplog):
    for vm in ("web-1", "web-2", "web-3"):  # the VMs exist; only the tag the rule selects on is gone
        current = compute.virtual_machines.get(RESOURCE_GROUP, vm)
        current.tags = {"poolsync": "false"}
        compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, vm, current).result()
    create_vm(network, compute, "web-9")
    for event in stack.emitted():  # one burst: every handler but the flusher's found the lock held
        stack.service.intents.record(parse_event(event))

    with caplog.at_level(logging.INFO, logger="poolsync"):
        stack.service.flusher.flush(SUBSCRIPTION)

    pool = stack.pool(POOL)
    assert {_name(f"web-{i}-nic") for i in (1, 2, 3)} <= set(pool)  # held: an unconfirmed mass removal
    assert _name("web-9-nic") in pool  # a refused removal never blocks an add
    refused = [f for f in facts(caplog, "guard_refused") if f["pool"] == ids.pool(POOL)]
    assert refused and refused[-1]["removes"] == 3
    pending = stack.service.intents.pending(SUBSCRIPTION, due_only=False)
    assert pending and all(intent.attempts >= 1 for intent in pending)  # kept, with a back-off, not dropped
