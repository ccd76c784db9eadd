"""POST /api/reconcile: plans per pool, dry runs, the guard and its override, wait=false, throttling."""

from __future__ import annotations

from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from emulator import Emulator
from tests.api.conftest import Configure
from tests.api.helpers import MANUAL_POOL, OTHER_RULE_POOL, ApiClient, azure_addresses, pool_path
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, ids


def test_dry_run_returns_the_plan_and_writes_nothing(
    api: ApiClient, network: NetworkManagementClient
) -> None:
    answer = api.call("POST", "/api/reconcile", {"pool": ids.pool(), "dryRun": True})

    assert answer.status == 200
    assert answer.body["dryRun"] is True
    [outcome] = answer.body["pools"]
    assert (outcome["pool"], outcome["status"]) == (ids.pool(), "planned")
    assert outcome["plan"]["counts"]["add"] == 3
    assert sum(line.startswith("+ psync-web-") for line in outcome["plan"]["diff"]) == 3
    assert azure_addresses(network) == {}
    listed = {p["id"]: p for p in api.call("GET", "/api/pools").body["pools"]}
    assert listed[ids.pool()]["lastReconcile"] is None  # a dry run is not a reconcile


def test_reconcile_applies_the_plan(api: ApiClient, network: NetworkManagementClient) -> None:
    answer = api.call("POST", "/api/reconcile", {"pool": ids.pool()})

    assert answer.status == 200
    assert answer.body["pools"][0]["status"] == "written"
    assert len(azure_addresses(network)) == 3
    again = api.call("POST", "/api/reconcile", {"pool": ids.pool()})
    assert again.body["pools"][0]["status"] == "unchanged"


def test_all_means_every_rule_pool_and_no_manual_pool(api: ApiClient) -> None:
    answer = api.call("POST", "/api/reconcile", {"pool": "all", "dryRun": True})

    assert answer.status == 200
    assert [p["pool"] for p in answer.body["pools"]] == [ids.pool(), ids.pool(OTHER_RULE_POOL)]


def test_pool_ids_match_case_insensitively_and_answer_in_canonical_spelling(api: ApiClient) -> None:
    answer = api.call("POST", "/api/reconcile", {"pool": [ids.pool().lower()], "dryRun": True})

    assert answer.status == 200
    assert answer.body["pools"][0]["pool"] == ids.pool()


def test_pools_can_be_named_as_the_cli_names_them(api: ApiClient) -> None:
    """`<load balancer>/<pool>` and a unique `<pool>`, as well as the id (what `poolsync` accepts)."""
    for given in (f"{LB}/{POOL}", POOL, [POOL.upper(), ids.pool()]):
        answer = api.call("POST", "/api/reconcile", {"pool": given, "dryRun": True})
        assert answer.status == 200, (given, answer.body)
        assert [p["pool"] for p in answer.body["pools"]] == [ids.pool()]

    unknown = api.call("POST", "/api/reconcile", {"pool": [POOL, f"{LB}/nope"], "dryRun": True})
    assert unknown.status == 403
    assert (unknown.error["code"], unknown.error["target"]) == ("PoolNotManaged", "pool[1]")
    assert f"{LB}/{POOL}" in unknown.error["message"]  # the managed pools are listed


def test_manual_pools_are_not_reconciled(api: ApiClient) -> None:
    answer = api.call("POST", "/api/reconcile", {"pool": ids.pool(MANUAL_POOL)})

    assert answer.status == 409
    assert (answer.error["code"], answer.error["target"]) == ("ManualPoolNotReconciled", "pool")


def test_the_guard_refuses_mass_removal_until_forced_with_a_reason(
    api: ApiClient, compute: ComputeManagementClient, network: NetworkManagementClient
) -> None:
    api.call("POST", "/api/reconcile", {"pool": ids.pool()})
    for name in ("web-1", "web-2"):  # they stay, but the rules no longer select them: nothing confirms it
        vm = compute.virtual_machines.get(RESOURCE_GROUP, name)
        vm.tags = {"poolsync": "false"}
        compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, name, vm).result()

    refused = api.call("POST", "/api/reconcile", {"pool": ids.pool()})
    assert refused.status == 422
    assert refused.error["code"] == "GuardRefused"
    assert "would remove 2 of 3" in refused.error["message"]
    [outcome] = refused.body["pools"]
    assert outcome["status"] == "refused"
    assert outcome["plan"]["counts"]["remove"] == 0  # held back, not written
    assert len(azure_addresses(network)) == 3

    assert api.call("POST", "/api/reconcile", {"pool": ids.pool(), "force": True}).error["target"] == "reason"
    forced = api.call("POST", "/api/reconcile",
                      {"pool": ids.pool(), "force": True, "reason": "scale-in CHG-7"})
    assert forced.status == 200
    assert forced.body["pools"][0]["status"] == "written"
    assert len(azure_addresses(network)) == 1


def test_wait_false_returns_one_operation_per_written_pool(
    api: ApiClient, world: Emulator, network: NetworkManagementClient
) -> None:
    world.operation_seconds = 2.0
    answer = api.call("POST", "/api/reconcile", {"pool": "all", "wait": False})

    assert answer.status == 202
    written, unchanged = answer.body["pools"]
    assert written["status"] == "written" and unchanged["status"] == "unchanged"
    assert "operation" not in unchanged
    assert world.wait_operations_done(timeout=60)
    status = api.call("GET", written["operation"]["href"])
    assert (status.status, status.body["status"]) == (200, "Succeeded")
    assert len(azure_addresses(network)) == 3


def test_throttling_past_the_retry_budget_is_503_with_retry_after(
    world: Emulator, configure: Configure
) -> None:
    configure(POOLSYNC_RETRY_MAX_ATTEMPTS="3")
    api = ApiClient()
    world.faults.add("429", method="PUT", resource_type="backendAddressPools", retry_after=7)

    reconcile = api.call("POST", "/api/reconcile", {"pool": ids.pool()})
    assert reconcile.status == 503
    assert reconcile.headers["Retry-After"] == "7"
    assert reconcile.error["code"] == "AzureThrottled"
    assert reconcile.body["pools"][0]["status"] == "failed"

    manual = api.call("POST", pool_path(MANUAL_POOL) + "/addresses", {"ipAddress": "10.0.5.10"})
    assert manual.status == 503
    assert manual.headers["Retry-After"] == "7"


def test_throttled_reads_are_503_too(world: Emulator, configure: Configure) -> None:
    configure(POOLSYNC_RETRY_MAX_ATTEMPTS="2")
    world.faults.add("429", method="GET", retry_after=3)

    answer = ApiClient().call("GET", "/api/pools")
    assert answer.status == 503
    assert answer.headers["Retry-After"] == "3"
