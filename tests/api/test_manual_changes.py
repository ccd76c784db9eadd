"""Adding, removing, draining and enabling addresses by hand (runbooks), against the emulator."""

from __future__ import annotations

from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from emulator import Emulator
from shared.app.runtime import get_runtime
from shared.storage.report_store import DrainLedger
from tests.api.helpers import (
    LOOSE_POOL,
    MANUAL_POOL,
    ApiClient,
    azure_addresses,
    managed_name,
    nic_ip,
    pool_path,
)
from tests.fixtures.arm import ids

ADD = pool_path(MANUAL_POOL) + "/addresses"


def address(name: str, path: str = ADD) -> str:
    return f"{path}/{name}"


def test_adds_one_address_with_a_default_name(api: ApiClient, network: NetworkManagementClient) -> None:
    answer = api.call("POST", ADD, {"ipAddress": "10.0.5.10"})

    assert answer.status == 200
    assert answer.body["written"] is True
    assert answer.body["plan"]["counts"]["add"] == 1
    assert answer.body["plan"]["diff"][1] == "+ manual-10-0-5-10 10.0.5.10"
    [added] = answer.body["addresses"]
    assert (added["name"], added["ipAddress"], added["managed"]) == ("manual-10-0-5-10", "10.0.5.10", False)
    entry = azure_addresses(network, MANUAL_POOL)["manual-10-0-5-10"]
    assert entry["properties"]["ipAddress"] == "10.0.5.10"
    assert entry["properties"]["virtualNetwork"]["id"].lower() == ids.vnet().lower()


def test_adds_a_list_in_the_az_cli_config_file_shape(
    api: ApiClient, network: NetworkManagementClient
) -> None:
    body = [
        {"name": "fw-a", "ip-address": "10.0.5.20", "virtual-network": ids.vnet()},
        {"name": "fw-b", "ip_address": "10.0.5.21", "admin_state": "Down"},
        {"name": "fw-c", "ipAddress": "10.0.5.22", "subnet": {"id": ids.subnet(name="manual")}},
    ]
    answer = api.call("POST", ADD, body)

    assert answer.status == 200, answer.body
    held = azure_addresses(network, MANUAL_POOL)
    assert {name: e["properties"]["ipAddress"] for name, e in held.items()} == {
        "fw-a": "10.0.5.20", "fw-b": "10.0.5.21", "fw-c": "10.0.5.22"}
    assert held["fw-b"]["properties"].get("adminState") == "Down"
    assert held["fw-c"]["properties"]["subnet"]["id"].lower() == ids.subnet(name="manual").lower()


def test_adds_an_ipv6_address_in_canonical_form(api: ApiClient, network: NetworkManagementClient) -> None:
    answer = api.call("POST", ADD, {"ipAddress": "FD00:1:0:0:0:0:0:10"})

    assert answer.status == 200, answer.body
    assert answer.body["addresses"][0]["name"] == "manual-fd00-1--10"
    held = azure_addresses(network, MANUAL_POOL)
    assert held["manual-fd00-1--10"]["properties"]["ipAddress"] == "fd00:1::10"


def test_sending_the_same_address_again_is_a_no_op_success(api: ApiClient) -> None:
    assert api.call("POST", ADD, {"ipAddress": "10.0.5.10", "name": "app"}).body["written"] is True

    again = api.call("POST", ADD, {"ipAddress": "10.0.5.10", "name": "app"})
    assert again.status == 200
    assert again.body["written"] is False


def test_sending_an_address_again_with_another_admin_state_is_not_reported_as_done(
    api: ApiClient, network: NetworkManagementClient
) -> None:
    api.call("POST", ADD, {"ipAddress": "10.0.5.10", "name": "app"})

    drained = api.call("POST", ADD, {"ipAddress": "10.0.5.10", "name": "app", "adminState": "Down"})
    # Azure still sends it traffic: a 200 saying adminState Down would be a lie.
    assert drained.status == 409, drained.body
    assert drained.error["code"] == "AddressConflict"
    assert azure_addresses(network, MANUAL_POOL)["app"]["properties"].get("adminState", "None") == "None"


