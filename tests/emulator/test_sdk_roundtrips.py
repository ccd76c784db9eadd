"""Create / get / list / update / delete of every resource, through the unmodified SDK over HTTPS."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.mgmt.compute.models import (
    HardwareProfile,
    NetworkInterfaceReference,
    NetworkProfile,
    VirtualMachine,
)
from azure.mgmt.network.models import (
    AddressSpace,
    BackendAddressPool,
    FrontendIPConfiguration,
    LoadBalancer,
    LoadBalancerBackendAddress,
    LoadBalancerSku,
    NetworkInterface,
    NetworkInterfaceIPConfiguration,
    Subnet,
    SubResource,
    VirtualNetwork,
)

from tests.fixtures.arm import LB, LOCATION, POOL, RESOURCE_GROUP, SUBSCRIPTION, ids, topology

RG = RESOURCE_GROUP


def make_vnet(network, name="vnet-x", prefix="10.5.0.0/16", subnet="10.5.1.0/24"):
    body = VirtualNetwork(
        location=LOCATION,
        address_space=AddressSpace(address_prefixes=[prefix]),
        subnets=[Subnet(name="default", address_prefix=subnet)],
    )
    return network.virtual_networks.begin_create_or_update(RG, name, body).result()


def make_nic(network, name, subnet_id, ip=None, pools=None):
    config = NetworkInterfaceIPConfiguration(
        name="ipconfig1",
        subnet=Subnet(id=subnet_id),
        private_ip_address=ip,
        private_ip_allocation_method="Static" if ip else "Dynamic",
        primary=True,
        load_balancer_backend_address_pools=[BackendAddressPool(id=p) for p in pools or []],
    )
    body = NetworkInterface(location=LOCATION, ip_configurations=[config])
    return network.network_interfaces.begin_create_or_update(RG, name, body).result()


def test_virtual_network_and_subnet_lifecycle(arm, network):
    created = make_vnet(network)
    assert created.provisioning_state == "Succeeded"
    assert created.etag.startswith('W/"')
    assert [s.name for s in created.subnets] == ["default"]
    assert created.subnets[0].etag == created.etag  # children carry the parent's etag

    subnet = network.subnets.begin_create_or_update(
        RG, "vnet-x", "second", Subnet(address_prefix="10.5.2.0/24")
    ).result()
    assert subnet.address_prefix == "10.5.2.0/24"
    assert sorted(s.name for s in network.subnets.list(RG, "vnet-x")) == ["default", "second"]
    assert network.subnets.get(RG, "vnet-x", "second").id.endswith("/virtualNetworks/vnet-x/subnets/second")

    network.subnets.begin_delete(RG, "vnet-x", "second").result()
    assert [s.name for s in network.subnets.list(RG, "vnet-x")] == ["default"]
    assert [v.name for v in network.virtual_networks.list(RG)] == ["vnet-x"]
    assert [v.name for v in network.virtual_networks.list_all()] == ["vnet-x"]

    network.virtual_networks.begin_delete(RG, "vnet-x").result()
    with pytest.raises(ResourceNotFoundError):
        network.virtual_networks.get(RG, "vnet-x")


def test_network_interface_lifecycle_with_static_and_dynamic_addresses(arm, network):
    vnet = make_vnet(network)
    subnet_id = vnet.subnets[0].id
    static = make_nic(network, "nic-static", subnet_id, ip="10.5.1.50")
    dynamic = make_nic(network, "nic-dynamic", subnet_id)

    assert static.ip_configurations[0].private_ip_address == "10.5.1.50"
    assert static.ip_configurations[0].etag == static.etag
    # Azure hands out the first free address after the 4 reserved ones
    assert dynamic.ip_configurations[0].private_ip_address == "10.5.1.4"
    assert dynamic.ip_configurations[0].private_ip_address_version == "IPv4"
    assert dynamic.ip_configurations[0].subnet.id.lower() == subnet_id.lower()

    fetched = network.network_interfaces.get(RG, "nic-static")
    fetched.ip_configurations[0].private_ip_address = "10.5.1.60"
    fetched.tags = {"owner": "team-a"}
    updated = network.network_interfaces.begin_create_or_update(RG, "nic-static", fetched).result()
    assert updated.ip_configurations[0].private_ip_address == "10.5.1.60"
    assert updated.tags == {"owner": "team-a"}
    assert updated.etag != static.etag

    assert sorted(n.name for n in network.network_interfaces.list(RG)) == ["nic-dynamic", "nic-static"]
    network.network_interfaces.begin_delete(RG, "nic-static").result()
    assert [n.name for n in network.network_interfaces.list_all()] == ["nic-dynamic"]


def test_virtual_machine_lifecycle_sets_and_clears_nic_back_reference(arm, network, compute):
    vnet = make_vnet(network)
    nic = make_nic(network, "vm1-nic", vnet.subnets[0].id)
    body = VirtualMachine(
        location=LOCATION,
        tags={"role": "web"},
        hardware_profile=HardwareProfile(vm_size="Standard_B2s"),
        network_profile=NetworkProfile(
            network_interfaces=[NetworkInterfaceReference(id=nic.id, primary=True, delete_option="Detach")]
        ),
    )
    vm = compute.virtual_machines.begin_create_or_update(RG, "vm1", body).result()
    assert vm.provisioning_state == "Succeeded"
    assert vm.tags == {"role": "web"}
    assert vm.network_profile.network_interfaces[0].id == nic.id
    assert network.network_interfaces.get(RG, "vm1-nic").virtual_machine.id == vm.id

    vm.tags = {"role": "api"}
    assert compute.virtual_machines.begin_create_or_update(RG, "vm1", vm).result().tags == {"role": "api"}
    assert [v.name for v in compute.virtual_machines.list(RG)] == ["vm1"]
    assert [v.name for v in compute.virtual_machines.list_all()] == ["vm1"]

    compute.virtual_machines.begin_delete(RG, "vm1").result()
    with pytest.raises(ResourceNotFoundError):
        compute.virtual_machines.get(RG, "vm1")
    assert network.network_interfaces.get(RG, "vm1-nic").virtual_machine is None


def test_load_balancer_and_pool_lifecycle(arm, network):
    vnet = make_vnet(network)
    lb_body = LoadBalancer(
        location=LOCATION,
        sku=LoadBalancerSku(name="Standard"),
        frontend_ip_configurations=[
            FrontendIPConfiguration(
                name="fe",
                subnet=Subnet(id=vnet.subnets[0].id),
                private_ip_address="10.5.1.10",
                private_ip_allocation_method="Static",
            )
        ],
        backend_address_pools=[BackendAddressPool(name="pool-a")],
    )
    lb = network.load_balancers.begin_create_or_update(RG, "lb-x", lb_body).result()
    assert lb.sku.name == "Standard"
    assert lb.provisioning_state == "Succeeded"
    assert lb.backend_address_pools[0].id.endswith("/loadBalancers/lb-x/backendAddressPools/pool-a")

    pool = BackendAddressPool(
        load_balancer_backend_addresses=[
            LoadBalancerBackendAddress(
                name="web-1", ip_address="10.5.1.20", virtual_network=SubResource(id=vnet.id)
            ),
            LoadBalancerBackendAddress(
                name="web-2",
                ip_address="10.5.1.21",
                virtual_network=SubResource(id=vnet.id),
                admin_state="Down",
            ),
        ]
    )
    created = network.load_balancer_backend_address_pools.begin_create_or_update(
        RG, "lb-x", "pool-b", pool
    ).result()
    assert created.provisioning_state == "Succeeded"
    assert [(a.name, a.ip_address, a.admin_state) for a in created.load_balancer_backend_addresses] == [
        ("web-1", "10.5.1.20", None),
        ("web-2", "10.5.1.21", "Down"),
    ]
    names = sorted(p.name for p in network.load_balancer_backend_address_pools.list(RG, "lb-x"))
    assert names == ["pool-a", "pool-b"]
    assert sorted(p.name for p in network.load_balancers.get(RG, "lb-x").backend_address_pools) == names

    network.load_balancer_backend_address_pools.begin_delete(RG, "lb-x", "pool-b").result()
    with pytest.raises(ResourceNotFoundError) as missing:
        network.load_balancer_backend_address_pools.get(RG, "lb-x", "pool-b")
    assert missing.value.error.code == "NotFound"

    network.load_balancers.begin_delete(RG, "lb-x").result()
    assert list(network.load_balancers.list_all()) == []


def test_pool_address_shows_the_nic_ipconfig_owning_its_ip(arm, network):
    arm.reset(topology(vms=1))
    nic = network.network_interfaces.get(RG, "web-1-nic")
    ip = nic.ip_configurations[0].private_ip_address
    pool = BackendAddressPool(
        load_balancer_backend_addresses=[
            LoadBalancerBackendAddress(
                name="web-1", ip_address=ip, virtual_network=SubResource(id=ids.vnet())
            ),
            LoadBalancerBackendAddress(
                name="stray", ip_address="10.0.0.200", virtual_network=SubResource(id=ids.vnet())
            ),
        ]
    )
    result = network.load_balancer_backend_address_pools.begin_create_or_update(RG, LB, POOL, pool).result()
    owned, stray = result.load_balancer_backend_addresses
    assert owned.network_interface_ip_configuration.id == nic.ip_configurations[0].id
    assert stray.network_interface_ip_configuration is None


def test_nic_based_pool_lists_backend_ip_configurations(arm, network):
    arm.reset(topology(vms=2))
    nic = network.network_interfaces.get(RG, "web-2-nic")
    nic.ip_configurations[0].load_balancer_backend_address_pools = [BackendAddressPool(id=ids.pool())]
    network.network_interfaces.begin_create_or_update(RG, "web-2-nic", nic).result()

    pool = network.load_balancer_backend_address_pools.get(RG, LB, POOL)
    assert [c.id for c in pool.backend_ip_configurations] == [nic.ip_configurations[0].id]
    assert pool.load_balancer_backend_addresses in (None, [])


def test_missing_resources_answer_like_arm(arm, network, compute):
    with pytest.raises(ResourceNotFoundError) as lb_missing:
        network.load_balancers.get(RG, "nope")
    assert lb_missing.value.error.code == "ResourceNotFound"
    with pytest.raises(ResourceNotFoundError) as vm_missing:
        compute.virtual_machines.get(RG, "nope")
    assert vm_missing.value.error.code == "ResourceNotFound"
    with pytest.raises(HttpResponseError) as parent_missing:
        network.load_balancer_backend_address_pools.begin_create_or_update(
            RG, "nope", "pool", BackendAddressPool()
        )
    assert parent_missing.value.status_code == 404
    assert parent_missing.value.error.code == "ParentResourceNotFound"


def test_delete_of_absent_resource_succeeds_without_operation(arm, network, raw):
    path = (
        f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Network/loadBalancers/absent"
    )
    assert raw.delete(path).status_code == 204
    network.load_balancers.begin_delete(RG, "absent").result()  # the SDK accepts 204 as done


def test_ids_are_case_insensitive_and_keep_original_casing(arm, network, raw):
    arm.reset(topology())
    path = ids.lb().lower().replace("loadbalancers", "LOADBALANCERS")
    response = raw.get(path)
    assert response.status_code == 200
    assert response.json()["id"] == ids.lb()


def test_lb_put_keeps_pool_addresses_owned_by_the_pool_endpoint(arm, network):
    arm.reset(topology())
    network.load_balancer_backend_address_pools.begin_create_or_update(
        RG,
        LB,
        POOL,
        BackendAddressPool(
            load_balancer_backend_addresses=[
                LoadBalancerBackendAddress(
                    name="web-1", ip_address="10.0.0.20", virtual_network=SubResource(id=ids.vnet())
                )
            ]
        ),
    ).result()
    lb = network.load_balancers.get(RG, LB)
    lb.tags = {"touched": "yes"}
    lb.backend_address_pools[0].load_balancer_backend_addresses = []  # ignored on a Standard LB
    updated = network.load_balancers.begin_create_or_update(RG, LB, lb).result()
    assert updated.tags == {"touched": "yes"}
    pool = network.load_balancer_backend_address_pools.get(RG, LB, POOL)
    assert [a.ip_address for a in pool.load_balancer_backend_addresses] == ["10.0.0.20"]
    assert arm.stats.lb_writes(ids.lb()) == 2
    assert arm.stats.pool_writes(ids.lb()) == 1
