"""The `azure` profile: Azure's documented throttling, busy-LB answers, resource rules and LRO timing,
observed through the real azure-mgmt-network client."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from azure.core.exceptions import HttpResponseError
from azure.mgmt.network.models import BackendAddressPool, LoadBalancerBackendAddress, SubResource

from emulator import Emulator
from emulator.retry_after import AZURE_RETRY_AFTER
from shared.azure.clients import ArmSettings, network_client
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, SUBSCRIPTION, ids, topology

RG = RESOURCE_GROUP


def jwt(**claims: str) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'none'})}.{part(claims)}.sig"


def client_as(arm: Emulator, token: str):
    settings = ArmSettings(endpoint=arm.url, ca_bundle=arm.ca_path, static_token=token, polling_interval=0.05)
    return network_client(settings, SUBSCRIPTION)


def address(name: str, ip: str) -> LoadBalancerBackendAddress:
    return LoadBalancerBackendAddress(name=name, ip_address=ip, virtual_network=SubResource(id=ids.vnet()))


def two_pools() -> dict:
    return topology(lbs=[{"name": LB, "sku": "Standard", "pools": [{"name": POOL}, {"name": "other"}]}])


@pytest.fixture
def azure(arm: Emulator) -> Emulator:
    arm.set_profile("azure")
    arm.reset(two_pools())
    arm.operation_seconds = 0.05
    arm.lro_retry_after = 0
    return arm


# ---------------------------------------------------------------- throttling
def test_azure_profile_uses_the_documented_arm_buckets_per_principal(azure, raw):
    first = raw.get(ids.lb())
    assert int(first.headers["x-ms-ratelimit-remaining-subscription-reads"]) == 249  # 250-token bucket
    assert first.headers["x-ms-ratelimit-remaining-resource"].startswith("Microsoft.Network/reads;")
    other = client_as(azure, jwt(oid="principal-b", appid="app-b"))
    response = other.load_balancers.get(RG, LB, raw_request_hook=None, cls=lambda resp, *_: resp)
    # principal-b has its own full bucket, principal "test-token" spent one
    assert int(response.http_response.headers["x-ms-ratelimit-remaining-subscription-reads"]) == 249
    assert azure.stats.calls_by("principal-b", "reads") == 1
    assert azure.stats.calls_by("test-token", "reads") == 1


def test_writes_and_deletes_spend_separate_buckets_and_an_empty_bucket_answers_429(azure, raw):
    write = raw.put(ids.pool("p1"), {"properties": {}})
    assert int(write.headers["x-ms-ratelimit-remaining-subscription-writes"]) == 199
    azure.complete_operations()
    delete = raw.delete(ids.pool("p1"))
    assert int(delete.headers["x-ms-ratelimit-remaining-subscription-deletes"]) == 199

    azure.set_profile("azure", conflict_mix={"reject_409": 1.0})
    azure.configure_throttling(reads=azure.throttle.reads.__class__(capacity=2, refill_per_second=0.01))
    network = client_as(azure, "token-c")
    network.load_balancers.get(RG, LB)
    network.load_balancers.get(RG, LB)
    with pytest.raises(HttpResponseError) as throttled:
        network.load_balancers.get(RG, LB)
    assert throttled.value.status_code == 429
    assert throttled.value.error.code == "SubscriptionRequestsThrottled"
    assert int(throttled.value.response.headers["Retry-After"]) >= 1
    assert azure.stats.throttled_count("subscription-reads") == 1


def test_network_provider_limits_throttle_on_their_own(azure, raw):
    from emulator.throttling import BucketSettings

    limits = azure.profile.throttle
    limits.network_writes = BucketSettings(capacity=1, refill_per_second=0.001)
    azure.throttle.configure_limits(limits)
    assert raw.put(ids.pool("p1"), {"properties": {}}).status_code == 201
    azure.complete_operations()
    refused = raw.put(ids.pool("p2"), {"properties": {}})
    assert refused.status_code == 429
    assert "Retry-After" in refused.headers
    assert azure.stats.throttled_count("network-writes") == 1
    assert azure.world.get_pool(ids.pool("p2")) is None


# ------------------------------------------------------------ busy load balancer
def only(behaviour: str, arm: Emulator) -> None:
    arm.set_profile("azure", conflict_mix={behaviour: 1.0})
    arm.operation_seconds = 600
    arm.lro_retry_after = 0


def test_busy_lb_can_answer_retryable_429_with_the_wait_in_the_message(azure, network):
    only("retryable_429", azure)
    network.load_balancer_backend_address_pools.begin_create_or_update(RG, LB, POOL, BackendAddressPool())
    with pytest.raises(HttpResponseError) as refused:
        network.load_balancer_backend_address_pools.begin_create_or_update(
            RG, LB, "other", BackendAddressPool()
        )
    assert refused.value.status_code == 429
    assert refused.value.error.code == "RetryableError"
    detail = refused.value.error.details[0]
    assert detail.code == "RetryableErrorDueToAnotherOperation"
    seconds = int(refused.value.response.headers["Retry-After"])
    assert f"retried in {seconds} seconds" in detail.message
    assert azure.stats.conflicts("retryable_429") == 1


def test_busy_lb_can_accept_the_later_write_and_fail_it(azure, network, raw):
    only("accept_then_fail", azure)
    network.load_balancer_backend_address_pools.begin_create_or_update(RG, LB, POOL, BackendAddressPool())
    accepted = raw.put(ids.pool("other"), {"properties": {}})
    assert accepted.status_code == 200 and "Azure-AsyncOperation" in accepted.headers
    azure.complete_operations()
    status = raw.absolute(accepted.headers["Azure-AsyncOperation"]).json()
    assert status["status"] == "Failed"
    assert status["error"]["code"] == "AnotherOperationInProgress"
    assert azure.world.get_pool(ids.pool("other"))["properties"]["provisioningState"] == "Failed"
    assert azure.world.get_pool(ids.pool())["properties"]["provisioningState"] == "Succeeded"


def test_busy_lb_can_cancel_the_earlier_write_whose_content_is_then_not_applied(azure, network):
    only("cancel_earlier", azure)
    pools = network.load_balancer_backend_address_pools
    earlier = pools.begin_create_or_update(
        RG, LB, POOL, BackendAddressPool(load_balancer_backend_addresses=[address("a1", "10.0.0.21")])
    )
    later = pools.begin_create_or_update(
        RG, LB, "other", BackendAddressPool(load_balancer_backend_addresses=[address("b1", "10.0.0.22")])
    )
    azure.complete_operations()
    with pytest.raises(HttpResponseError) as canceled:
        earlier.result()
    assert "CanceledAndSupersededDueToAnotherOperation" in str(canceled.value)
    assert later.result().provisioning_state == "Succeeded"
    assert azure.world.pool_address_ips(ids.pool()) == []  # the canceled write never took effect
    assert azure.world.pool_address_ips(ids.pool("other")) == ["10.0.0.22"]
    assert azure.stats.pool_writes(ids.lb()) == 1


def test_a_later_write_that_is_invalid_does_not_cancel_the_earlier_one(azure, network, raw):
    only("cancel_earlier", azure)
    pools = network.load_balancer_backend_address_pools
    earlier = pools.begin_create_or_update(
        RG, LB, POOL, BackendAddressPool(load_balancer_backend_addresses=[address("a1", "10.0.0.21")])
    )
    bad = {
        "properties": {"loadBalancerBackendAddresses": [{"name": "x", "properties": {"ipAddress": "nope"}}]}
    }
    assert raw.put(ids.pool("other"), bad).status_code == 400
    azure.complete_operations()
    assert earlier.result().provisioning_state == "Succeeded"
    assert azure.world.pool_address_ips(ids.pool()) == ["10.0.0.21"]


def test_the_conflict_mix_is_reproducible_from_its_seed(arm, raw):
    def run() -> list[int]:
        arm.set_profile("azure", conflict_mix={"reject_409": 1, "retryable_429": 1}, conflict_seed=11)
        arm.reset(two_pools())
        arm.operation_seconds = 600
        raw.put(ids.pool(), {"properties": {}})
        return [raw.put(ids.pool("other"), {"properties": {}}).status_code for _ in range(12)]

    first, second = run(), run()
    assert first == second
    assert set(first) == {409, 429}


# ------------------------------------------------------------ resource semantics
def test_a_failed_pool_blocks_dependent_writes_until_it_is_re_put(azure, network, raw):
    azure.faults.add("lro_failed", method="PUT", resource_type="backendAddressPools", times=1)
    with pytest.raises(HttpResponseError):
        network.load_balancer_backend_address_pools.begin_create_or_update(
            RG, LB, POOL, BackendAddressPool()
        ).result()
    assert network.load_balancer_backend_address_pools.get(RG, LB, POOL).provisioning_state == "Failed"

    refused = raw.put(ids.pool("other"), {"properties": {}})
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "ReferencedResourceNotProvisioned"
    assert ids.pool() in refused.json()["error"]["message"]

    fixed = network.load_balancer_backend_address_pools.begin_create_or_update(
        RG, LB, POOL, BackendAddressPool()
    ).result()
    assert fixed.provisioning_state == "Succeeded"
    assert raw.put(ids.pool("other"), {"properties": {}}).status_code == 200


def test_a_nic_cannot_join_a_pool_of_a_failed_load_balancer(arm, raw):
    arm.set_profile("azure")
    arm.reset(topology(vms=1))
    arm.operation_seconds = 0.05
    arm.world.set_provisioning_state(ids.pool(), "Failed")
    nic = raw.get(ids.nic("web-1-nic")).json()
    nic["properties"]["ipConfigurations"][0]["properties"]["loadBalancerBackendAddressPools"] = [
        {"id": ids.pool()}
    ]
    refused = raw.put(ids.nic("web-1-nic"), nic)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "ReferencedResourceNotProvisioned"


def test_the_etag_changes_when_the_put_is_accepted_and_again_when_it_completes(azure, raw):
    before = raw.get(ids.pool()).headers["ETag"]
    accepted = raw.put(ids.pool(), {"properties": {}})
    assert accepted.headers["ETag"] != before
    azure.complete_operations()
    after = raw.get(ids.pool())
    assert after.headers["ETag"] not in (before, accepted.headers["ETag"])
    assert after.json()["etag"] == after.headers["ETag"]


def test_automatic_sync_mode_pools_refuse_address_edits(azure, network):
    pools = network.load_balancer_backend_address_pools
    pools.begin_create_or_update(
        RG, LB, "auto", BackendAddressPool(sync_mode="Automatic", virtual_network=SubResource(id=ids.vnet()))
    ).result()
    with pytest.raises(HttpResponseError) as refused:
        pools.begin_create_or_update(
            RG,
            LB,
            "auto",
            BackendAddressPool(
                sync_mode="Automatic", load_balancer_backend_addresses=[address("a", "10.0.0.30")]
            ),
        )
    assert refused.value.status_code == 400
    assert (
        refused.value.error.code
        == "ModificationOfBackendAddressesInPoolIsNotSupportedWhenSyncModeIsAutomatic"
    )
    assert refused.value.error.message == (
        "Modification of backend addresses in pools is not supported when sync mode is set as Automatic."
    )


def test_nic_members_are_listed_without_ip_and_cannot_be_removed_through_the_list(arm, network, raw):
    arm.set_profile("azure")
    arm.reset(
        topology(
            nics=[
                {"name": "spare", "subnet": "vnet-app/default", "ip": "10.0.0.30", "pools": [f"{LB}/{POOL}"]}
            ]
        )
    )
    arm.operation_seconds = 0.05
    arm.lro_retry_after = 0
    pool = network.load_balancer_backend_address_pools.get(RG, LB, POOL)
    [entry] = pool.load_balancer_backend_addresses
    assert entry.ip_address is None
    assert entry.network_interface_ip_configuration.id.lower().startswith(ids.nic("spare").lower())
    # a GET-modify-PUT that keeps the NIC entry is fine; one that drops it is refused
    unchanged = raw.get(ids.pool()).json()
    assert raw.put(ids.pool(), unchanged).status_code == 200
    arm.complete_operations()
    unchanged["properties"]["loadBalancerBackendAddresses"] = []
    refused = raw.put(ids.pool(), unchanged)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "ModificationOfNICIpConfigBackendPoolNotSupported"


def test_pool_and_addresses_have_the_rest_spec_shape(azure, raw):
    raw.put(
        ids.pool(),
        {
            "properties": {
                "loadBalancerBackendAddresses": [
                    {
                        "name": "a1",
                        "properties": {"ipAddress": "10.0.0.21", "virtualNetwork": {"id": ids.vnet()}},
                    }
                ]
            }
        },
    )
    azure.complete_operations()
    pool = raw.get(ids.pool()).json()
    assert {"id", "name", "etag", "type", "properties"} <= set(pool)
    assert pool["properties"]["provisioningState"] == "Succeeded"
    [addr] = pool["properties"]["loadBalancerBackendAddresses"]
    assert set(addr) == {"name", "properties"}  # backend addresses carry no id/etag/type


def test_pool_size_limit_answers_400(arm, raw):
    arm.set_profile("azure", max_addresses_per_pool=2, max_addresses_per_load_balancer=3)
    arm.reset(two_pools())
    arm.operation_seconds = 0.05

    def body(*ips: str) -> dict:
        return {
            "properties": {
                "loadBalancerBackendAddresses": [
                    {"name": f"a{i}", "properties": {"ipAddress": ip, "virtualNetwork": {"id": ids.vnet()}}}
                    for i, ip in enumerate(ips)
                ]
            }
        }

    too_many = raw.put(ids.pool(), body("10.0.0.21", "10.0.0.22", "10.0.0.23"))
    assert too_many.status_code == 400
    assert too_many.json()["error"]["code"] == "LoadBalancerBackendAddressPoolSizeLimitExceeded"
    assert raw.put(ids.pool(), body("10.0.0.21", "10.0.0.22")).status_code == 200
    arm.complete_operations()
    over_lb = raw.put(ids.pool("other"), body("10.0.0.31", "10.0.0.32"))
    assert over_lb.status_code == 400
    assert over_lb.json()["error"]["code"] == "LoadBalancerBackendAddressLimitExceeded"


# ------------------------------------------------------------------ long operations
def test_azure_profile_defaults_to_azure_lro_timing_and_reset_keeps_the_profile(arm, raw):
    arm.set_profile("azure")
    arm.reset(two_pools())
    assert (arm.operation_seconds, arm.lro_retry_after, arm.profile.name) == (5.0, AZURE_RETRY_AFTER, "azure")
    accepted = raw.put(ids.pool(), {"properties": {}})
    assert accepted.headers["Retry-After"] == "3"  # Network RP on an accepted PUT (docs/emulator.md)
    poll = raw.absolute(accepted.headers["Azure-AsyncOperation"])
    assert poll.json()["status"] == "InProgress" and poll.headers["Retry-After"] == "10"
    arm.complete_operations()


def test_cli_and_admin_select_the_profile(arm, tmp_path):
    assert (
        "azure"
        in subprocess.run(
            [sys.executable, "-m", "emulator", "--help"], capture_output=True, text=True, check=True
        ).stdout
    )
    reply = arm.admin.handle(
        "POST",
        "/config",
        {},
        json.dumps(
            {
                "profile": "azure",
                "profile_overrides": {"conflict_mix": {"cancel_earlier": 1}},
                "lro_retry_after": 0,
            }
        ).encode(),
    )
    assert reply.body["profile"] == "azure"
    assert reply.body["lro_retry_after"]["Microsoft.Network"]["later_polls"] == 0
    with pytest.raises(ValueError):
        arm.set_profile("azure", conflict_mix={"sometimes": 1})
    with pytest.raises(ValueError):
        arm.set_profile("strict")
