"""Scale sets through the real azure-mgmt-compute / azure-mgmt-network clients: Uniform instances and
their NICs under the set, Flexible instances as ordinary VMs, capacity changes, instance actions, and
the Event Grid events ARM emits for them (one per request, none per instance)."""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.compute.models import (
    Sku,
    VirtualMachineScaleSetUpdate,
    VirtualMachineScaleSetVMInstanceIDs,
    VirtualMachineScaleSetVMInstanceRequiredIDs,
)
from azure.mgmt.network import NetworkManagementClient

from emulator import Emulator
from emulator.events import ACTION_SUCCESS, DELETE_SUCCESS, WRITE_SUCCESS
from emulator.topology import scale_set_body
from tests.emulator.conftest import COMPUTE_API, RawArm
from tests.fixtures.arm import RESOURCE_GROUP as RG
from tests.fixtures.arm import SUBSCRIPTION, ids, topology

SUBNET = ids.subnet()
IN_SUBNET = "vnet-app/default"


def with_sets(*entries: dict[str, Any], pool_addresses: list[str] | None = None) -> dict[str, Any]:
    doc = topology(0)
    doc["scale_sets"] = list(entries)
    if pool_addresses:
        pool = doc["load_balancers"][0]["pools"][0]
        pool["addresses"] = [
            {"name": f"a{i}", "ip": ip, "virtual_network": "vnet-app"} for i, ip in enumerate(pool_addresses)
        ]
    return doc


def instance_ids(compute: ComputeManagementClient, name: str) -> list[str]:
    return [vm.instance_id for vm in compute.virtual_machine_scale_set_vms.list(RG, name)]


def events_of(arm: Emulator) -> list[tuple[str, str, str]]:
    arm.wait_operations_done(5)
    return [(e["eventType"], e["data"]["operationName"], e["subject"]) for e in arm.events.published]


def test_uniform_instances_and_nics_live_under_the_set_and_list_in_pages(
    arm: Emulator, compute: ComputeManagementClient, network: NetworkManagementClient
) -> None:
    arm.reset(with_sets({"name": "web", "capacity": 5, "subnet": IN_SUBNET}))
    arm.page_size = 2  # five instances: three pages per list

    instances = list(compute.virtual_machine_scale_set_vms.list(RG, "web"))
    nics = list(network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(RG, "web"))

    assert [i.name for i in instances] == [f"web_{n}" for n in range(5)]
    assert instances[1].id == f"{ids.scale_set('web')}/virtualMachines/1"
    assert len(nics) == 5
    assert {nic.virtual_machine.id for nic in nics} == {i.id for i in instances}
    assert nics[0].id == f"{instances[0].id}/networkInterfaces/web-nic"
    addresses = [nic.ip_configurations[0].private_ip_address for nic in nics]
    assert addresses == ["10.0.0.4", "10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8"]  # from the subnet
    one = network.network_interfaces.get_virtual_machine_scale_set_network_interface(
        RG, "web", "3", "web-nic"
    )
    assert one.ip_configurations[0].private_ip_address == "10.0.0.7"
    per_instance = network.network_interfaces.list_virtual_machine_scale_set_vm_network_interfaces(
        RG, "web", "3"
    )
    assert [n.id for n in per_instance] == [one.id]
    # neither the subscription's VM list nor its NIC list has them
    assert list(compute.virtual_machines.list_all()) == []
    assert list(network.network_interfaces.list_all()) == []


def test_capacity_changes_scale_out_and_in_with_one_event_per_request(
    arm: Emulator, compute: ComputeManagementClient
) -> None:
    arm.reset(with_sets({"name": "web", "capacity": 2, "subnet": IN_SUBNET}))

    compute.virtual_machine_scale_sets.begin_update(
        RG, "web", VirtualMachineScaleSetUpdate(sku=Sku(capacity=6))
    ).result()
    assert instance_ids(compute, "web") == ["0", "1", "2", "3", "4", "5"]
    scale_set = compute.virtual_machine_scale_sets.get(RG, "web")
    scale_set.sku.capacity = 2
    compute.virtual_machine_scale_sets.begin_create_or_update(RG, "web", scale_set).result()

    assert instance_ids(compute, "web") == ["0", "1"]  # scale-in removes the highest instance ids
    set_id = ids.scale_set("web")
    assert events_of(arm) == [
        (WRITE_SUCCESS, "Microsoft.Compute/virtualMachineScaleSets/write", set_id),
        (WRITE_SUCCESS, "Microsoft.Compute/virtualMachineScaleSets/write", set_id),
    ]
    assert arm.events.published[0]["data"]["httpRequest"]["method"] == "PATCH"


