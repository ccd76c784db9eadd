"""Event Grid delivery as Azure does it (retries, timeouts, misbehaviour); VM PATCH and Tags API events."""

from __future__ import annotations

from dataclasses import replace

import pytest
from azure.mgmt.compute.models import NetworkInterfaceReference, NetworkProfile, VirtualMachineUpdate

from emulator import AZURE_DELIVERY, DEFAULT_DELIVERY, DeliveryPolicy
from emulator.events import WRITE_SUCCESS, build_event
from tests.fixtures.arm import RESOURCE_GROUP, ids, topology

RG = RESOURCE_GROUP


def touch_nic(network, name="web-1-nic"):
    """A NIC write through the SDK: one ResourceWriteSuccess event once its operation completes."""
    nic = network.network_interfaces.get(RG, name)
    network.network_interfaces.begin_create_or_update(RG, name, nic).result()


def publish_directly(arm, count):
    """Events straight into the sender, in a known order (no ARM timing in between)."""
    events = [build_event(WRITE_SUCCESS, ids.nic(f"n-{i}"), "PUT", "2026-03-01") for i in range(count)]
    for event in events:
        arm.events.publish(event)
    return [e["id"] for e in events]


def test_azure_schedule_is_event_grids_and_scales():
    assert [AZURE_DELIVERY.retry_delay(n) for n in (1, 2, 3, 4, 5)] == [10, 30, 60, 300, 600]
    assert AZURE_DELIVERY.retry_delay(12) == 43200  # every 12 h after the listed steps
    assert AZURE_DELIVERY.retry_delay(30) is None  # 30 attempts, then given up
    fast = DeliveryPolicy(retry_schedule=(10, 30), backoff_scale=0.01)
    assert [fast.retry_delay(n) for n in (1, 2, 3)] == [0.1, 0.3, 0.3]
    assert AZURE_DELIVERY.timeout_seconds == 30
    with pytest.raises(ValueError, match="duplicate_rate"):
        DeliveryPolicy(duplicate_rate=1.5)


@pytest.mark.parametrize("status", [400, 413])
def test_azure_delivery_does_not_retry_400_or_413(arm, network, webhook, status):
    arm.reset(topology(vms=1))
    arm.configure_delivery(AZURE_DELIVERY, backoff_scale=0.001)
    arm.set_event_webhook(webhook.url)
    webhook.script = [status]
    touch_nic(network)
    assert arm.wait_events_delivered(timeout=30)
    assert [answer for answer, _ in webhook.attempts] == [status]
    assert webhook.events == []
    assert arm.stats.deliveries("rejected") == 1
    assert arm.stats.deliveries("retried") == 0


def test_default_delivery_keeps_retrying_any_failure(arm, network, webhook):
    arm.reset(topology(vms=1))
    arm.set_event_webhook(webhook.url)
    webhook.script = [400]
    touch_nic(network)
    assert arm.wait_events_delivered(timeout=30)
    assert [answer for answer, _ in webhook.attempts] == [400, 200]


def test_azure_profile_switches_on_event_grid_delivery_and_default_switches_it_off(arm, network, webhook):
    arm.set_profile("azure", delivery={"backoff_scale": 0.001})
    arm.reset(topology(vms=1))
    arm.operation_seconds = 0.05
    assert arm.events.policy == replace(AZURE_DELIVERY, backoff_scale=0.001)
    arm.set_event_webhook(webhook.url)
    webhook.script = [403, 500]  # Event Grid drops a 403 at once; the next event retries its 500
    touch_nic(network)
    assert arm.wait_events_delivered(timeout=30)
    touch_nic(network)
    assert arm.wait_events_delivered(timeout=30)
    assert [answer for answer, _ in webhook.attempts] == [403, 500, 200]
    assert (arm.stats.deliveries("rejected"), arm.stats.deliveries("delivered")) == (1, 1)
    # configure_delivery() without a policy starts from the profile's, not the lenient one
    assert arm.configure_delivery(seed=4) == replace(AZURE_DELIVERY, backoff_scale=0.001, seed=4)

    arm.set_profile("default")
    assert arm.events.policy == DEFAULT_DELIVERY
    webhook.attempts.clear()
    webhook.script = [403]
    touch_nic(network)
    assert arm.wait_events_delivered(timeout=30)
    assert [answer for answer, _ in webhook.attempts] == [403, 200]


def test_admin_delivery_without_base_changes_the_profiles_policy(arm):
    arm.set_profile("azure")
    reply = arm.admin.handle("POST", "/config", {}, b'{"delivery": {"backoff_scale": 0.5}}')
    assert reply.body["delivery"]["max_attempts"] == 30 and reply.body["delivery"]["backoff_scale"] == 0.5
    reply = arm.admin.handle("POST", "/config", {}, b'{"delivery": {"base": "default"}}')
    assert reply.body["delivery"]["max_attempts"] == DEFAULT_DELIVERY.max_attempts


def test_no_answer_within_the_timeout_is_retried_on_the_schedule(arm, network, webhook):
    arm.reset(topology(vms=1))
    arm.configure_delivery(AZURE_DELIVERY, timeout_seconds=0.3, backoff_scale=0.001)
    arm.set_event_webhook(webhook.url)
    webhook.script = [2.0, 500]  # stall past the timeout, then fail, then accept
    touch_nic(network)
    assert arm.wait_events_delivered(timeout=30)
    answers = [answer for answer, _ in webhook.attempts]
    assert answers == [0, 500, 200]
    assert len({event_id for _, event_id in webhook.attempts}) == 1  # the same event each time
    assert arm.stats.deliveries("timed_out") == 1
    assert arm.stats.deliveries("retried") == 2
    assert arm.stats.deliveries("delivered") == 1


