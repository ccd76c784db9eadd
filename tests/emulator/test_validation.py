"""Platform validation: each rule answers 400/404 with an Azure-shaped error and changes nothing."""

from __future__ import annotations

import pytest

from tests.emulator.conftest import NETWORK_API
from tests.fixtures.arm import SUBSCRIPTION, ids, topology


def address(name, ip, vnet=None, subnet=None, admin_state=None):
    props = {"ipAddress": ip}
    if vnet is not False:
        props["virtualNetwork"] = {"id": vnet or ids.vnet()}
    if subnet:
        props["subnet"] = {"id": subnet}
    if admin_state:
        props["adminState"] = admin_state
    return {"name": name, "properties": props}


def put_addresses(raw, *addresses, pool=None):
    return raw.put(pool or ids.pool(), {"properties": {"loadBalancerBackendAddresses": list(addresses)}})


def assert_error(response, status, code):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    assert error["message"]


@pytest.fixture
def world(arm):
    arm.reset(
        topology(
            vms=1,
            vnets=[
                {
                    "name": "vnet-app",
                    "address_space": ["10.0.0.0/16"],
                    "subnets": [
                        {"name": "default", "prefix": "10.0.0.0/24"},
                        {"name": "other", "prefix": "10.0.1.0/24"},
                    ],
                },
                {
                    "name": "vnet-far",
                    "address_space": ["172.16.0.0/16"],
                    "subnets": [{"name": "default", "prefix": "172.16.0.0/24"}],
                },
            ],
            lbs=[
                {"name": "lb-app", "sku": "Standard", "pools": [{"name": "pool-app"}, {"name": "pool-nic"}]},
                {"name": "lb-basic", "sku": "Basic", "pools": [{"name": "pool-basic"}]},
            ],
        )
    )
    return arm


def test_ip_based_addresses_need_a_standard_sku(world, raw):
    response = put_addresses(raw, address("a", "10.0.0.10"), pool=ids.pool("pool-basic", lb="lb-basic"))
    assert_error(response, 400, "BackendAddressPoolWithIpAddressesRequiresStandardSku")


def test_ip_outside_the_virtual_network_is_rejected(world, raw):
    assert_error(
        put_addresses(raw, address("a", "192.168.0.4")), 400, "BackendAddressIpAddressNotInVirtualNetwork"
    )


def test_ip_outside_the_given_subnet_is_rejected(world, raw):
    response = put_addresses(raw, address("a", "10.0.0.10", subnet=ids.subnet(name="other")))
    assert_error(response, 400, "BackendAddressIpAddressNotInSubnet")
    accepted = put_addresses(raw, address("a", "10.0.1.10", subnet=ids.subnet(name="other")))
    assert accepted.status_code == 200


def test_pool_cannot_mix_nic_based_and_ip_based_members(world, raw, network):
    nic = network.network_interfaces.get("rg-poolsync", "web-1-nic")
    nic.ip_configurations[0].load_balancer_backend_address_pools = [{"id": ids.pool("pool-nic")}]
    network.network_interfaces.begin_create_or_update("rg-poolsync", "web-1-nic", nic).result()

    response = put_addresses(raw, address("a", "10.0.0.10"), pool=ids.pool("pool-nic"))
    assert_error(response, 400, "BackendAddressPoolCannotMixNicAndIpBasedMembers")

    # and the other way round: a NIC cannot join a pool that has IP-based members
    assert put_addresses(raw, address("a", "10.0.0.10")).status_code == 200
    world.complete_operations()
    body = raw.get(ids.nic("web-1-nic")).json()
    body["properties"]["ipConfigurations"][0]["properties"]["loadBalancerBackendAddressPools"] = [
        {"id": ids.pool()}
    ]
    assert_error(raw.put(ids.nic("web-1-nic"), body), 400, "BackendAddressPoolCannotMixNicAndIpBasedMembers")


def test_duplicate_address_names_are_rejected(world, raw):
    response = put_addresses(raw, address("same", "10.0.0.10"), address("same", "10.0.0.11"))
    assert_error(response, 400, "DuplicateResourceName")


def test_duplicate_ip_addresses_are_rejected(world, raw):
    response = put_addresses(raw, address("a", "10.0.0.10"), address("b", "10.0.0.10"))
    assert_error(response, 400, "DuplicateBackendAddressIpAddress")