def test_delete_instances_is_one_action_event_on_the_set(
    arm: Emulator, compute: ComputeManagementClient
) -> None:
    arm.reset(with_sets({"name": "web", "capacity": 4, "subnet": IN_SUBNET}))

    compute.virtual_machine_scale_sets.begin_delete_instances(
        RG, "web", VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=["0", "2"])
    ).result()

    assert instance_ids(compute, "web") == ["1", "3"]
    assert compute.virtual_machine_scale_sets.get(RG, "web").sku.capacity == 2
    [event] = arm.events.published
    assert (event["eventType"], event["subject"]) == (ACTION_SUCCESS, ids.scale_set("web"))
    assert event["data"]["operationName"] == "Microsoft.Compute/virtualMachineScaleSets/delete/action"
    assert event["data"]["httpRequest"]["url"].split("?")[0].endswith("/virtualMachineScaleSets/web/delete")
    with pytest.raises(HttpResponseError) as refused:
        compute.virtual_machine_scale_sets.begin_delete_instances(
            RG, "web", VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=["7"])
        ).result()
    assert refused.value.status_code == 400


def test_instance_delete_and_reimage(
    arm: Emulator, compute: ComputeManagementClient, network: NetworkManagementClient
) -> None:
    arm.reset(with_sets({"name": "web", "capacity": 3, "subnet": IN_SUBNET}))
    before = network.network_interfaces.get_virtual_machine_scale_set_network_interface(
        RG, "web", "1", "web-nic"
    )

    compute.virtual_machine_scale_set_vms.begin_delete(RG, "web", "2").result()
    compute.virtual_machine_scale_set_vms.begin_reimage(RG, "web", "1").result()
    compute.virtual_machine_scale_sets.begin_reimage(
        RG, "web", VirtualMachineScaleSetVMInstanceIDs(instance_ids=["0"])
    ).result()

    after = network.network_interfaces.get_virtual_machine_scale_set_network_interface(
        RG, "web", "1", "web-nic"
    )
    assert instance_ids(compute, "web") == ["0", "1"]
    assert (after.resource_guid, after.ip_configurations[0].private_ip_address) == (
        before.resource_guid,
        before.ip_configurations[0].private_ip_address,
    )  # reimage replaces the OS disk, not the NIC
    instance = f"{ids.scale_set('web')}/virtualMachines"
    assert events_of(arm) == [
        (DELETE_SUCCESS, "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/delete", f"{instance}/2"),
        (
            ACTION_SUCCESS,
            "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/reimage/action",
            f"{instance}/1",
        ),
        (ACTION_SUCCESS, "Microsoft.Compute/virtualMachineScaleSets/reimage/action", ids.scale_set("web")),
    ]


def test_manual_upgrade_applies_a_changed_network_profile_to_the_named_instances(
    arm: Emulator, compute: ComputeManagementClient, network: NetworkManagementClient
) -> None:
    arm.reset(with_sets({"name": "web", "capacity": 2, "subnet": IN_SUBNET}))
    body = scale_set_body("westeurope", SUBNET, 2, pool_ids=[ids.pool()], nic_name="web-nic")

    compute.virtual_machine_scale_sets.begin_create_or_update(RG, "web", body).result()
    stale = {
        vm.instance_id: vm.latest_model_applied
        for vm in compute.virtual_machine_scale_set_vms.list(RG, "web")
    }
    compute.virtual_machine_scale_sets.begin_update_instances(  # POST .../manualupgrade
        RG, "web", VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=["1"])
    ).result()

    assert stale == {"0": False, "1": False}
    pool = network.load_balancer_backend_address_pools.get(RG, "lb-app", "pool-app")
    members = [c.id for c in pool.backend_ip_configurations or []]
    assert members == [
        f"{ids.scale_set('web')}/virtualMachines/1/networkInterfaces/web-nic/ipConfigurations/ipconfig1"
    ]
    upgraded = {
        vm.instance_id: vm.latest_model_applied
        for vm in compute.virtual_machine_scale_set_vms.list(RG, "web")
    }
    assert upgraded == {"0": False, "1": True}
    assert events_of(arm)[-1][1] == "Microsoft.Compute/virtualMachineScaleSets/manualUpgrade/action"


