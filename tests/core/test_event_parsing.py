"""Classifying Event Grid / CloudEvents resource events (pure, no I/O)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter

from shared.core.events import (
    ACTION_DELETE,
    ACTION_WRITE,
    KIND_NIC,
    KIND_RESOURCE_GROUP,
    KIND_VM,
    SCHEMA_CLOUD_EVENTS,
    SCHEMA_EVENT_GRID,
    Ignored,
    MalformedEvent,
    ResourceHint,
    intent_row_key,
    parse_event,
)
from tests.app.events.helpers import (
    ACTION,
    DELETE,
    DELETE_CANCEL,
    WRITE,
    WRITE_FAILURE,
    cloud_event,
    eventgrid_event,
    resource_event_data,
)
from tests.core.unit_factories import (
    OTHER_SUB,
    SUB,
    nic_id,
    vm_id,
    vnet_id,
)

VM = vm_id("web-1")
NIC = nic_id("web-1-nic")
WATCHED = {SUB.lower()}


def _functions_decode(event: dict) -> object:
    """What the Functions Python worker hands the trigger for this delivered JSON."""
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})


@pytest.mark.parametrize("build", [eventgrid_event, cloud_event], ids=["eventgrid", "cloudevents"])
def test_vm_write_in_either_schema_is_a_write_hint_for_that_vm(build):
    event = build(WRITE, VM.lower())  # ARM sends ids in any casing

    hint = parse_event(event, WATCHED)

    assert isinstance(hint, ResourceHint)
    assert (hint.kind, hint.action, hint.event_id) == (KIND_VM, ACTION_WRITE, event["id"])
    assert hint.resource_id.lower() == VM.lower()
    assert hint.subscription == SUB.lower()
    assert hint.event_time is not None
    assert hint.schema == (SCHEMA_CLOUD_EVENTS if build is cloud_event else SCHEMA_EVENT_GRID)


@pytest.mark.parametrize("build", [eventgrid_event, cloud_event], ids=["eventgrid", "cloudevents"])
def test_functions_worker_objects_parse_like_the_json_they_came_from(build):
    event = build(DELETE, NIC)

    from_object = parse_event(_functions_decode(event), WATCHED)

    assert from_object == parse_event(event, WATCHED)
    assert isinstance(from_object, ResourceHint)
    assert (from_object.kind, from_object.action) == (KIND_NIC, ACTION_DELETE)


def test_sdk_event_objects_are_accepted():
    grid = EventGridEvent(subject=VM, event_type=WRITE, data=resource_event_data(VM, "x/write"),
                          data_version="2")
    cloud = CloudEvent(source=f"/subscriptions/{SUB}", type=DELETE, subject=NIC,
                       data=resource_event_data(NIC, "x/delete"))

    assert isinstance(parse_event(grid), ResourceHint)
    assert parse_event(cloud).kind == KIND_NIC  # type: ignore[union-attr]


@pytest.mark.parametrize("text", ["2026-11-24T08:15:00.1234567Z", "2026-11-24T08:15:00.1234567"])
def test_event_time_with_seven_fractional_digits_is_kept_in_utc(text):
    event = eventgrid_event(WRITE, VM)
    event["eventTime"] = text

    hint = parse_event(event)

    assert isinstance(hint, ResourceHint)
    assert hint.event_time == datetime(2026, 11, 24, 8, 15, 0, 123456, tzinfo=UTC)


def test_unreadable_event_time_does_not_drop_the_hint():
    event = eventgrid_event(WRITE, VM)
    event["eventTime"] = "yesterday"

    hint = parse_event(event)

    assert isinstance(hint, ResourceHint) and hint.event_time is None


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (eventgrid_event(WRITE_FAILURE, VM), "did not succeed"),
        (cloud_event(DELETE_CANCEL, NIC), "did not succeed"),
        (eventgrid_event(WRITE, VM, status="Failed"), "status"),
        (eventgrid_event(WRITE, vnet_id("other")), "not a virtual machine"),
        (eventgrid_event(WRITE, f"{VM}/extensions/CustomScript"), "child resource"),
        (eventgrid_event("Microsoft.Storage.BlobCreated", f"{VM}"), "not handled"),
        (eventgrid_event(WRITE, vm_id("x").replace(SUB, OTHER_SUB)), "subscription not watched"),
        (eventgrid_event(ACTION, VM, operation="Microsoft.Compute/virtualMachines/start/action"), "action"),
    ],
    ids=["write-failure", "delete-cancel", "status-failed", "vnet", "vm-extension", "blob-event",
         "other-subscription", "vm-start"],
)
def test_events_poolsync_has_nothing_to_do_for_are_ignored_with_a_reason(event, reason):
    outcome = parse_event(event, WATCHED)

    assert isinstance(outcome, Ignored)
    assert reason in outcome.reason
    assert outcome.event_id == event["id"]


def test_tags_written_through_the_tags_api_are_a_hint_for_the_tagged_vm():
    event = eventgrid_event(WRITE, f"{VM}/providers/Microsoft.Resources/tags/default",
                            operation="Microsoft.Resources/tags/write")

    hint = parse_event(event, WATCHED)

    assert isinstance(hint, ResourceHint)
    assert (hint.kind, hint.resource_id) == (KIND_VM, VM)


@pytest.mark.parametrize(("event_type", "operation", "schema"), [
    (ACTION, "Microsoft.Resources/subscriptions/resourceGroups/moveResources/action", cloud_event),
    (DELETE, "Microsoft.Resources/subscriptions/resourceGroups/delete", eventgrid_event),
])
def test_moving_resources_out_of_a_group_or_deleting_it_hints_at_that_scope(event_type, operation, schema):
    group = f"/subscriptions/{SUB}/resourceGroups/rg-app"
    event = schema(event_type, group, operation=operation)

    hint = parse_event(event, WATCHED)

    assert isinstance(hint, ResourceHint)
    assert (hint.kind, hint.resource_id) == (KIND_RESOURCE_GROUP, group)


def test_bad_json_is_malformed():
    with pytest.raises(MalformedEvent, match="not JSON"):
        parse_event('{"id": "x", "eventType": ')


def test_missing_subject_is_malformed_and_keeps_the_id():
    event = eventgrid_event(WRITE, VM)
    del event["subject"]

    with pytest.raises(MalformedEvent) as raised:
        parse_event(event)

    assert raised.value.event_id == event["id"]
    assert "subject" in raised.value.reason


def test_unknown_schema_is_malformed_and_keeps_the_id():
    with pytest.raises(MalformedEvent) as raised:
        parse_event({"id": "evt-1", "kind": "something", "payload": {}})

    assert raised.value.event_id == "evt-1"
    assert "unknown schema" in raised.value.reason


@pytest.mark.parametrize(
    "mutate",
    [
        lambda e: e.pop("id"),
        lambda e: e.update(subject="/subscriptions/not-a-guid/resourceGroups/rg/providers/"
                                   "Microsoft.Compute/virtualMachines/vm"),
        lambda e: e.update(data="not an object"),
        lambda e: e.update(eventType=""),
    ],
    ids=["no-id", "bad-vm-id", "data-not-object", "empty-type"],
)
def test_unusable_event_grid_events_are_malformed(mutate):
    event = eventgrid_event(WRITE, VM)
    mutate(event)

    with pytest.raises(MalformedEvent):
        parse_event(event)


def test_cloud_event_of_another_spec_version_is_malformed():
    event = cloud_event(WRITE, VM)
    event["specversion"] = "0.3"

    with pytest.raises(MalformedEvent, match="specversion"):
        parse_event(event)


def test_intent_row_keys_are_table_safe_and_stable():
    event_id = str(uuid.uuid4())

    assert intent_row_key(event_id) == event_id
    assert intent_row_key("a/b\\c#d?e\x01") == "a_b_c_d_e_"
