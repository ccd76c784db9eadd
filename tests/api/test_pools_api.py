"""GET /api/pools and GET /api/pools/{sub}/{rg}/{lb}/{pool}: what operators look at before acting."""

from __future__ import annotations

from typing import Any

from emulator import Emulator
from tests.api.helpers import (
    BASIC_LB,
    BASIC_POOL,
    GONE_POOL,
    LOOSE_POOL,
    MANUAL_POOL,
    NIC_LB,
    NIC_POOL,
    OTHER_RULE_POOL,
    ApiClient,
    managed_name,
    nic_ip,
    pool_path,
)
from tests.fixtures.arm import ids


def by_id(pools: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {pool["id"].lower(): pool for pool in pools}


def test_lists_rule_and_manual_pools_with_counts_and_last_reconcile(api: ApiClient) -> None:
    before = by_id(api.call("GET", "/api/pools").body["pools"])
    assert before[ids.pool().lower()]["lastReconcile"] is None

    assert api.call("POST", "/api/reconcile", {"pool": ids.pool()}).status == 200
    api.call("POST", pool_path(MANUAL_POOL) + "/addresses", {"ipAddress": "10.0.5.10"})
    api.call("POST", pool_path(MANUAL_POOL) + "/addresses/10.0.5.10/drain")

    answer = api.call("GET", "/api/pools")
    assert answer.status == 200
    pools = by_id(answer.body["pools"])
    configured = [ids.pool(), ids.pool(OTHER_RULE_POOL), ids.pool(MANUAL_POOL),
                  ids.pool(BASIC_POOL, BASIC_LB),
                  ids.pool(NIC_POOL, NIC_LB), ids.pool(LOOSE_POOL), ids.pool(GONE_POOL)]
    assert [pool["id"] for pool in answer.body["pools"]] == configured  # rule order, then the manual list
    web = pools[ids.pool().lower()]
    assert (web["source"], web["rules"], web["exists"], web["sku"]) == ("rules", ["web"], True, "Standard")
    assert (web["memberCount"], web["managedCount"], web["unmanagedCount"]) == (3, 3, 0)
    assert web["lastReconcile"]["status"] == "written"
    assert web["lastReconcile"]["source"] == "http"
    assert web["lastReconcile"]["summary"]["add"] == 3
    assert web["href"] == pool_path()

    manual = pools[ids.pool(MANUAL_POOL).lower()]
    assert (manual["source"], manual["rules"], manual["lastReconcile"]) == ("manual", [], None)
    assert (manual["memberCount"], manual["unmanagedCount"], manual["drainedCount"]) == (1, 1, 1)
    assert pools[ids.pool(NIC_POOL, NIC_LB).lower()]["nicMemberCount"] == 1
    gone = pools[ids.pool(GONE_POOL).lower()]
    assert (gone["exists"], gone["memberCount"]) == (False, 0)
    assert pools[ids.pool(BASIC_POOL, BASIC_LB).lower()]["sku"] == "Basic"


def test_pool_members_show_state_ownership_and_owner(api: ApiClient, world: Emulator) -> None:
    api.call("POST", "/api/reconcile", {"pool": ids.pool()})

    answer = api.call("GET", pool_path())
    assert answer.status == 200
    assert (answer.body["id"], answer.body["source"], answer.body["rules"]) == (ids.pool(), "rules", ["web"])
    members = {member["name"]: member for member in answer.body["members"]}
    expected = managed_name(world, "web-2-nic")
    member = members[expected]
    assert member["ipAddress"] == nic_ip(world, "web-2-nic")
    assert (member["adminState"], member["managed"], member["rule"]) == ("None", True, "web")
    assert member["owner"]["vmId"].lower() == ids.vm("web-2").lower()
    assert member["owner"]["vmName"] == "web-2"
    assert member["owner"]["nicName"] == "web-2-nic"
    assert member["owner"]["ipConfiguration"] == "ipconfig1"
    assert len(members) == 3


def test_a_scale_set_instance_member_names_its_set_and_instance(api: ApiClient, world: Emulator) -> None:
    # a Uniform set in the web rule's subnet, tagged as the rule wants: its instances carry the set's tags
    world.load_topology({"scale_sets": [{"name": "ss-web", "capacity": 1, "subnet": "vnet-app/default",
                                         "tags": {"poolsync": "true"}}]})
    api.call("POST", "/api/reconcile", {"pool": ids.pool()})

    members = api.call("GET", pool_path()).body["members"]

    [member] = [m for m in members if (m["owner"] or {}).get("scaleSetId")]
    assert member["owner"]["scaleSetId"] == ids.scale_set("ss-web")
    assert member["owner"]["vmId"] == f"{ids.scale_set('ss-web')}/virtualMachines/0"
    assert member["owner"]["vmName"] == "ss-web_0"
    assert member["name"].startswith("psync-ss-web-0-ss-web-nic-ipconfig1-")
    assert {m["owner"]["scaleSetId"] for m in members if m["owner"]["vmName"] != "ss-web_0"} == {None}


def test_manual_members_are_unmanaged_and_owned_by_whatever_nic_holds_the_ip(api: ApiClient) -> None:
    api.call("POST", pool_path(MANUAL_POOL) + "/addresses",
             [{"ipAddress": "10.0.5.200", "name": "spare"}, {"ipAddress": "10.0.5.11", "name": "appliance"}])

    members = {m["name"]: m for m in api.call("GET", pool_path(MANUAL_POOL)).body["members"]}
    assert members["spare"]["managed"] is False
    assert members["spare"]["owner"]["nicName"] == "spare-nic"  # a detached NIC: no VM
    assert members["spare"]["owner"]["vmId"] is None
    assert members["appliance"]["owner"] is None
    assert members["appliance"]["rule"] is None
    assert members["appliance"]["virtualNetwork"].lower() == ids.vnet().lower()


def test_a_configured_pool_missing_from_azure_is_404(api: ApiClient) -> None:
    answer = api.call("GET", pool_path(GONE_POOL))
    assert answer.status == 404
    assert answer.error == {"code": "PoolNotFound", "message": answer.error["message"], "target": "pool"}
