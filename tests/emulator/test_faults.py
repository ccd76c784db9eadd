"""Fault injection: every kind, rate and sequence rules, matching, the admin endpoint."""

from __future__ import annotations

import pytest
import requests
from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError
from azure.mgmt.network.models import BackendAddressPool

from emulator import faults
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, ids, topology

RG = RESOURCE_GROUP


@pytest.fixture
def seeded(arm):
    arm.reset(topology(vms=1))
    return arm


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        (faults.THROTTLED, 429, "SubscriptionRequestsThrottled"),
        (faults.CONFLICT, 409, "AnotherOperationInProgress"),
        (faults.PRECONDITION, 412, "PreconditionFailed"),
        (faults.SERVER_ERROR, 500, "InternalServerError"),
        (faults.UNAVAILABLE, 503, "ServiceUnavailable"),
    ],
)
def test_status_faults_answer_azure_shaped_errors(seeded, network, kind, status, code):
    seeded.faults.add(kind, method="PUT", resource_type="backendAddressPools", times=1, retry_after=7)
    with pytest.raises(HttpResponseError) as injected:
        network.load_balancer_backend_address_pools.begin_create_or_update(RG, LB, POOL, BackendAddressPool())
    assert injected.value.status_code == status
    assert injected.value.error.code == code
    if status in (429, 409, 503):
        assert injected.value.response.headers["Retry-After"] == "7"
    assert seeded.stats.faults_injected(kind) == 1
    assert seeded.stats.pool_writes(ids.lb()) == 0
    # `times=1`: the next request goes through
    network.load_balancer_backend_address_pools.begin_create_or_update(
        RG, LB, POOL, BackendAddressPool()
    ).result()
    assert seeded.stats.pool_writes(ids.lb()) == 1


def test_connection_reset_closes_without_an_answer(seeded, network, raw):
    seeded.faults.add(faults.RESET, method="GET", path="/loadBalancers/", times=1)
    with pytest.raises((ServiceRequestError, ServiceResponseError)):
        network.load_balancers.get(RG, LB)
    assert network.load_balancers.get(RG, LB).name == LB
    seeded.faults.add(faults.RESET, method="GET", times=1)
    with pytest.raises(requests.ConnectionError):
        raw.get(ids.lb())


def test_slow_response_still_answers(seeded, network):
    seeded.faults.add(faults.SLOW, resource_type="loadBalancers", delay=0.2, times=1)
    assert network.load_balancers.get(RG, LB).name == LB
    assert seeded.stats.faults_injected(faults.SLOW) == 1


def test_lro_failed_fault_ends_the_operation_failed(seeded, network):
    seeded.faults.add(faults.LRO_FAILED, method="PUT", resource_type="backendAddressPools", times=1)
    poller = network.load_balancer_backend_address_pools.begin_create_or_update(
        RG, LB, POOL, BackendAddressPool()
    )
    with pytest.raises(HttpResponseError) as failed:
        poller.result()
    assert "InternalServerError" in str(failed.value)
    assert network.load_balancer_backend_address_pools.get(RG, LB, POOL).provisioning_state == "Failed"
    assert seeded.stats.pool_writes(ids.lb()) == 0


def test_lro_failed_delete_keeps_the_resource(seeded, raw, network):
    seeded.faults.add(faults.LRO_FAILED, method="DELETE", times=1)
    with pytest.raises(HttpResponseError):
        network.load_balancer_backend_address_pools.begin_delete(RG, LB, POOL).result()
    assert network.load_balancer_backend_address_pools.get(RG, LB, POOL).provisioning_state == "Failed"


def test_sequence_scripts_consecutive_matching_requests(seeded, raw):
    seeded.faults.add_sequence(
        [faults.THROTTLED, faults.PASS, faults.SERVER_ERROR], method="GET", path="/loadBalancers/"
    )
    statuses = [raw.get(ids.lb()).status_code for _ in range(4)]
    assert statuses == [429, 200, 500, 200]
    assert raw.get(ids.nic("web-1-nic")).status_code == 200  # other paths never matched


def test_rate_rules_are_reproducible_with_a_seed(seeded, raw):
    def run():
        seeded.faults.clear()
        seeded.faults.add(faults.UNAVAILABLE, rate=0.5, seed=42, method="GET")
        return [raw.get(ids.lb()).status_code for _ in range(20)]

    first, second = run(), run()
    assert first == second
    assert 0 < first.count(503) < 20


def test_matching_by_method_and_resource_type(seeded, raw):
    seeded.faults.add(faults.SERVER_ERROR, method="PUT", resource_type="networkInterfaces")
    assert raw.get(ids.nic("web-1-nic")).status_code == 200
    nic = raw.get(ids.nic("web-1-nic")).json()
    assert raw.put(ids.nic("web-1-nic"), nic).status_code == 500
    assert raw.put(ids.pool(), {"properties": {}}).status_code == 200


def test_clear_and_reset_remove_faults(seeded, raw):
    seeded.faults.add(faults.SERVER_ERROR)
    assert raw.get(ids.lb()).status_code == 500
    seeded.faults.clear()
    assert raw.get(ids.lb()).status_code == 200
    seeded.faults.add(faults.SERVER_ERROR)
    seeded.reset(topology())
    assert raw.get(ids.lb()).status_code == 200
    assert seeded.stats.faults_injected() == 0


def test_unknown_fault_kind_is_refused(seeded):
    with pytest.raises(ValueError):
        seeded.faults.add("explode")


def test_admin_endpoint_adds_lists_and_clears_faults(seeded, raw):
    admin = f"{seeded.url}/_emulator/faults"
    added = requests.post(
        admin, json={"sequence": ["503", "pass"], "method": "GET"}, verify=seeded.ca_path, timeout=30
    )
    assert added.status_code == 201
    assert requests.get(admin, verify=seeded.ca_path, timeout=30).json()["rules"][0]["kinds"] == [
        "503",
        "pass",
    ]
    assert raw.get(ids.lb()).status_code == 503
    assert raw.get(ids.lb()).status_code == 200
    requests.post(admin, json={"kind": "500", "rate": 1.0}, verify=seeded.ca_path, timeout=30)
    assert raw.get(ids.lb()).status_code == 500
    assert requests.delete(admin, verify=seeded.ca_path, timeout=30).status_code == 204
    assert raw.get(ids.lb()).status_code == 200