def test_attempts_are_bounded(arm, network, webhook):
    arm.reset(topology(vms=1))
    arm.configure_delivery(AZURE_DELIVERY, max_attempts=3, backoff_scale=0.001)
    arm.set_event_webhook(webhook.url)
    webhook.script = [503, 503, 503, 503]
    touch_nic(network)
    assert arm.wait_events_delivered(timeout=30)
    assert len(webhook.attempts) == 3
    assert arm.stats.deliveries("dropped") == 1


def test_duplicates_and_replays_deliver_the_same_event_again(arm, webhook):
    arm.reset()
    arm.configure_delivery(duplicate_rate=1.0, replay_rate=1.0, replay_seconds=0.05, seed=1)
    arm.set_event_webhook(webhook.url)
    [event_id] = publish_directly(arm, 1)
    assert arm.wait_events_delivered(timeout=30)
    # two copies at once, each replayed once after its successful delivery
    assert [e["id"] for e in webhook.events] == [event_id] * 4
    assert arm.stats.deliveries("duplicate") == 1
    assert arm.stats.deliveries("replayed") == 2


def test_seeded_reordering_lets_later_events_overtake(arm, webhook):
    arm.reset()
    arm.configure_delivery(reorder_rate=0.5, reorder_seconds=0.5, seed=4)
    arm.set_event_webhook(webhook.url)
    published = publish_directly(arm, 12)
    assert arm.wait_events_delivered(timeout=30)
    received = [e["id"] for e in webhook.events]
    assert sorted(received) == sorted(published)
    assert received != published
    held = arm.stats.deliveries("reordered")
    assert 0 < held < 12
    assert received[-held:] == [i for i in published if i not in received[:-held]]


def test_vm_patch_updates_tags_and_nics_and_emits_a_patch_event(arm, network, compute, webhook):
    arm.reset(topology(vms=1, nics=[{"name": "spare-nic", "subnet": "vnet-app/default", "ip": "10.0.0.30"}]))
    arm.set_event_webhook(webhook.url)
    nics = [
        NetworkInterfaceReference(id=ids.nic("web-1-nic"), primary=True),
        NetworkInterfaceReference(id=ids.nic("spare-nic"), primary=False),
    ]
    update = VirtualMachineUpdate(
        tags={"poolsync": "false", "tier": "web"}, network_profile=NetworkProfile(network_interfaces=nics)
    )
    updated = compute.virtual_machines.begin_update(RG, "web-1", update).result()
    assert updated.tags == {"poolsync": "false", "tier": "web"}
    assert [n.id for n in updated.network_profile.network_interfaces] == [
        ids.nic("web-1-nic"),
        ids.nic("spare-nic"),
    ]
    assert network.network_interfaces.get(RG, "spare-nic").virtual_machine.id == ids.vm("web-1")
    assert updated.provisioning_state == "Succeeded"

    assert arm.wait_events_delivered(timeout=30)
    [event] = webhook.events
    assert event["subject"] == ids.vm("web-1")
    assert event["data"]["httpRequest"]["method"] == "PATCH"
    assert event["data"]["operationName"] == "Microsoft.Compute/virtualMachines/write"


def test_tags_api_changes_tags_and_emits_an_event_about_the_tags_resource(arm, raw, compute, webhook):
    arm.reset(topology(vms=1, vm_tags={"poolsync": "true", "team": "a"}))
    arm.set_event_webhook(webhook.url)
    tags_id = f"{ids.vm('web-1')}/providers/Microsoft.Resources/tags/default"
    etag_before = compute.virtual_machines.get(RG, "web-1").etag

    merged = raw.patch(tags_id, {"operation": "Merge", "properties": {"tags": {"tier": "web"}}}, "2021-04-01")
    assert merged.status_code == 200
    assert merged.json() == {
        "id": tags_id,
        "name": "default",
        "type": "Microsoft.Resources/tags",
        "properties": {"tags": {"poolsync": "true", "team": "a", "tier": "web"}},
    }
    deleted = raw.patch(tags_id, {"operation": "Delete", "properties": {"tags": {"team": ""}}}, "2021-04-01")
    assert deleted.json()["properties"]["tags"] == {"poolsync": "true", "tier": "web"}
    assert raw.put(tags_id, {"properties": {"tags": {"x": "1"}}}, "2021-04-01").status_code == 200
    vm = compute.virtual_machines.get(RG, "web-1")
    assert vm.tags == {"x": "1"}
    assert vm.etag != etag_before
    assert raw.get(tags_id, "2021-04-01").json()["properties"]["tags"] == {"x": "1"}

    assert arm.wait_events_delivered(timeout=30)
    assert [e["subject"] for e in webhook.events] == [tags_id] * 3
    assert [e["data"]["httpRequest"]["method"] for e in webhook.events] == ["PATCH", "PATCH", "PUT"]
    assert {e["data"]["operationName"] for e in webhook.events} == {"Microsoft.Resources/tags/write"}


def test_tags_api_refuses_bad_input_and_missing_resources(arm, raw):
    arm.reset(topology(vms=1))
    tags_id = f"{ids.vm('web-1')}/providers/Microsoft.Resources/tags/default"
    bad = raw.patch(tags_id, {"operation": "Append", "properties": {"tags": {}}}, "2021-04-01")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "InvalidTagOperation")
    too_many = raw.put(tags_id, {"properties": {"tags": {f"t{i}": "v" for i in range(51)}}}, "2021-04-01")
    assert too_many.status_code == 400
    gone = raw.put(
        f"{ids.vm('nope')}/providers/Microsoft.Resources/tags/default",
        {"properties": {"tags": {}}},
        "2021-04-01",
    )
    assert gone.status_code == 404
    assert arm.events.published == []
