"""Safety under disorder, end to end through the Event Grid trigger: events late or out of order, reads
refused, writes Azure refuses, a pool that fails right after a fresh deployment. In every case the pool
must end holding, for each owner, what Azure's state says - or keep the intent pending and say why; never
an entry pointing at the wrong or a deleted VM with the intent consumed."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from shared.app.flusher import FlushFailed
from shared.core.events import parse_event
from shared.core.manual_plan import plan_manual
from tests.app.events.conftest import ELSEWHERE_VNET, RULES, Stack, create_vm, facts, member_key, pool_key
from tests.app.events.helpers import runtime_env
from tests.fixtures.arm import LB, LOCATION, POOL, RESOURCE_GROUP, SUBNET, SUBSCRIPTION, VNET, ids

pytestmark = pytest.mark.timeout(240)

ALL_POOL = "pool-all"
OTHER_GROUP = "rg-elsewhere"


def _create_vm_at(stack: Stack, network, compute, name: str, ip: str | None = None, *,
                  group: str = RESOURCE_GROUP) -> None:
    """A VM with one NIC in the managed subnet; `ip` makes it static."""
    allocation = {"privateIPAllocationMethod": "Static", "privateIPAddress": ip} if ip else \
        {"privateIPAllocationMethod": "Dynamic"}
    nic = network.network_interfaces.begin_create_or_update(group, f"{name}-nic", {
        "location": LOCATION,
        "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
            "subnet": {"id": ids.subnet(VNET, SUBNET)}, **allocation}}]},
    }).result()
    compute.virtual_machines.begin_create_or_update(group, name, {
        "location": LOCATION, "tags": {"poolsync": "true"},
        "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}, "networkProfile": {
            "networkInterfaces": [{"id": nic.id,
                                   "properties": {"primary": True, "deleteOption": "Delete"}}]}},
    }).result()


def _set_ip(network, nic: str, ip: str) -> None:
    current = network.network_interfaces.get(RESOURCE_GROUP, nic)
    current.ip_configurations[0].private_ip_allocation_method = "Static"
    current.ip_configurations[0].private_ip_address = ip
    network.network_interfaces.begin_create_or_update(RESOURCE_GROUP, nic, current).result()


def _entries(stack: Stack, pool: str = POOL) -> dict[str, dict]:
    """Entry key (see `pool_key`) -> the entry's properties, as the emulator holds them."""
    assert stack.arm.wait_operations_done(60)
    raw = stack.arm.world.get_pool(ids.pool(pool))
    return {member_key(a["name"]): a["properties"]
            for a in raw["properties"].get("loadBalancerBackendAddresses", [])}


def _full_name(stack: Stack, nic: str, pool: str = POOL) -> str:
    raw = stack.arm.world.get_pool(ids.pool(pool))
    (name,) = [a["name"] for a in raw["properties"]["loadBalancerBackendAddresses"]
               if member_key(a["name"]) == pool_key(nic)]
    return name


# -- 1. a read refused for one owner ------------------------------------------------------------------


def _reader_of_the_group_only(stack: Stack) -> None:
    """poolsync may read its own resource group and write its load balancer, nothing else (as with a
    Reader role on the watched groups and a subscription-wide event topic)."""
    stack.arm.configure_rbac({
        "devstack": {"read": [f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}"],
                     "write": [ids.lb(LB)]},
        "x": {"write": [f"/subscriptions/{SUBSCRIPTION}"]},  # the test's own clients, making changes
    })


def test_an_unreadable_vm_in_another_group_does_not_stall_the_subscription(stack: Stack, network, compute,
                                                                          caplog):
    _create_vm_at(stack, network, compute, "foreign-1", group=OTHER_GROUP)
    foreign = stack.emitted()
    _reader_of_the_group_only(stack)

    with caplog.at_level(logging.INFO, logger="poolsync"):
        stack.deliver(*foreign)  # a 403 on the owner read: logged, not a failed delivery

    assert stack.pending_intents() == 0  # poolsync wrote nothing for it: nothing to wait for
    refused = {f["owner"] for f in facts(caplog, "owner_unreadable")}
    assert refused == {ids.vm("foreign-1").lower().replace(RESOURCE_GROUP, OTHER_GROUP),
                       ids.nic("foreign-1-nic").lower().replace(RESOURCE_GROUP, OTHER_GROUP)}

    create_vm(network, compute, "web-9")
    stack.deliver(*stack.emitted())
    assert stack.pool(POOL)[pool_key("web-9-nic")] == stack.nic_ip("web-9-nic")
    assert stack.pending_intents() == 0