def test_an_existing_name_or_ip_is_a_conflict_and_nothing_is_written(
    api: ApiClient, network: NetworkManagementClient
) -> None:
    api.call("POST", ADD, {"ipAddress": "10.0.5.10", "name": "app"})

    same_name = api.call("POST", ADD, [{"ipAddress": "10.0.5.30", "name": "new"},
                                       {"ipAddress": "10.0.5.11", "name": "app"}])
    assert same_name.status == 409
    assert same_name.error["code"] == "AddressConflict"
    assert "name already in the pool" in same_name.error["message"]
    same_ip = api.call("POST", ADD, {"ipAddress": "10.0.5.10", "name": "other"})
    assert same_ip.status == 409
    assert "IP already held by app" in same_ip.error["message"]
    assert set(azure_addresses(network, MANUAL_POOL)) == {"app"}  # all or nothing: "new" was not added


def test_wait_false_answers_202_with_an_operation_to_poll(api: ApiClient, world: Emulator,
                                                           network: NetworkManagementClient) -> None:
    world.operation_seconds = 2.0  # long enough to still be running when the API answers
    answer = api.call("POST", ADD, {"ipAddress": "10.0.5.10"}, query={"wait": "false"})

    assert answer.status == 202
    assert (answer.body["written"], answer.body["accepted"]) == (False, True)  # still running in Azure
    operation = answer.body["operation"]
    assert answer.headers["Location"] == operation["href"] == f"/api/operations/{operation['id']}"
    running = api.call("GET", operation["href"])
    assert running.status == 200
    assert running.body["id"] == operation["id"]
    assert world.wait_operations_done(timeout=60)
    done = api.call("GET", operation["href"])
    assert (done.body["status"], done.body["done"]) == ("Succeeded", True)
    assert "manual-10-0-5-10" in azure_addresses(network, MANUAL_POOL)


def test_removes_by_name_or_by_ip(api: ApiClient, network: NetworkManagementClient) -> None:
    api.call("POST", ADD, [{"ipAddress": "10.0.5.10", "name": "a"}, {"ipAddress": "10.0.5.11", "name": "b"},
                           {"ipAddress": "fd00:1::7", "name": "c"}])

    by_name = api.call("DELETE", address("a"))
    assert by_name.status == 200
    assert by_name.body["addresses"][0]["name"] == "a"
    by_ip = api.call("DELETE", address("fd00:1:0::7"))
    assert by_ip.status == 200
    assert by_ip.body["addresses"][0]["name"] == "c"
    assert set(azure_addresses(network, MANUAL_POOL)) == {"b"}
    missing = api.call("DELETE", address("a"))
    assert missing.status == 404
    assert (missing.error["code"], missing.error["target"]) == ("AddressNotFound", "address")


def test_emptying_a_pool_is_refused_unless_forced_with_a_reason(
    api: ApiClient, network: NetworkManagementClient
) -> None:
    api.call("POST", ADD, {"ipAddress": "10.0.5.10", "name": "last"})

    refused = api.call("DELETE", address("last"))
    assert refused.status == 422
    assert refused.error["code"] == "GuardRefused"
    assert refused.body["plan"]["diff"][1] == "- last 10.0.5.10"
    assert set(azure_addresses(network, MANUAL_POOL)) == {"last"}

    no_reason = api.call("DELETE", address("last"), query={"force": "true"})
    assert (no_reason.status, no_reason.error["target"]) == (400, "reason")

    forced = api.call("DELETE", address("last"), query={"force": "true", "reason": "decommissioning CHG-42"})
    assert forced.status == 200
    assert azure_addresses(network, MANUAL_POOL) == {}


def test_drain_and_enable_set_the_admin_state(api: ApiClient, network: NetworkManagementClient) -> None:
    api.call("POST", ADD, [{"ipAddress": "10.0.5.10", "name": "a"}, {"ipAddress": "10.0.5.11", "name": "b"}])

    drained = api.call("POST", address("10.0.5.10") + "/drain")
    assert drained.status == 200
    assert drained.body["addresses"][0] | {"owner": None} == drained.body["addresses"][0]
    assert drained.body["addresses"][0]["adminState"] == "Down"
    assert azure_addresses(network, MANUAL_POOL)["a"]["properties"].get("adminState") == "Down"
    assert api.call("POST", address("a") + "/drain").body["written"] is False  # already drained

    enabled = api.call("POST", address("a") + "/enable")
    assert enabled.status == 200
    assert azure_addresses(network, MANUAL_POOL)["a"]["properties"].get("adminState", "None") == "None"
    assert azure_addresses(network, MANUAL_POOL)["b"]["properties"].get("adminState", "None") == "None"


