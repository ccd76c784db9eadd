"""One write at a time per load balancer, subscription throttling, and list paging."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from azure.core.exceptions import HttpResponseError
from azure.mgmt.network.models import BackendAddressPool

from emulator import BucketSettings
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, SUBSCRIPTION, ids, topology

RG = RESOURCE_GROUP


def test_second_write_to_a_busy_load_balancer_is_rejected_with_409(arm, network, raw):
    arm.reset(topology(lbs=[{"name": LB, "sku": "Standard", "pools": [{"name": POOL}, {"name": "other"}]}]))
    arm.operation_seconds = 600
    network.load_balancer_backend_address_pools.begin_create_or_update(RG, LB, POOL, BackendAddressPool())

    # another pool of the same LB: still one operation at a time per load balancer
    with pytest.raises(HttpResponseError) as rejected:
        network.load_balancer_backend_address_pools.begin_create_or_update(
            RG, LB, "other", BackendAddressPool()
        )
    assert rejected.value.status_code == 409
    assert rejected.value.error.code == "AnotherOperationInProgress"
    assert int(rejected.value.response.headers["Retry-After"]) >= 1

    assert raw.delete(ids.pool("other")).status_code == 409
    assert raw.put(ids.lb(), raw.get(ids.lb()).json()).status_code == 409
    assert arm.stats.rejections(409, "AnotherOperationInProgress") == 3

    arm.complete_operations()
    arm.operation_seconds = 0.05
    result = network.load_balancer_backend_address_pools.begin_create_or_update(
        RG, LB, "other", BackendAddressPool()
    ).result()
    assert result.provisioning_state == "Succeeded"


def test_nic_joining_a_pool_of_a_busy_load_balancer_gets_a_retryable_429(arm, raw):
    arm.reset(topology(vms=1))
    arm.operation_seconds = 600
    assert raw.put(ids.pool("pool-b"), {"properties": {}}).status_code == 201
    nic = raw.get(ids.nic("web-1-nic")).json()
    nic["properties"]["ipConfigurations"][0]["properties"]["loadBalancerBackendAddressPools"] = [
        {"id": ids.pool()}
    ]
    response = raw.put(ids.nic("web-1-nic"), nic)
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "RetryableError"
    assert response.json()["error"]["details"][0]["code"] == "ReferencedResourceNotProvisioned"


def test_writes_to_different_load_balancers_do_not_block_each_other(arm, raw):
    arm.reset(
        topology(
            lbs=[
                {"name": "lb-a", "sku": "Standard", "pools": [{"name": "p"}]},
                {"name": "lb-b", "sku": "Standard", "pools": [{"name": "p"}]},
            ]
        )
    )
    arm.operation_seconds = 600
    assert raw.put(ids.pool("p", lb="lb-a"), {"properties": {}}).status_code == 200
    assert raw.put(ids.pool("p", lb="lb-b"), {"properties": {}}).status_code == 200


def test_every_response_reports_the_remaining_budget(arm, raw):
    arm.reset(topology())
    arm.configure_throttling(reads=BucketSettings(capacity=100, refill_per_second=0.001))
    first = raw.get(ids.lb())
    second = raw.get(ids.lb())
    reads_left = int(first.headers["x-ms-ratelimit-remaining-subscription-reads"])
    assert reads_left == 99
    assert int(second.headers["x-ms-ratelimit-remaining-subscription-reads"]) == reads_left - 1
    write = raw.put(ids.pool(), {"properties": {}})
    assert "x-ms-ratelimit-remaining-subscription-writes" in write.headers


def test_exhausted_write_budget_answers_429_with_retry_after(arm, raw):
    arm.reset(topology())
    arm.configure_throttling(writes=BucketSettings(capacity=2, refill_per_second=0.01))
    arm.operation_seconds = 0
    assert raw.put(ids.pool("p1"), {"properties": {}}).status_code == 201
    arm.complete_operations()
    assert raw.put(ids.pool("p2"), {"properties": {}}).status_code == 201
    throttled = raw.put(ids.pool("p3"), {"properties": {}})
    assert throttled.status_code == 429
    assert throttled.json()["error"]["code"] == "SubscriptionRequestsThrottled"
    assert int(throttled.headers["Retry-After"]) >= 1
    assert throttled.headers["x-ms-ratelimit-remaining-subscription-writes"] == "0"
    assert raw.get(ids.lb()).status_code == 200  # reads have their own bucket
    assert arm.stats.rejections(429, "SubscriptionRequestsThrottled") == 1


def test_sdk_sees_throttling_as_an_http_error_with_retry_after(arm, network):
    arm.reset(topology())
    arm.configure_throttling(reads=BucketSettings(capacity=1, refill_per_second=0.01))
    network.load_balancers.get(RG, LB)
    with pytest.raises(HttpResponseError) as throttled:
        network.load_balancers.get(RG, LB)
    assert throttled.value.status_code == 429
    assert throttled.value.response.headers["Retry-After"]


def test_reset_restores_the_default_budget(arm, raw):
    arm.configure_throttling(reads=BucketSettings(capacity=1, refill_per_second=0.01))
    arm.reset(topology())
    for _ in range(5):
        assert raw.get(ids.lb()).status_code == 200


def test_lists_page_with_next_link_keeping_api_version(arm, network, compute, raw):
    arm.reset(topology(vms=7))
    arm.page_size = 3
    first = raw.get(f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/networkInterfaces").json()
    assert len(first["value"]) == 3
    query = parse_qs(urlsplit(first["nextLink"]).query)
    assert query["api-version"] == ["2026-03-01"]
    assert query["$skiptoken"]

    names = [n.name for n in network.network_interfaces.list_all()]
    assert sorted(names) == sorted(f"web-{i}-nic" for i in range(1, 8))
    assert len(set(names)) == 7
    assert len(list(compute.virtual_machines.list(RG))) == 7
    assert arm.stats.requests("GET", "Microsoft.Network/networkInterfaces") == 1 + 3  # raw + 3 SDK pages


def test_paging_does_not_skip_or_repeat_when_items_change_between_pages(arm, raw):
    arm.reset(topology(vms=6))
    arm.page_size = 2
    path = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RG}/providers/Microsoft.Network/networkInterfaces"
    page = raw.get(path).json()
    seen = [n["name"] for n in page["value"]]
    raw.delete(ids.nic("web-1-nic"))  # attached: refused, world unchanged
    while "nextLink" in page:
        page = raw.absolute(page["nextLink"]).json()
        seen += [n["name"] for n in page["value"]]
    assert sorted(seen) == sorted(f"web-{i}-nic" for i in range(1, 7))


def test_racing_writes_to_one_load_balancer_admit_exactly_one(arm, raw):
    pools = [{"name": f"p{i}"} for i in range(8)]
    arm.reset(topology(lbs=[{"name": LB, "sku": "Standard", "pools": pools}]))
    arm.operation_seconds = 600
    barrier = threading.Barrier(len(pools))
    statuses: list[int] = []

    def write(name: str) -> None:
        barrier.wait(timeout=60)
        response = requests.put(
            raw.url(ids.pool(name)),
            json={"properties": {}},
            headers={"Authorization": "Bearer x"},
            verify=arm.ca_path,
            timeout=60,
        )
        statuses.append(response.status_code)

    threads = [threading.Thread(target=write, args=(p["name"],)) for p in pools]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(statuses) == [200] + [409] * 7
