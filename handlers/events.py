"""Event Grid trigger for subscription / resource-group system-topic events (Event Grid or CloudEvents).

Thin: each delivery goes to shared.app.event_intake, which hands it to the flusher and emits the
telemetry facts of docs/operations.md (a malformed event is dropped, any other failure raises so Event
Grid redelivers). Whether a recorded event's changes landed is reported by the flusher that applied
them (`event_applied`).
"""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared import telemetry
from shared.app.event_intake import receive_event
from shared.app.flusher import event_service
from shared.app.runtime import get_runtime

log = logging.getLogger("poolsync.events")

bp = func.Blueprint()


@bp.function_name("eventgrid_resource_events")
@bp.event_grid_trigger(arg_name="event")
def eventgrid_resource_events(event: func.EventGridEvent) -> None:
    # The worker hands over a func.CloudEvent instead when the subscription uses the CloudEvents schema.
    receive_event(event)


SWEEP_SCHEDULE_ENV = "POOLSYNC_SWEEP_SCHEDULE"
DEFAULT_SWEEP_SCHEDULE = "*/30 * * * * *"  # one Table query when idle; a burst's tail waits at most 30 s


@bp.function_name("intents_sweep_timer")
@bp.timer_trigger(arg_name="timer", schedule=os.environ.get(SWEEP_SCHEDULE_ENV) or DEFAULT_SWEEP_SCHEDULE,
                  run_on_startup=False, use_monitor=True)
def intents_sweep_timer(timer: func.TimerRequest) -> None:
    """Flush intents left behind by a holder that crashed or ran out of budget (its lease has expired)."""
    reports = event_service().sweep()
    if reports:
        log.info("sweep flushed %d subscription(s) with due intents", len(reports))


FULL_RECONCILE_SCHEDULE_ENV = "POOLSYNC_FULL_RECONCILE_SCHEDULE"
DEFAULT_FULL_RECONCILE_SCHEDULE = "0 17 * * * *"  # hourly, off the sweep's and the audit's minutes


@bp.function_name("full_reconcile_timer")
@bp.timer_trigger(arg_name="timer",
                  schedule=os.environ.get(FULL_RECONCILE_SCHEDULE_ENV) or DEFAULT_FULL_RECONCILE_SCHEDULE,
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
