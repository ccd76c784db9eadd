"""VM/NIC semantics like Compute + NRP, and the Event Grid events they emit."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.eventgrid import EventGridEvent, SystemEventNames
from azure.mgmt.compute.models import NetworkInterfaceReference

from tests.fixtures.arm import RESOURCE_GROUP, SUBSCRIPTION, ids, topology

RG = RESOURCE_GROUP


def two_vms():
    return topology(
        vms=[
            {"name": "keeper", "subnet": "vnet-app/default", "delete_option": "Detach", "tags": {"app": "a"}},
            {"name": "goner", "subnet": "vnet-app/default", "delete_option": "Delete"},
        ]
    )


def test_vm_delete_detaches_or_deletes_nics_by_delete_option(arm, network, compute):
    arm.reset(two_vms())
    compute.virtual_machines.begin_delete(RG, "keeper").result()
    compute.virtual_machines.begin_delete(RG, "goner").result()

    kept = network.network_interfaces.get(RG, "keeper-nic")
    assert kept.virtual_machine is None
    with pytest.raises(ResourceNotFoundError):
        network.network_interfaces.get(RG, "goner-nic")


def test_vm_put_attaches_nic_and_refuses_a_nic_of_another_vm(arm, network, compute):
    arm.reset(two_vms())
    free_nic = network.network_interfaces.get(RG, "keeper-nic")
    vm = compute.virtual_machines.get(RG, "keeper")
    vm.network_profile.network_interfaces.append(
        NetworkInterfaceReference(id=ids.nic("goner-nic"), primary=False)
    )
    with pytest.raises(HttpResponseError) as refused:
        compute.virtual_machines.begin_create_or_update(RG, "keeper", vm)
    assert refused.value.status_code == 400
    assert refused.value.error.code == "NicInUse"
    assert network.network_interfaces.get(RG, "keeper-nic").virtual_machine.id == vm.id
    assert free_nic.primary is True


def test_nic_update_keeps_the_vm_back_reference_and_moves_subnet(arm, network):
    arm.reset(
        topology(
            vms=1,
            vnets=[
                {
                    "name": "vnet-app",
                    "address_space": ["10.0.0.0/16"],
                    "subnets": [
                        {"name": "default", "prefix": "10.0.0.0/24"},
                        {"name": "b", "prefix": "10.0.1.0/24"},
                    ],
                }
            ],
        )
    )
    nic = network.network_interfaces.get(RG, "web-1-nic")
    config = nic.ip_configurations[0]
    config.subnet.id = ids.subnet(name="b")
    config.private_ip_address = None
    config.private_ip_allocation_method = "Dynamic"
    moved = network.network_interfaces.begin_create_or_update(RG, "web-1-nic", nic).result()
    assert moved.ip_configurations[0].private_ip_address == "10.0.1.4"
    assert moved.virtual_machine.id == ids.vm("web-1")


def test_dynamic_addresses_are_allocated_in_order_after_the_reserved_ones(arm, network):
    arm.reset(topology(vms=3))
    ips = [
        network.network_interfaces.get(RG, f"web-{i}-nic").ip_configurations[0].private_ip_address
        for i in range(1, 4)
    ]
    assert ips == ["10.0.0.4", "10.0.0.5", "10.0.0.6"]


def test_private_endpoint_nic_is_listed_with_its_owner(arm, network):
    arm.reset(topology(nics=[{"name": "pe-nic", "subnet": "vnet-app/default", "private_endpoint": "pe-sql"}]))
    nic = network.network_interfaces.get(RG, "pe-nic")
    assert nic.private_endpoint.id.endswith("/privateEndpoints/pe-sql")
    assert nic.virtual_machine is None


def test_write_and_delete_events_reach_the_webhook_in_event_grid_shape(arm, network, compute, webhook):
    arm.reset(two_vms())
    arm.set_event_webhook(webhook.url)
    vm = compute.virtual_machines.get(RG, "keeper")
    vm.tags = {"app": "b"}
    compute.virtual_machines.begin_create_or_update(RG, "keeper", vm).result()
    compute.virtual_machines.begin_delete(RG, "goner").result()
    assert arm.wait_events_delivered(timeout=60)

    assert {d.headers["aeg-event-type"] for d in webhook.deliveries} == {"Notification"}
    by_subject = {(e["eventType"], e["subject"]) for e in webhook.events}
    assert by_subject == {
        (SystemEventNames.ResourceWriteSuccessEventName, ids.vm("keeper")),
        (SystemEventNames.ResourceDeleteSuccessEventName, ids.vm("goner")),
        (SystemEventNames.ResourceDeleteSuccessEventName, ids.nic("goner-nic")),
    }
    write = next(e for e in webhook.events if e["eventType"].endswith("WriteSuccess"))
    parsed = EventGridEvent.from_dict(write)  # the SDK model the Function app uses
    assert parsed.topic == f"/subscriptions/{SUBSCRIPTION}"
    assert write["metadataVersion"] == "1"
    data = write["data"]
    assert data["operationName"] == "Microsoft.Compute/virtualMachines/write"
    assert data["resourceProvider"] == "Microsoft.Compute"
    assert data["resourceUri"] == ids.vm("keeper")
    assert data["status"] == "Succeeded"
    assert data["subscriptionId"] == SUBSCRIPTION
    for key in ("tenantId", "correlationId", "authorization", "claims", "httpRequest"):
        assert data[key]
    assert data["httpRequest"]["method"] == "PUT"
    nic_delete = next(e for e in webhook.events if e["subject"] == ids.nic("goner-nic"))
    assert nic_delete["data"]["operationName"] == "Microsoft.Network/networkInterfaces/delete"


def test_nic_writes_emit_events_and_failed_writes_do_not(arm, raw, webhook):
    arm.reset(topology(vms=1))
    arm.set_event_webhook(webhook.url)
    nic = raw.get(ids.nic("web-1-nic")).json()
    assert raw.put(ids.nic("web-1-nic"), nic).status_code == 200
    bad = {**nic, "properties": {"ipConfigurations": []}}
    assert raw.put(ids.nic("web-1-nic"), bad).status_code == 400
    assert arm.wait_operations_done(timeout=60)
    assert arm.wait_events_delivered(timeout=60)
    assert [(e["eventType"], e["subject"]) for e in webhook.events] == [
        (SystemEventNames.ResourceWriteSuccessEventName, ids.nic("web-1-nic"))
    ]


def test_delivery_is_retried_when_the_webhook_fails(arm, raw, webhook):
    arm.reset(topology(vms=1))
    webhook.fail_first = 2
    arm.set_event_webhook(webhook.url)
    nic = raw.get(ids.nic("web-1-nic")).json()
    raw.put(ids.nic("web-1-nic"), nic)
    assert arm.wait_operations_done(timeout=60)
    assert arm.wait_events_delivered(timeout=60)
    assert len(webhook.events) == 1
    assert arm.stats.snapshot()["events"] == {"retried": 2, "delivered": 1}


def test_pool_and_lb_writes_emit_no_events(arm, raw, webhook):
    arm.reset(topology())
    arm.set_event_webhook(webhook.url)
    raw.put(ids.pool(), {"properties": {}})
    assert arm.wait_operations_done(timeout=60)
    assert arm.wait_events_delivered(timeout=60)
    assert webhook.events == []
