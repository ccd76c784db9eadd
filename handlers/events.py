"""Event Grid trigger for subscription / resource-group system-topic events (Event Grid or CloudEvents).

Thin: each delivery goes to shared.app.event_intake, which records it, asks for a flush and emits the
telemetry facts of docs/operations.md (a malformed event is dropped, any other failure raises so Event
Grid redelivers). The flush runs in `flush_requests` (queue trigger), never inside a delivery; whether a
recorded event's changes landed is reported by the flusher that applied them (`event_applied`).
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import settings, telemetry
from shared.app.event_intake import FLUSH_QUEUE, receive_event, receive_flush_request
from shared.app.flusher import event_service
from shared.app.runtime import get_runtime

log = logging.getLogger("poolsync.events")

bp = func.Blueprint()


@bp.function_name("eventgrid_resource_events")
@bp.event_grid_trigger(arg_name="event")
def eventgrid_resource_events(event: func.EventGridEvent) -> None:
    # The worker hands over a func.CloudEvent instead when the subscription uses the CloudEvents schema.
    receive_event(event)


@bp.function_name("flush_requests")
@bp.queue_trigger(arg_name="message", queue_name=FLUSH_QUEUE, connection="AzureWebJobsStorage")
def flush_requests(message: func.QueueMessage) -> None:
    """Run the subscription's flusher (intake queued the request with the quiet period as its delay)."""
    receive_flush_request(message.id or "", message.get_body().decode("utf-8", errors="replace"))


@bp.function_name("intents_sweep_timer")
@bp.timer_trigger(arg_name="timer", schedule=settings.SWEEP_SCHEDULE.or_default(settings.app_settings()),
                  run_on_startup=False, use_monitor=True)
def intents_sweep_timer(timer: func.TimerRequest) -> None:
    """Flush intents left behind by a holder that crashed or ran out of budget (its lease has expired)."""
    reports = event_service().sweep()
    if reports:
        log.info("sweep flushed %d subscription(s) with due intents", len(reports))


@bp.function_name("full_reconcile_timer")
@bp.timer_trigger(arg_name="timer",
                  schedule=settings.FULL_RECONCILE_SCHEDULE.or_default(settings.app_settings()),
                  run_on_startup=False, use_monitor=True)
def full_reconcile_timer(timer: func.TimerRequest) -> None:
    """Anti-entropy: reconcile every managed pool against one inventory read and rebuild the member index,
    so an event Event Grid never delivered (or a change made while poolsync was down) is repaired."""
    outcomes = get_runtime().reconciler.reconcile(source="full-reconcile")
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    telemetry.emit("full_reconcile", logging.WARNING if counts.get("failed") or counts.get("refused")
                   else logging.INFO, pools=len(outcomes), **counts)
