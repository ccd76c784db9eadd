"""End to end for scale sets: Uniform and Flexible sets changed through the real Compute SDK on the emulator,
the events ARM emits for them (one per request) delivered to the Event Grid trigger, intents in Azurite,
pools checked in the emulator. Rules select by scale set (a name glob and an id)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    Sku,
    VirtualMachineScaleSetUpdate,
    VirtualMachineScaleSetVMInstanceIDs,
    VirtualMachineScaleSetVMInstanceRequiredIDs,
)

from emulator import Emulator
from shared.app.runtime import set_runtime
from tests.app.events.conftest import ALL_POOL, Stack, create_vm
from tests.app.events.helpers import ACTION, DELETE, WRITE, runtime_env
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, SUBNET, VNET, ids, topology

pytestmark = pytest.mark.timeout(240)

UNIFORM, FLEXIBLE = "web", "flex"
# pool-app: instances of Uniform sets named web*; pool-all: instances of the Flexible set, by id.
RULES = [
    {
        "name": "uniform",
        "pool": ids.pool(POOL),
        "virtualNetwork": ids.vnet(VNET),
        "cidrs": ["10.0.0.0/24"],
        "scaleSets": ["web*"],
    },
    {
        "name": "flexible",
        "pool": ids.pool(ALL_POOL),
        "virtualNetwork": ids.vnet(VNET),
        "cidrs": ["10.0.0.0/24"],
        "scaleSets": [ids.scale_set(FLEXIBLE)],
    },
]


def world(uniform: int = 3, flexible: int = 2) -> dict:
    doc = topology(
        [{"name": "solo-1", "subnet": f"{VNET}/{SUBNET}", "tags": {"poolsync": "true"}}],
        lbs=[{"name": LB, "sku": "Standard", "pools": [{"name": POOL}, {"name": ALL_POOL}]}],
    )
    doc["scale_sets"] = [
        {"name": UNIFORM, "capacity": uniform, "subnet": f"{VNET}/{SUBNET}"},
        {"name": FLEXIBLE, "mode": "Flexible", "capacity": flexible, "subnet": f"{VNET}/{SUBNET}"},
    ]
    return doc


@pytest.fixture
def sets(arm: Emulator, storage_connection_string: str) -> Iterator[Stack]:
    arm.reset(world())
    built = Stack(arm, runtime_env(arm.url, arm.ca_path, storage_connection_string, RULES))
    assert [o.status for o in built.runtime.reconciler.reconcile()] == ["written", "written"]
    built.emitted()
    arm.stats.reset()
    yield built
    set_runtime(None)


def instance_ips(arm: Emulator, name: str) -> set[str]:
    """The private IPs of a set's instances as Azure holds them (Uniform: under the set; Flexible: VMs);
    `name`: in the default resource group, or the set's id."""
    scale_set = name if name.startswith("/") else ids.scale_set(name)
    nics = arm.world.list_scale_set_nics(scale_set)
    if not nics:  # Flexible: the instances' ordinary NICs
        vms = arm.world.list_scale_set_instances(scale_set) or []
        nic_ids = [ref["id"] for vm in vms for ref in vm["properties"]["networkProfile"]["networkInterfaces"]]
        nics = [arm.world.get_nic(nic_id) for nic_id in nic_ids]
    return {n["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"] for n in nics}


def ips(stack: Stack, pool: str) -> set[str]:
    assert stack.arm.wait_operations_done(60)
    found = stack.arm.world.pool_address_ips(ids.pool(pool))
    assert len(found) == len(set(found)), found
    return set(found)


def scale(compute: ComputeManagementClient, name: str, capacity: int) -> None:
    compute.virtual_machine_scale_sets.begin_update(
        RESOURCE_GROUP, name, VirtualMachineScaleSetUpdate(sku=Sku(capacity=capacity))
    ).result()


def test_full_reconcile_puts_the_instances_of_the_named_sets_and_nothing_else(sets: Stack, arm: Emulator):
    assert ips(sets, POOL) == instance_ips(arm, UNIFORM) and len(ips(sets, POOL)) == 3
    assert ips(sets, ALL_POOL) == instance_ips(arm, FLEXIBLE) and len(ips(sets, ALL_POOL)) == 2
    solo = sets.nic_ip("solo-1-nic")
    assert solo not in ips(sets, POOL) | ips(sets, ALL_POOL)  # a VM of no scale set: no rule takes it


def test_uniform_scale_out_reads_the_set_by_lists_not_per_instance(sets: Stack, arm: Emulator, compute):
    scale(compute, UNIFORM, 8)
    events = sets.emitted()
    assert [(e["eventType"], e["subject"]) for e in events] == [(WRITE, ids.scale_set(UNIFORM))]

    sets.deliver(*events)

    assert ips(sets, POOL) == instance_ips(arm, UNIFORM) and len(ips(sets, POOL)) == 8
    assert sets.pending_intents() == 0
    instance_type = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines"
    assert arm.stats.requests("GET", instance_type) <= 2  # the instance list: one page, never 8 GETs
    assert arm.stats.requests("GET", "Microsoft.Network/networkInterfaces") == 0


