"""Long-running writes (Azure-AsyncOperation polling) and ETag preconditions."""

from __future__ import annotations

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.network.models import BackendAddressPool, LoadBalancerBackendAddress, SubResource

from tests.emulator.conftest import COMPUTE_API
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, ids, topology

RG = RESOURCE_GROUP


def address(name: str, ip: str) -> LoadBalancerBackendAddress:
    return LoadBalancerBackendAddress(name=name, ip_address=ip, virtual_network=SubResource(id=ids.vnet()))


def pool_body(*ips: str) -> dict:
    return {
        "properties": {
            "loadBalancerBackendAddresses": [
                {"name": f"a{i}", "properties": {"ipAddress": ip, "virtualNetwork": {"id": ids.vnet()}}}
                for i, ip in enumerate(ips)
            ]
        }
    }


def test_pool_put_is_long_running_until_the_operation_ends(arm, raw):
    arm.reset(topology())
    arm.operation_seconds = 600  # held open until the test ends it

    created = raw.put(ids.pool("pool-new"), pool_body("10.0.0.20"))
    assert created.status_code == 201
    assert created.json()["properties"]["provisioningState"] == "Updating"
    assert "Retry-After" not in created.headers  # lro_retry_after=0: the SDK uses its polling_interval
    status_url = created.headers["Azure-AsyncOperation"]
    assert status_url.startswith(arm.url) and "api-version=2026-03-01" in status_url
    assert "/providers/Microsoft.Network/locations/westeurope/operations/" in status_url

    assert raw.absolute(status_url).json() == {"status": "InProgress"}
    assert raw.get(ids.pool("pool-new")).json()["properties"]["provisioningState"] == "Updating"

    assert arm.complete_operations() == 1
    assert raw.absolute(status_url).json() == {"status": "Succeeded"}
    assert raw.get(ids.pool("pool-new")).json()["properties"]["provisioningState"] == "Succeeded"

    updated = raw.put(ids.pool("pool-new"), pool_body("10.0.0.21"))
    assert updated.status_code == 200


def test_delete_is_accepted_with_both_polling_headers(arm, raw):
    arm.reset(topology())
    arm.operation_seconds = 600
    response = raw.delete(ids.pool())
    assert response.status_code == 202
    assert response.content == b""
    assert "/operations/" in response.headers["Azure-AsyncOperation"]
    location = response.headers["Location"]
    assert "/operationResults/" in location

    assert raw.get(ids.pool()).json()["properties"]["provisioningState"] == "Deleting"
    assert raw.absolute(location).status_code == 202
    arm.complete_operations()
    assert raw.absolute(location).status_code == 204
    assert raw.get(ids.pool()).status_code == 404


def test_retry_after_is_sent_when_configured(arm, raw):
    arm.reset(topology())
    arm.lro_retry_after = 3
    response = raw.put(ids.pool("p2"), pool_body())
    assert response.headers["Retry-After"] == "3"


def test_sdk_poller_result_returns_the_final_resource(arm, network):
    arm.reset(topology())
    arm.operation_seconds = 0.3
    poller = network.load_balancer_backend_address_pools.begin_create_or_update(
        RG, LB, POOL, BackendAddressPool(load_balancer_backend_addresses=[address("web-1", "10.0.0.30")])
    )
    result = poller.result(timeout=60)
    assert poller.status() == "Succeeded"
    assert result.provisioning_state == "Succeeded"
    assert [a.ip_address for a in result.load_balancer_backend_addresses] == ["10.0.0.30"]


def test_etag_changes_on_every_write_and_children_carry_the_lb_etag(arm, network):
    arm.reset(topology())
    before = network.load_balancers.get(RG, LB)
    pool = network.load_balancer_backend_address_pools.get(RG, LB, POOL)
    assert pool.etag == before.etag

    pool.load_balancer_backend_addresses = [address("web-1", "10.0.0.31")]
    written = network.load_balancer_backend_address_pools.begin_create_or_update(RG, LB, POOL, pool).result()
    after = network.load_balancers.get(RG, LB)
    assert written.etag == after.etag != before.etag
    assert written.etag.startswith('W/"') and written.etag.endswith('"')


