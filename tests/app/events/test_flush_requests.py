"""The flush runs in its own trigger: a delivery records and asks; the `flush_requests` queue trigger
(served by the local Functions host as Functions serves it) applies the change."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.queue import QueueMessage

from devstack.host import FunctionIndex, QueuePoller, load_app, queue_connection
from handlers.events import eventgrid_resource_events, flush_requests
from shared.storage.flush_requests import request_message
from tests.app.events.conftest import Stack, create_vm, facts, pool_key
from tests.app.events.helpers import WRITE, eventgrid_event
from tests.fixtures.arm import POOL, SUBSCRIPTION, ids

pytestmark = pytest.mark.timeout(120)

DELIVER = eventgrid_resource_events.build().get_user_function()
FLUSH = flush_requests.build().get_user_function()


def _deliver_only(event: dict[str, Any]) -> None:
    DELIVER(EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={}))


def _queue(stack: Stack) -> Any:
    queue = stack.service.requests.queue
    stack.service.requests._ensure_queue()
    queue.clear_messages()  # one queue name for every test of this Azurite
    return queue


def _flush_function() -> Any:
    function = FunctionIndex.of(load_app()).get("flush_requests")
    assert function is not None and function.trigger == "queuetrigger"
    return function


def test_a_delivery_only_records_and_the_queued_request_applies_it(stack: Stack, network, compute, caplog):
    queue = _queue(stack)
    create_vm(network, compute, "web-9")
    events = stack.emitted()
    stack.arm.stats.reset()

    started = time.monotonic()
    for event in events:
        _deliver_only(event)
    held = time.monotonic() - started

    assert stack.arm.stats.requests() == 0  # no ARM call inside a delivery
    assert pool_key("web-9-nic") not in stack.pool(POOL)
    assert stack.pending_intents() == len(events)
    assert held < stack.service.requests.delay  # returned before the request could even be seen
    assert queue.get_queue_properties().approximate_message_count == 1  # one request for the burst

    # The local Functions host's poller, on the app's own function: nothing visible until the delay ran.
    poller = QueuePoller(_flush_function(), queue_connection({}, stack.env) or "")
    assert poller.poll_once() == 0
    deadline = time.monotonic() + 15
    with caplog.at_level(logging.INFO, logger="poolsync"):
        while poller.poll_once() == 0 and time.monotonic() < deadline:
            time.sleep(0.2)

    assert pool_key("web-9-nic") in stack.pool(POOL)
    assert stack.pending_intents() == 0
    assert len(facts(caplog, "event_applied")) == len(events)
    assert queue.get_queue_properties().approximate_message_count == 0  # handled and deleted


def test_a_malformed_request_is_dropped_and_a_failed_flush_defers_without_raising(stack: Stack, network,
                                                                                  compute, caplog):
    FLUSH(QueueMessage(id="m1", body=b"not json"))  # returns: retrying cannot make it valid
    FLUSH(QueueMessage(id="m2", body=json.dumps({"subscription": ""}).encode()))

    create_vm(network, compute, "web-8")
    stack.emitted()
    _deliver_only(eventgrid_event(WRITE, ids.vm("web-8")))
    stack.arm.faults.add("500", method="PUT", resource_type="backendAddressPools")  # outlives every retry
    short = Stack(stack.arm, {**stack.env, "POOLSYNC_RETRY_DEADLINE": "2",
                              "POOLSYNC_RETRY_MAX_ATTEMPTS": "2"})

    with caplog.at_level(logging.INFO, logger="poolsync"):
        FLUSH(QueueMessage(id="m3", body=request_message(SUBSCRIPTION).encode()))  # logged, not raised

    assert [f["intents"] for f in facts(caplog, "intents_deferred")] == [1]
    assert [f["subscription"] for f in facts(caplog, "flush_failed")] == [SUBSCRIPTION]  # the alert's line
    (kept,) = short.service.intents.pending(SUBSCRIPTION, due_only=False)
    assert kept.attempts == 1  # the sweep retries it after its back-off
    assert pool_key("web-8-nic") not in stack.pool(POOL)


def test_one_process_sends_one_request_per_delay_however_many_events(stack: Stack):
    queue = _queue(stack)
    requests = stack.service.requests

    sent = [requests.request(SUBSCRIPTION) for _ in range(50)]

    assert sent.count(True) == 1  # the first message's invocation starts after all of these were recorded
    assert queue.get_queue_properties().approximate_message_count == 1
    requests._visible_at[SUBSCRIPTION] = time.monotonic()  # that message is about to be seen: ask again
    assert requests.request(SUBSCRIPTION) is True
