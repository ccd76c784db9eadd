"""Safety invariants under orders, faults and mixes the other event tests do not try, end to end through
the trigger functions: several owners in one round with a conflict pulling in a blocker while another
owner's removal is held, a NIC moved between VMs, reads refused inside a big (list-read) round, a VM
re-created under the same names. Each ends with the pools holding what Azure says for every owner whose
intent was consumed - or the intent still pending."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from emulator import Emulator
from shared.app.runtime import set_runtime
from shared.core.events import parse_event
from tests.api.helpers import ApiClient, pool_path
from tests.app.events.conftest import ALL_POOL, Stack, facts, pool_key
from tests.app.events.helpers import DELETE, WRITE, eventgrid_event, runtime_env
from tests.fixtures.arm import LB, LOCATION, POOL, RESOURCE_GROUP, SUBNET, SUBSCRIPTION, VNET, ids, topology

pytestmark = pytest.mark.timeout(240)


def _record_and_sweep(stack: Stack, events: list[dict]) -> None:
    """The events recorded together and applied in one round (a coalesced burst, or redeliveries)."""
    for event in events:
        stack.service.intents.record(parse_event(event))
    stack.service.sweep()


def _static_vm(network, compute, name: str, ip: str | None, tags: dict[str, str], *,
               delete_option: str = "Delete", nic: str | None = None) -> None:
    """A VM on a NIC of its own (created here unless `nic` names an existing one)."""
    if nic is None:
        allocation = {"privateIPAllocationMethod": "Static", "privateIPAddress": ip} if ip else \
            {"privateIPAllocationMethod": "Dynamic"}
        nic_id = network.network_interfaces.begin_create_or_update(RESOURCE_GROUP, f"{name}-nic", {
            "location": LOCATION,
            "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
                "subnet": {"id": ids.subnet(VNET, SUBNET)}, **allocation}}]},
        }).result().id
    else:
        nic_id = ids.nic(nic)
    compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, name, {
        "location": LOCATION, "tags": tags,
        "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}, "networkProfile": {
            "networkInterfaces": [{"id": nic_id,
                                   "properties": {"primary": True, "deleteOption": delete_option}}]}},
    }).result()


def _drain(stack: Stack, nic: str) -> None:
    answer = ApiClient().call("POST", f"{pool_path()}/addresses/{stack.nic_ip(nic)}/drain")
    assert answer.status == 200, answer.body


def _set_tags(compute, vm: str, tags: dict[str, str]) -> None:
    current = compute.virtual_machines.get(RESOURCE_GROUP, vm)
    current.tags = tags
    compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, vm, current).result()


# -- a conflict pulls in its blocker while another owner's removal is held -----------------------------

BOTH = {"poolsync": "true", "all": "true"}
# pool-app: VMs tagged poolsync=true; pool-all: VMs tagged all=true (two pools of one load balancer)
TWO_TAGS = [
    {"name": "tagged", "pool": ids.pool(POOL), "virtualNetwork": ids.vnet(VNET), "cidrs": ["10.0.0.0/24"],
     "tags": {"poolsync": "true"}},
    {"name": "all-tag", "pool": ids.pool(ALL_POOL), "virtualNetwork": ids.vnet(VNET),
     "cidrs": ["10.0.0.0/24"], "tags": {"all": "true"}},
]


@pytest.fixture
def two_tags(arm: Emulator, storage_connection_string: str) -> Iterator[Stack]:
    """web-1..3 in both pools, solo-1..3 in pool-all only; the guard lets no unconfirmed removal through."""
    arm.reset(topology(
        [{"count": 3, "name": "web-{i}", "subnet": f"{VNET}/{SUBNET}", "tags": BOTH,
          "delete_option": "Delete"},
         {"count": 3, "name": "solo-{i}", "subnet": f"{VNET}/{SUBNET}", "tags": {"all": "true"},
          "delete_option": "Delete"}],
        lbs=[{"name": LB, "sku": "Standard", "pools": [{"name": POOL}, {"name": ALL_POOL}]}],
    ))
    env = runtime_env(arm.url, arm.ca_path, storage_connection_string, TWO_TAGS,
                      POOLSYNC_MAX_REMOVE_FRACTION="0.1")
    stack = Stack(arm, env)
    assert [o.status for o in stack.runtime.reconciler.reconcile()] == ["written", "written"]
    stack.emitted()
    yield stack
    set_runtime(None)


def _replace_web2_and_untag_solo1(stack: Stack, network, compute, web9_tags: dict[str, str]) -> str:
    """web-2 deleted (its events late, never delivered here), web-9 created on its static IP, and solo-1
    untagged out of pool-all (an unconfirmed removal the guard holds): all applied in one round."""
    ip = stack.nic_ip("web-2-nic")
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-2").result()
    stack.emitted()
    _static_vm(network, compute, "web-9", ip, web9_tags)
    _set_tags(compute, "solo-1", {})
    _record_and_sweep(stack, stack.emitted())
    return ip


def _waiting(stack: Stack) -> set[str]:
    """Lower-cased subjects of the intents still pending (due or deferred)."""
    return {i.subject.lower() for i in stack.service.intents.pending(SUBSCRIPTION, due_only=False)}


def test_a_held_removal_keeps_its_intent_when_a_conflict_in_another_pool_pulls_in_a_blocker(
        two_tags: Stack, network, compute):
    stack = two_tags
    ip = _replace_web2_and_untag_solo1(stack, network, compute, {"poolsync": "true"})  # web-9: pool-app only

    assert stack.pool(POOL)[pool_key("web-9-nic")] == ip  # the conflict was resolved by pulling web-2 in
    assert pool_key("web-2-nic") not in stack.pool(ALL_POOL)
    assert pool_key("solo-1-nic") in stack.pool(ALL_POOL)  # held by the guard...
    assert _waiting(stack) == {ids.vm("solo-1").lower()}  # ...so its intent waits


# -- a NIC moved between VMs ---------------------------------------------------------------------------


def test_a_nic_moved_to_another_vm_leaves_the_pools_when_that_vm_is_deleted(stack: Stack, network, compute):
    _static_vm(network, compute, "old-host", None, {"poolsync": "true"}, delete_option="Detach")
    stack.deliver(*stack.emitted())
    assert pool_key("old-host-nic") in stack.pool(POOL)
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "old-host").result()  # the NIC is detached...
    _static_vm(network, compute, "new-host", None, {"poolsync": "true"}, nic="old-host-nic")  # ...and reused
    moved = stack.emitted()
    stack.deliver(*moved)  # delivered late, after the move was complete: the entry stays as it is
    assert pool_key("old-host-nic") in stack.pool(POOL)
    assert stack.pending_intents() == 0

    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "new-host").result()  # its NIC goes with it
    deleted = stack.emitted()
    (vm_deleted,) = [e for e in deleted if e["subject"] == ids.vm("new-host")]
    stack.deliver(vm_deleted)  # the NIC's own delete event is late

    for pool in (POOL, ALL_POOL):
        assert pool_key("old-host-nic") not in stack.pool(pool), f"deleted VM's NIC still in {pool}"


def test_a_nic_moved_to_an_untagged_vm_leaves_the_tagged_pool_on_that_vms_event(stack: Stack, network,
                                                                              compute):
    _static_vm(network, compute, "old-host", None, {"poolsync": "true"}, delete_option="Detach")
    stack.deliver(*stack.emitted())
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "old-host").result()
    _static_vm(network, compute, "new-host", None, {"poolsync": "true"}, nic="old-host-nic")
    stack.deliver(*stack.emitted())
    assert pool_key("old-host-nic") in stack.pool(POOL)

    _set_tags(compute, "new-host", {})  # a VM update only: the NIC is not written, no event of its own
    stack.deliver(*stack.emitted())

    assert pool_key("old-host-nic") not in stack.pool(POOL)
    assert pool_key("old-host-nic") in stack.pool(ALL_POOL)  # pool-all takes every VM of the VNet


# -- reads refused inside a big round (one list read instead of GETs) ----------------------------------


@pytest.mark.xfail(strict=True, reason=(
    "a list read cannot tell an owner hidden by RBAC (403 on its GET) from a deleted one: the entry becomes "
    "an unconfirmed removal, which the guard lets through within POOLSYNC_MAX_REMOVE_FRACTION, and the "
    "intent is consumed; the GET path leaves it undecided (test_disorder)"))
def test_a_member_hidden_from_the_list_read_of_a_big_round_keeps_its_entry(stack: Stack, network):
    readable = [ids.vnet(VNET), ids.lb(LB), ids.vm("kept-1"), ids.nic("kept-1-nic")]
    readable += [ids.vm(f"web-{i}") for i in (2, 3)] + [ids.nic(f"web-{i}-nic") for i in (2, 3)]
    stack.arm.configure_rbac({"devstack": {"read": readable, "write": [ids.lb(LB)]},
                              "x": {"write": [f"/subscriptions/{SUBSCRIPTION}"]}})
    # web-1's own event, with the deletes of VMs poolsync never knew (other teams' churn): a big round
    ghosts = [eventgrid_event(DELETE, ids.vm(f"ghost-{uuid.uuid4().hex[:6]}")) for _ in range(15)]

    _record_and_sweep(stack, [eventgrid_event(WRITE, ids.nic("web-1-nic")), *ghosts])

    for pool in (POOL, ALL_POOL):
        assert pool_key("web-1-nic") in stack.pool(pool)  # never removed on a read it may not make
    assert _waiting(stack) == {ids.nic("web-1-nic").lower()}


def test_a_held_removal_in_the_same_pool_does_not_keep_a_replacement_on_the_same_ip_out(
        two_tags: Stack, network, compute):
    stack = two_tags
    ip = _replace_web2_and_untag_solo1(stack, network, compute, {"all": "true"})  # web-9: pool-all only

    pool = stack.pool(ALL_POOL)
    assert pool.get(pool_key("web-9-nic")) == ip  # the hold blocks removals, never the replacement
    assert pool_key("web-2-nic") not in pool
    assert pool_key("solo-1-nic") in pool
    assert ids.vm("solo-1").lower() in _waiting(stack)



def test_a_static_ip_handed_from_a_drained_deleted_vm_to_a_new_one_does_not_carry_the_drain(
        stack: Stack, network, compute):
    ip = stack.nic_ip("web-2-nic")
    _drain(stack, "web-2-nic")
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-2").result()
    deleted = stack.emitted()
    _static_vm(network, compute, "web-9", ip, {"poolsync": "true"})
    created = stack.emitted()

    stack.deliver(*created[::-1], *deleted, created[0])  # new VM first, in reverse, then a replay

    for pool in (POOL, ALL_POOL):
        assert pool_key("web-2-nic") not in stack.pool(pool)
        assert stack.pool(pool)[pool_key("web-9-nic")] == ip
    (entry,) = [a for a in stack.arm.world.get_pool(ids.pool(POOL))["properties"]
                ["loadBalancerBackendAddresses"] if a["name"].startswith(pool_key("web-9-nic"))]
    assert entry["properties"].get("adminState") in (None, "None")  # the drain was web-2's
    assert stack.pending_intents() == 0


def test_a_pool_azure_refuses_while_a_removal_is_held_still_loses_its_deleted_vm(
        two_tags: Stack, network, compute, caplog):
    stack = two_tags
    stack.arm.set_profile("default", strict_resources=True, max_addresses_per_pool=6)  # pool-all is full
    stack.arm.operation_seconds, stack.arm.lro_retry_after = 0.05, 0
    _set_tags(compute, "solo-1", {})  # an unconfirmed removal the guard holds
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-3").result()  # a confirmed one
    for name in ("solo-8", "solo-9"):  # two joiners: one more than the room web-3 leaves
        _static_vm(network, compute, name, None, {"all": "true"})
    events = stack.emitted()

    with caplog.at_level("INFO", logger="poolsync"):
        _record_and_sweep(stack, events)

    pool = stack.pool(ALL_POOL)
    assert pool_key("web-3-nic") not in pool  # the deleted VM left although Azure refused the plan
    assert pool_key("solo-1-nic") in pool  # the hold stands
    assert facts(caplog, "pool_write_refused") and facts(caplog, "guard_refused")
    assert {ids.vm(n).lower() for n in ("solo-1", "solo-8", "solo-9")} <= _waiting(stack)

# -- a VM re-created under the same names ---------------------------------------------------------------


@pytest.mark.parametrize("order", ["creates-first", "deletes-first", "interleaved-with-replays"])
def test_a_vm_recreated_under_the_same_names_ends_with_one_entry_for_the_new_nic(
        stack: Stack, network, compute, order: str):
    _drain(stack, "web-1-nic")  # the old incarnation is drained
    old_name = {a["name"] for a in stack.arm.world.get_pool(ids.pool(POOL))["properties"]
                ["loadBalancerBackendAddresses"] if a["name"].startswith(pool_key("web-1-nic"))}
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-1").result()  # its NIC goes with it
    deleted = stack.emitted()
    _static_vm(network, compute, "web-1", None, {"poolsync": "true"}, nic=None)
    created = stack.emitted()
    assert stack.nic_ip("web-1-nic")

    if order == "creates-first":
        stack.deliver(*created, *deleted)
    elif order == "deletes-first":
        stack.deliver(*deleted, *created)
    else:
        stack.deliver(created[-1], deleted[0], *created, *deleted, deleted[0])

    for pool in (POOL, ALL_POOL):
        entries = [a for a in stack.arm.world.get_pool(ids.pool(pool))["properties"]
                   ["loadBalancerBackendAddresses"] if a["name"].startswith(pool_key("web-1-nic"))]
        assert [a["properties"]["ipAddress"] for a in entries] == [stack.nic_ip("web-1-nic")]
        assert entries[0]["name"] not in old_name  # the new incarnation's name (its NIC's resourceGuid)
        assert entries[0]["properties"].get("adminState") in (None, "None")  # a new NIC: not drained
    assert stack.pending_intents() == 0