def test_a_ninety_percent_scale_in_is_confirmed_by_the_sets_own_list(sets: Stack, arm: Emulator, compute):
    scale(compute, UNIFORM, 10)
    sets.deliver(*sets.emitted())
    assert len(ips(sets, POOL)) == 10

    scale(compute, UNIFORM, 1)
    sets.deliver(*sets.emitted())

    # not held by the guard: the set's own list confirms the nine removals
    assert ips(sets, POOL) == instance_ips(arm, UNIFORM) and len(ips(sets, POOL)) == 1
    assert sets.pending_intents() == 0


def test_uniform_delete_instances_and_instance_delete(sets: Stack, arm: Emulator, compute):
    compute.virtual_machine_scale_sets.begin_delete_instances(
        RESOURCE_GROUP, UNIFORM, VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=["0"])
    ).result()
    compute.virtual_machine_scale_set_vms.begin_delete(RESOURCE_GROUP, UNIFORM, "2").result()
    events = sets.emitted()
    assert [e["eventType"] for e in events] == [ACTION, DELETE]

    sets.deliver(*events)

    assert ips(sets, POOL) == instance_ips(arm, UNIFORM) and len(ips(sets, POOL)) == 1
    assert ips(sets, ALL_POOL) == instance_ips(arm, FLEXIBLE)  # the other set's pool is untouched


def test_reimage_keeps_the_entry(sets: Stack, arm: Emulator, compute):
    before = sets.arm.world.get_pool(ids.pool(POOL))["properties"]["loadBalancerBackendAddresses"]
    compute.virtual_machine_scale_set_vms.begin_reimage(RESOURCE_GROUP, UNIFORM, "1").result()
    compute.virtual_machine_scale_sets.begin_reimage(
        RESOURCE_GROUP, UNIFORM, VirtualMachineScaleSetVMInstanceIDs(instance_ids=["0", "2"])
    ).result()
    events = sets.emitted()
    assert [e["eventType"] for e in events] == [ACTION, ACTION]
    arm.stats.reset()

    sets.deliver(*events)

    assert arm.world.get_pool(ids.pool(POOL))["properties"]["loadBalancerBackendAddresses"] == before
    assert arm.stats.pool_writes(ids.pool(POOL)) == 0
    assert sets.pending_intents() == 0


def test_flexible_scale_out_scale_in_delete_instances_and_vm_delete(sets: Stack, arm: Emulator, compute):
    scale(compute, FLEXIBLE, 5)
    sets.deliver(*sets.emitted())
    assert ips(sets, ALL_POOL) == instance_ips(arm, FLEXIBLE) and len(ips(sets, ALL_POOL)) == 5

    names = [vm["name"] for vm in arm.world.list_scale_set_instances(ids.scale_set(FLEXIBLE)) or []]
    two = VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=names[:2])
    compute.virtual_machine_scale_sets.begin_delete_instances(RESOURCE_GROUP, FLEXIBLE, two).result()
    compute.virtual_machines.begin_delete(RESOURCE_GROUP, names[2]).result()  # an instance deleted as a VM
    sets.deliver(*sets.emitted())
    assert ips(sets, ALL_POOL) == instance_ips(arm, FLEXIBLE) and len(ips(sets, ALL_POOL)) == 2

    scale(compute, FLEXIBLE, 0)
    sets.deliver(*sets.emitted())
    assert ips(sets, ALL_POOL) == set()
    assert sets.pending_intents() == 0


def test_duplicates_and_reordering_end_in_the_same_pool(sets: Stack, arm: Emulator, compute):
    scale(compute, UNIFORM, 6)
    out = sets.emitted()
    compute.virtual_machine_scale_sets.begin_delete_instances(
        RESOURCE_GROUP, UNIFORM, VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=["4"])
    ).result()
    delete = sets.emitted()

    sets.deliver(*delete, *out, *delete, *out)  # late, duplicated, out of order

    assert ips(sets, POOL) == instance_ips(arm, UNIFORM) and len(ips(sets, POOL)) == 5


def test_a_standalone_vm_event_leaves_scale_set_pools_alone(sets: Stack, network, compute):
    before = (ips(sets, POOL), ips(sets, ALL_POOL))
    create_vm(network, compute, "solo-2")

    sets.deliver(*sets.emitted())

    assert (ips(sets, POOL), ips(sets, ALL_POOL)) == before


def test_full_reconcile_after_a_missed_scale_in_confirms_the_removals_by_direct_reads(
    sets: Stack, arm, compute
):
    scale(compute, UNIFORM, 10)
    sets.deliver(*sets.emitted())
    scale(compute, UNIFORM, 1)
    sets.emitted()  # the scale-in's event is lost: the hourly full reconcile must repair the pool

    outcomes = sets.runtime.reconciler.reconcile()

    # 9 of 10 managed entries go: beyond the guard's share, so each is confirmed by a GET of its NIC first
    assert [o.status for o in outcomes] == ["written", "unchanged"]
    assert ips(sets, POOL) == instance_ips(arm, UNIFORM) and len(ips(sets, POOL)) == 1