def test_a_drained_managed_member_stays_drained_through_reconciles(
    api: ApiClient, world: Emulator, network: NetworkManagementClient
) -> None:
    api.call("POST", "/api/reconcile", {"pool": ids.pool()})
    name = managed_name(world, "web-1-nic")

    drained = api.call("POST", f"{pool_path()}/addresses/{nic_ip(world, 'web-1-nic')}/drain")
    assert drained.status == 200
    member = drained.body["addresses"][0]
    assert (member["name"], member["adminState"], member["rule"]) == (name, "Down", "web")
    assert (member["owner"]["vmName"], member["owner"]["nicName"]) == ("web-1", "web-1-nic")
    assert api.call("POST", "/api/reconcile", {"pool": ids.pool()}).body["pools"][0]["status"] == "unchanged"
    assert azure_addresses(network)[name]["properties"].get("adminState") == "Down"


def test_removing_a_managed_member_warns_that_reconcile_brings_it_back(
    api: ApiClient, world: Emulator, compute: ComputeManagementClient, network: NetworkManagementClient
) -> None:
    api.call("POST", "/api/reconcile", {"pool": ids.pool()})
    name = managed_name(world, "web-3-nic")

    answer = api.call("DELETE", f"{pool_path()}/addresses/{name}")
    assert answer.status == 200
    removed = answer.body["addresses"][0]
    assert (removed["managed"], removed["rule"], removed["owner"]["vmName"]) == (True, "web", "web-3")
    assert "next reconcile adds it back" in answer.body["warnings"][0]
    assert name not in azure_addresses(network)
    api.call("POST", "/api/reconcile", {"pool": ids.pool()})
    assert name in azure_addresses(network)


def test_a_drained_managed_member_removed_by_hand_comes_back_drained(
    api: ApiClient, world: Emulator, network: NetworkManagementClient
) -> None:
    api.call("POST", "/api/reconcile", {"pool": ids.pool()})
    name = managed_name(world, "web-2-nic")
    assert api.call("POST", f"{pool_path()}/addresses/{name}/drain").status == 200

    assert api.call("DELETE", f"{pool_path()}/addresses/{name}").status == 200
    assert api.call("POST", "/api/reconcile", {"pool": ids.pool()}).body["pools"][0]["status"] == "written"
    assert azure_addresses(network)[name]["properties"].get("adminState") == "Down"  # the drain is the VM's


def test_a_pool_without_a_virtual_network_needs_one_in_the_request(
    api: ApiClient, network: NetworkManagementClient
) -> None:
    loose = pool_path(LOOSE_POOL) + "/addresses"
    refused = api.call("POST", loose, {"ipAddress": "10.0.5.10"})
    assert refused.status == 400
    assert (refused.error["code"], refused.error["target"]) == ("MissingField", "virtualNetwork")

    answer = api.call("POST", loose, {"ipAddress": "10.0.5.10", "virtualNetwork": ids.vnet()})
    assert answer.status == 200
    assert set(azure_addresses(network, LOOSE_POOL)) == {"manual-10-0-5-10"}


def test_drains_are_recorded_for_the_audit(api: ApiClient) -> None:
    api.call("POST", ADD, [{"ipAddress": "10.0.5.10", "name": "a"}, {"ipAddress": "10.0.5.11", "name": "b"}])
    runtime = get_runtime()
    ledger = DrainLedger(runtime.storage, runtime.settings["POOLSYNC_DRAIN_TABLE"])

    api.call("POST", address("a") + "/drain")
    [record] = ledger.read().values()
    assert (record.pool_id, record.name, record.source) == (ids.pool(MANUAL_POOL), "a", "poolsync")

    api.call("POST", address("a") + "/enable")
    assert ledger.read() == {}


def test_an_operation_that_fails_in_azure_reports_failed(api: ApiClient, world: Emulator) -> None:
    world.faults.add("lro_failed", method="PUT", resource_type="backendAddressPools", times=1)

    answer = api.call("POST", ADD, {"ipAddress": "10.0.5.10"}, query={"wait": "false"})
    assert answer.status == 202
    assert world.wait_operations_done(timeout=60)
    status = api.call("GET", answer.body["operation"]["href"])
    assert (status.body["status"], status.body["done"]) == ("Failed", True)
    assert status.body["error"]["code"] == "InternalServerError"