def test_flexible_instances_are_ordinary_vms_and_nics(
    arm: Emulator, compute: ComputeManagementClient, network: NetworkManagementClient
) -> None:
    arm.reset(with_sets({"name": "flex", "mode": "Flexible", "capacity": 3, "subnet": IN_SUBNET}))

    vms = list(compute.virtual_machines.list(RG))
    nics = list(network.network_interfaces.list(RG))

    assert len(vms) == 3 and all(vm.name.startswith("flex_") and len(vm.name) == 13 for vm in vms)
    assert {vm.virtual_machine_scale_set.id for vm in vms} == {ids.scale_set("flex")}
    assert sorted(n.virtual_machine.id for n in nics) == sorted(vm.id for vm in vms)
    assert (
        list(network.network_interfaces.list_virtual_machine_scale_set_network_interfaces(RG, "flex")) == []
    )
    assert sorted(i.name for i in compute.virtual_machine_scale_set_vms.list(RG, "flex")) == sorted(
        v.name for v in vms
    )

    compute.virtual_machines.begin_delete(RG, vms[0].name).result()  # an instance deleted as a VM
    compute.virtual_machine_scale_sets.begin_delete_instances(
        RG, "flex", VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=[vms[1].name])
    ).result()

    assert [vm.name for vm in compute.virtual_machines.list(RG)] == [vms[2].name]
    assert [n.name for n in network.network_interfaces.list(RG)] == [
        f"{vms[2].name}-flex-nic"
    ]  # deleteOption Delete
    assert compute.virtual_machine_scale_sets.get(RG, "flex").sku.capacity == 1
    assert [(kind, op) for kind, op, _ in events_of(arm)] == [
        (DELETE_SUCCESS, "Microsoft.Compute/virtualMachines/delete"),
        (DELETE_SUCCESS, "Microsoft.Network/networkInterfaces/delete"),
        (ACTION_SUCCESS, "Microsoft.Compute/virtualMachineScaleSets/delete/action"),
    ]


def test_a_scale_out_into_a_pool_managed_by_ip_is_refused(
    arm: Emulator, compute: ComputeManagementClient
) -> None:
    arm.reset(with_sets(pool_addresses=["10.0.0.200"]))
    body = scale_set_body("westeurope", SUBNET, 2, pool_ids=[ids.pool()])

    with pytest.raises(HttpResponseError) as refused:
        compute.virtual_machine_scale_sets.begin_create_or_update(RG, "web", body).result()

    assert refused.value.status_code == 400
    assert refused.value.error.code == "BackendAddressPoolCannotMixNicAndIpBasedMembers"
    assert arm.world.get_scale_set(ids.scale_set("web")) is None


def test_instance_faults_and_failed_actions(
    arm: Emulator, compute: ComputeManagementClient, raw: RawArm
) -> None:
    arm.reset(with_sets({"name": "web", "capacity": 1, "subnet": IN_SUBNET}))
    arm.world.fail_next_instances(ids.scale_set("web"), 1)
    compute.virtual_machine_scale_sets.begin_update(
        RG, "web", VirtualMachineScaleSetUpdate(sku=Sku(capacity=3))
    ).result()

    states = {
        vm.instance_id: vm.provisioning_state for vm in compute.virtual_machine_scale_set_vms.list(RG, "web")
    }
    assert states == {"0": "Succeeded", "1": "Failed", "2": "Succeeded"}

    arm.faults.add("lro_failed", method="POST", path="/virtualMachineScaleSets/web/delete", times=1)
    with pytest.raises(HttpResponseError):
        compute.virtual_machine_scale_sets.begin_delete_instances(
            RG, "web", VirtualMachineScaleSetVMInstanceRequiredIDs(instance_ids=["2"])
        ).result()
    assert instance_ids(compute, "web") == ["0", "1", "2"]  # a failed delete removes nothing
    arm.faults.add("429", path="/virtualMachineScaleSets/web/virtualMachines", method="GET", times=1)
    throttled = raw.get(
        f"{ids.scale_set('web')}/virtualMachines/0/networkInterfaces", api_version="2018-10-01"
    )
    assert throttled.status_code == 429


def test_the_azure_profile_serves_scale_sets_with_its_operation_contract(
    arm: Emulator, compute: ComputeManagementClient, raw: RawArm
) -> None:
    arm.set_profile("azure", operation_seconds=0.2, lro_retry_after=1)
    arm.reset(with_sets({"name": "web", "capacity": 1, "subnet": IN_SUBNET}))

    answer = raw.session.post(
        raw.url(f"{ids.scale_set('web')}/delete", COMPUTE_API),
        json={"instanceIds": ["0"]},
        verify=raw.ca_path,
    )

    assert answer.status_code == 202
    assert answer.headers["Retry-After"] == "1" and "Azure-AsyncOperation" in answer.headers
    assert arm.wait_operations_done(5)
    assert instance_ids(compute, "web") == []
    assert SUBSCRIPTION in arm.events.published[0]["topic"]


def test_a_scale_set_action_needs_write_rights_on_the_set(arm: Emulator, raw: RawArm) -> None:
    arm.reset(with_sets({"name": "web", "capacity": 1, "subnet": IN_SUBNET}))
    arm.configure_rbac({"test-token": {"read": [f"/subscriptions/{SUBSCRIPTION}"]}})

    answer = raw.session.post(
        raw.url(f"{ids.scale_set('web')}/delete", COMPUTE_API),
        json={"instanceIds": ["0"]},
        verify=raw.ca_path,
    )

    assert answer.status_code == 403 and answer.json()["error"]["code"] == "AuthorizationFailed"
    assert arm.world.instance_count(ids.scale_set("web")) == 1
