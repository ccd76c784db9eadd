"""Role assignments: lists show only what a principal may read, other calls outside its scopes -> 403."""

from __future__ import annotations

import base64
import json
from dataclasses import replace

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.network.models import BackendAddressPool

from shared.azure.clients import compute_client, network_client
from tests.fixtures.arm import RESOURCE_GROUP, SUBSCRIPTION, ids, topology

OTHER_RG = "rg-other"
SUB_SCOPE = f"/subscriptions/{SUBSCRIPTION}"
RG_SCOPE = f"{SUB_SCOPE}/resourceGroups/{RESOURCE_GROUP}"


def unsigned_jwt(claims: dict) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.sig"


def two_groups():
    """web-1 in the default group, far-1 in rg-other; one LB in the default group."""
    world = topology(vms=1)
    world["virtual_machines"].append(
        {"name": "far-1", "resource_group": OTHER_RG, "subnet": ids.subnet(), "tags": {}}
    )
    return world


def clients_for(arm_settings, token):
    settings = replace(arm_settings, static_token=token)
    return network_client(settings, SUBSCRIPTION), compute_client(settings, SUBSCRIPTION)


def test_lists_show_only_what_the_principal_may_read(arm, arm_settings):
    arm.reset(two_groups())
    arm.configure_rbac({"reader": {"read": [RG_SCOPE]}})
    network, compute = clients_for(arm_settings, "reader")

    assert [vm.name for vm in compute.virtual_machines.list_all()] == ["web-1"]
    assert {nic.name for nic in network.network_interfaces.list_all()} == {"web-1-nic"}
    assert list(network.network_interfaces.list(OTHER_RG)) == []
    # once RBAC is on, a principal without assignments sees nothing (and gets no error)
    stranger, _ = clients_for(arm_settings, "stranger")
    assert list(stranger.load_balancers.list_all()) == []


def test_get_and_put_outside_the_scopes_are_refused_with_authorization_failed(arm, arm_settings):
    arm.reset(two_groups())
    arm.configure_rbac({"reader": {"read": [SUB_SCOPE], "write": [f"{RG_SCOPE}/providers/x/y/z"]}})
    network, compute = clients_for(arm_settings, "reader")
    assert compute.virtual_machines.get(OTHER_RG, "far-1").name == "far-1"  # read over the subscription

    with pytest.raises(HttpResponseError) as refused:
        network.load_balancer_backend_address_pools.begin_create_or_update(
            RESOURCE_GROUP, "lb-app", "pool-app", BackendAddressPool()
        )
    assert refused.value.status_code == 403
    assert refused.value.error.code == "AuthorizationFailed"
    message = refused.value.error.message
    assert "'reader'" in message
    assert "'Microsoft.Network/loadBalancers/backendAddressPools/write'" in message
    assert f"over scope '{ids.pool()}'" in message
    assert arm.stats.lb_writes(ids.lb()) == 0


def test_write_scope_on_a_load_balancer_allows_its_pools_and_nothing_else(arm, arm_settings):
    arm.reset(two_groups())
    arm.configure_rbac({"writer": {"write": [ids.lb()]}})
    network, compute = clients_for(arm_settings, "writer")
    network.load_balancer_backend_address_pools.begin_create_or_update(
        RESOURCE_GROUP, "lb-app", "pool-app", BackendAddressPool()
    ).result()
    assert [p.name for p in network.load_balancer_backend_address_pools.list(RESOURCE_GROUP, "lb-app")] == [
        "pool-app"
    ]
    with pytest.raises(HttpResponseError) as refused:
        compute.virtual_machines.get(RESOURCE_GROUP, "web-1")
    assert refused.value.status_code == 403


def test_jwt_principal_is_the_object_id_claim(arm, arm_settings):
    arm.reset(two_groups())
    oid = "33333333-3333-3333-3333-333333333333"
    arm.configure_rbac({oid: {"read": [RG_SCOPE]}})
    token = unsigned_jwt({"oid": oid, "appid": "44444444-4444-4444-4444-444444444444"})
    _, compute = clients_for(arm_settings, token)
    assert [vm.name for vm in compute.virtual_machines.list_all()] == ["web-1"]
    with pytest.raises(HttpResponseError) as refused:
        compute.virtual_machines.get(OTHER_RG, "far-1")
    assert "The client '44444444-4444-4444-4444-444444444444' with object id" in refused.value.error.message
    assert arm.stats.calls_by(oid, "reads") == 2
    assert arm.stats.calls_by(token) == 0


def test_reset_turns_rbac_off(arm, arm_settings):
    arm.reset(two_groups())
    arm.configure_rbac({"reader": {"read": [RG_SCOPE]}})
    arm.reset(two_groups())
    _, compute = clients_for(arm_settings, "anyone")
    assert {vm.name for vm in compute.virtual_machines.list_all()} == {"web-1", "far-1"}


def test_a_scope_must_be_an_arm_path(arm):
    with pytest.raises(ValueError, match="must start with /subscriptions/"):
        arm.configure_rbac({"p": {"read": ["rg-poolsync"]}})


def test_admin_endpoints_set_rbac_and_delivery_for_other_processes(arm, raw):
    admin = f"{arm.url}/_emulator"
    answer = raw.session.post(f"{admin}/rbac", json={"p": {"read": [RG_SCOPE]}}, verify=arm.ca_path)
    assert answer.json() == {"assignments": {"p": {"read": [RG_SCOPE.lower()], "write": []}}}
    config = raw.session.post(
        f"{admin}/config", json={"delivery": {"base": "azure", "backoff_scale": 0.5}}, verify=arm.ca_path
    ).json()
    assert config["delivery"]["timeout_seconds"] == 30
    assert config["delivery"]["backoff_scale"] == 0.5
    assert config["delivery"]["no_retry_statuses"] == [400, 401, 403, 413]
    bad = raw.session.post(f"{admin}/config", json={"delivery": {"nonsense": 1}}, verify=arm.ca_path)
    assert bad.status_code == 400