def test_a_member_whose_reads_are_refused_keeps_its_entry_and_its_intent_waits(stack: Stack, network):
    readable = [ids.vnet(VNET), ids.lb(LB)] + [ids.vm(f"web-{i}") for i in (2, 3)] + \
        [ids.nic(f"web-{i}-nic") for i in (2, 3)]
    _set_ip(network, "web-1-nic", "10.0.0.201")  # a real change poolsync cannot see
    events = stack.emitted()
    stack.arm.configure_rbac({"devstack": {"read": readable, "write": [ids.lb(LB)]},
                              "x": {"write": [f"/subscriptions/{SUBSCRIPTION}"]}})

    stack.deliver(*events)

    assert pool_key("web-1-nic") in stack.pool(POOL)  # never removed on a refused read
    (waiting,) = stack.service.intents.pending(SUBSCRIPTION, due_only=False)
    assert waiting.attempts == 1  # deferred with a back-off, not consumed and not hot-looping


# -- 2. changes blocked by another managed entry ---------------------------------------------------------


def test_a_vm_replaced_on_the_same_static_ip_joins_although_its_events_come_first(stack: Stack, network,
                                                                                  compute):
    ip = stack.nic_ip("web-2-nic")
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-2").result()
    deleted = stack.emitted()
    _create_vm_at(stack, network, compute, "web-9", ip)
    created = stack.emitted()

    stack.deliver(*created)  # the delete's events are late

    for pool in (POOL, ALL_POOL):
        members = stack.pool(pool)
        assert members[pool_key("web-9-nic")] == ip
        assert pool_key("web-2-nic") not in members
    assert stack.pending_intents() == 0

    stack.deliver(*deleted)
    assert stack.pool(POOL)[pool_key("web-9-nic")] == ip
    assert stack.pending_intents() == 0


def test_two_vms_swapping_ips_in_separate_rounds_keep_their_own_entries_and_drain(stack: Stack, network):
    first, second = stack.nic_ip("web-1-nic"), stack.nic_ip("web-2-nic")
    drained = _full_name(stack, "web-1-nic")
    outcome = stack.runtime.reconciler.apply(ids.pool(POOL),
                                             lambda snap: plan_manual(snap, admin={drained: "Down"}))
    assert outcome.status == "written"
    _set_ip(network, "web-1-nic", "10.0.0.250")
    _set_ip(network, "web-2-nic", first)
    _set_ip(network, "web-1-nic", second)
    events = stack.emitted()
    web1 = [e for e in events if e["subject"] == ids.nic("web-1-nic")]
    web2 = [e for e in events if e["subject"] == ids.nic("web-2-nic")]

    stack.deliver(web1[-1])  # one round: web-1 moved onto web-2's old IP
    stack.deliver(*web2)  # a later round (a delayed delivery)

    entries = _entries(stack)
    assert entries[pool_key("web-1-nic")]["ipAddress"] == second
    assert entries[pool_key("web-1-nic")].get("adminState") == "Down"  # the drain stays with web-1
    assert entries[pool_key("web-2-nic")]["ipAddress"] == first
    assert entries[pool_key("web-2-nic")].get("adminState") in (None, "None")
    assert stack.pool(ALL_POOL)[pool_key("web-1-nic")] == second
    assert stack.pending_intents() == 0