def test_if_match_with_stale_etag_is_rejected_with_412(arm, network):
    arm.reset(topology())
    stale = network.load_balancer_backend_address_pools.get(RG, LB, POOL)
    fresh = network.load_balancer_backend_address_pools.get(RG, LB, POOL)
    fresh.load_balancer_backend_addresses = [address("web-1", "10.0.0.40")]
    network.load_balancer_backend_address_pools.begin_create_or_update(
        RG, LB, POOL, fresh, headers={"If-Match": fresh.etag}
    ).result()

    stale.load_balancer_backend_addresses = [address("web-2", "10.0.0.41")]
    with pytest.raises(HttpResponseError) as rejected:
        network.load_balancer_backend_address_pools.begin_create_or_update(
            RG, LB, POOL, stale, headers={"If-Match": stale.etag}
        )
    assert rejected.value.status_code == 412
    assert rejected.value.error.code == "PreconditionFailed"
    current = network.load_balancer_backend_address_pools.get(RG, LB, POOL)
    assert [a.name for a in current.load_balancer_backend_addresses] == ["web-1"]
    assert arm.stats.rejections(412, "PreconditionFailed") == 1


def test_if_match_star_requires_existence_and_if_none_match_star_forbids_it(arm, raw):
    arm.reset(topology())
    missing = raw.put(ids.pool("new-pool"), pool_body(), headers={"If-Match": "*"})
    assert missing.status_code == 412
    exists = raw.put(ids.pool(), pool_body(), headers={"If-None-Match": "*"})
    assert exists.status_code == 412
    assert exists.json()["error"]["code"] == "PreconditionFailed"
    created = raw.put(ids.pool("new-pool"), pool_body(), headers={"If-None-Match": "*"})
    assert created.status_code == 201
    arm.complete_operations()
    matching = raw.put(ids.pool("new-pool"), pool_body(), headers={"If-Match": created.json()["etag"]})
    assert matching.status_code == 200


def test_if_match_with_current_etag_succeeds(arm, raw):
    arm.reset(topology())
    etag = raw.get(ids.pool()).json()["etag"]
    response = raw.put(ids.pool(), pool_body("10.0.0.50"), headers={"If-Match": etag})
    assert response.status_code == 200
    assert response.headers["ETag"] == response.json()["etag"] != etag


def test_an_identical_put_still_gets_a_new_etag(arm, network):
    """Network RP: the etag "changes whenever the resource is updated", a PUT of unchanged content included
    (poolsync fences a paused writer's stale If-Match this way)."""
    arm.reset(topology())
    pool = network.load_balancer_backend_address_pools.get(RG, LB, POOL)
    written = network.load_balancer_backend_address_pools.begin_create_or_update(
        RG, LB, POOL, pool, headers={"If-Match": pool.etag}).result()
    assert written.etag != pool.etag
    assert written.load_balancer_backend_addresses == pool.load_balancer_backend_addresses
    with pytest.raises(HttpResponseError) as stale:
        network.load_balancer_backend_address_pools.begin_create_or_update(
            RG, LB, POOL, pool, headers={"If-Match": pool.etag})
    assert stale.value.status_code == 412


def test_compute_operations_poll_on_the_compute_provider(arm, raw):
    arm.reset(topology(vms=1))
    arm.operation_seconds = 600
    vm = raw.get(ids.vm("web-1"), api_version=COMPUTE_API).json()
    vm["tags"] = {"changed": "yes"}
    response = raw.put(ids.vm("web-1"), vm, api_version=COMPUTE_API)
    assert response.status_code == 200
    assert response.json()["properties"]["provisioningState"] == "Updating"
    status_url = response.headers["Azure-AsyncOperation"]
    assert "/providers/Microsoft.Compute/locations/westeurope/operations/" in status_url
    assert f"api-version={COMPUTE_API}" in status_url
    status = raw.absolute(status_url).json()
    assert status["status"] == "InProgress"
    assert status["name"] in status_url and status["startTime"]
    arm.complete_operations()
    done = raw.absolute(status_url).json()
    assert done["status"] == "Succeeded" and done["endTime"]
    created = raw.put(ids.vm("web-2"), {**vm, "id": None, "name": None}, api_version=COMPUTE_API)
    assert created.status_code == 400  # web-1-nic is attached to web-1
    assert created.json()["error"]["code"] == "NicInUse"