@pytest.mark.parametrize("bad_ip", ["10.0.0.300", "not-an-ip", "10.0.0"])
def test_malformed_ip_is_rejected(world, raw, bad_ip):
    assert_error(put_addresses(raw, address("a", bad_ip)), 400, "InvalidIPAddressFormat")


def test_referenced_virtual_network_and_subnet_must_exist(world, raw):
    ghost_vnet = ids.vnet("ghost")
    assert_error(
        put_addresses(raw, address("a", "10.0.0.10", vnet=ghost_vnet)), 400, "InvalidResourceReference"
    )
    ghost_subnet = ids.subnet(name="ghost")
    response = put_addresses(raw, address("a", "10.0.0.10", subnet=ghost_subnet))
    assert_error(response, 400, "InvalidResourceReference")


def test_address_without_virtual_network_is_rejected(world, raw):
    response = put_addresses(raw, address("a", "10.0.0.10", vnet=False))
    assert_error(response, 400, "BackendAddressMustReferenceVirtualNetwork")


def test_invalid_admin_state_is_rejected(world, raw):
    assert_error(
        put_addresses(raw, address("a", "10.0.0.10", admin_state="Sideways")), 400, "InvalidRequestFormat"
    )


def test_rejected_write_leaves_the_pool_unchanged(world, raw):
    before = raw.get(ids.pool()).json()
    put_addresses(raw, address("a", "10.0.0.10"), address("b", "999.1.1.1"))
    assert raw.get(ids.pool()).json() == before


def test_bad_json_is_invalid_request_content(world, raw):
    response = raw.session.put(
        raw.url(ids.pool()),
        data=b"{not json",
        headers={"Content-Type": "application/json"},
        verify=raw.ca_path,
        timeout=30,
    )
    assert_error(response, 400, "InvalidRequestContent")


def test_unknown_subscription_is_subscription_not_found(world, raw):
    path = ids.lb().replace(SUBSCRIPTION, "11111111-2222-3333-4444-555555555555")
    assert_error(raw.get(path), 404, "SubscriptionNotFound")


def test_requests_without_a_bearer_token_are_401(world, raw):
    def get(authorization):
        # None drops the session's default header
        headers = {"Authorization": authorization}
        return raw.session.get(raw.url(ids.lb()), headers=headers, verify=raw.ca_path, timeout=30)

    assert_error(get(None), 401, "AuthenticationFailed")
    assert_error(get("Basic dXNlcjpwYXNz"), 401, "InvalidAuthenticationToken")
    assert get("Bearer anything-goes").status_code == 200


def test_api_version_is_required_and_checked(world, raw):
    assert_error(raw.get(ids.lb(), api_version=""), 400, "MissingApiVersionParameter")
    assert_error(raw.get(ids.lb(), api_version="yesterday"), 400, "InvalidApiVersionParameter")
    assert raw.get(ids.lb(), api_version=NETWORK_API).status_code == 200


def test_static_nic_ip_must_be_free_and_inside_the_subnet(world, raw):
    taken = raw.get(ids.nic("web-1-nic")).json()["properties"]["ipConfigurations"][0]["properties"][
        "privateIPAddress"
    ]

    def nic(ip):
        return {
            "location": "westeurope",
            "properties": {
                "ipConfigurations": [
                    {
                        "name": "ipconfig1",
                        "properties": {
                            "subnet": {"id": ids.subnet()},
                            "privateIPAllocationMethod": "Static",
                            "privateIPAddress": ip,
                        },
                    }
                ]
            },
        }

    assert_error(raw.put(ids.nic("nic-b"), nic(taken)), 400, "PrivateIPAddressInUse")
    assert_error(raw.put(ids.nic("nic-b"), nic("10.0.5.5")), 400, "PrivateIPAddressNotInSubnet")
    assert raw.put(ids.nic("nic-b"), nic("10.0.0.99")).status_code == 201


def test_location_is_required_on_create(world, raw):
    response = raw.put(ids.lb("lb-new"), {"sku": {"name": "Standard"}, "properties": {}})
    assert_error(response, 400, "LocationRequired")


def test_nic_attached_to_a_vm_cannot_be_deleted(world, raw):
    assert_error(raw.delete(ids.nic("web-1-nic")), 400, "NicInUse")