def test_three_vms_rotating_their_ips_converge_from_the_first_event_alone(stack: Stack, network):
    ips = [stack.nic_ip(f"web-{i}-nic") for i in (1, 2, 3)]
    _set_ip(network, "web-1-nic", "10.0.0.250")  # web-1 -> web-2's IP, web-2 -> web-3's, web-3 -> web-1's
    _set_ip(network, "web-3-nic", "10.0.0.251")
    _set_ip(network, "web-2-nic", ips[2])
    _set_ip(network, "web-1-nic", ips[1])
    _set_ip(network, "web-3-nic", ips[0])
    events = [e for e in stack.emitted() if e["subject"] == ids.nic("web-1-nic")]

    stack.deliver(events[-1])  # the others' events never came (yet): a chain of blocking entries

    members = stack.pool(POOL)
    assert [members[pool_key(f"web-{i}-nic")] for i in (1, 2, 3)] == [ips[1], ips[2], ips[0]]
    assert stack.pending_intents() == 0


# -- 4. a write Azure refuses ----------------------------------------------------------------------------


def test_removals_of_gone_vms_land_when_azure_refuses_the_additions(stack: Stack, network, compute, caplog):
    # Azure's pool checks, with room for the 4 members the pools hold already
    stack.arm.set_profile("default", strict_resources=True, max_addresses_per_pool=4)
    stack.arm.operation_seconds, stack.arm.lro_retry_after = 0.05, 0
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-1").result()
    for name in ("web-8", "web-9"):
        create_vm(network, compute, name)
    events = stack.emitted()

    with caplog.at_level(logging.INFO, logger="poolsync"):
        for event in events:  # recorded together, applied in one round (as a coalesced burst)
            stack.service.intents.record(parse_event(event))
        stack.service.sweep()  # a refusal is an alert and a pending intent, not a failed delivery

    for pool in (POOL, ALL_POOL):
        assert pool_key("web-1-nic") not in stack.pool(pool)  # the deleted VM left all the same
    refused = facts(caplog, "pool_write_refused")
    assert {f["code"] for f in refused} == {"LoadBalancerBackendAddressPoolSizeLimitExceeded"}
    assert {rule for f in refused for rule in f["rules"]} == {"tagged", "everything"}
    waiting = stack.service.intents.pending(SUBSCRIPTION, due_only=False)
    assert {w.subject for w in waiting} >= {ids.vm("web-8"), ids.vm("web-9")}
    assert all(w.attempts == 1 for w in waiting)


# -- 5. one failing pool right after a fresh deployment --------------------------------------------------


def test_one_failing_pool_after_a_fresh_deployment_does_not_make_every_event_a_full_reconcile(
        stack: Stack, network, compute):
    broken_rule = {"name": "broken", "pool": f"{ids.lb('lb-gone')}/backendAddressPools/pool",
                   "virtualNetwork": ids.vnet(VNET), "cidrs": ["10.0.0.0/16"]}
    env = runtime_env(stack.arm.url, stack.arm.ca_path, stack.env["AzureWebJobsStorage"],
                      [broken_rule, *RULES], POOLSYNC_MEMBERS_TABLE=f"members{uuid.uuid4().hex[:12]}")
    fresh = Stack(stack.arm, env)  # a new deployment: its member index is empty
    create_vm(network, compute, "web-8")
    with pytest.raises(FlushFailed):
        fresh.deliver(*fresh.emitted())  # the first full reconcile: one pool fails, the others are built
    assert pool_key("web-8-nic") in fresh.pool(POOL)

    create_vm(network, compute, "stranger-2", vnet=ELSEWHERE_VNET)
    stack.arm.stats.reset()
    fresh.deliver(*fresh.emitted())  # no rule selects it: nothing to do, and nothing fails

    requests = stack.arm.stats.snapshot()["requests"]
    assert not any("loadBalancers" in key for key in requests), requests  # no full reconcile, no retry
    index = fresh.runtime.reconciler.index
    assert index is not None and index.is_built()
    assert index.unbuilt_due() == []  # the failing pool waits for its back-off ...
    later = datetime.now(UTC) + timedelta(seconds=15)
    assert [p.lower() for p in index.unbuilt_due(later)] == [broken_rule["pool"].lower()]  # ... then again
