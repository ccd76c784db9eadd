"""Event Grid trigger for subscription / resource-group system-topic events (Event Grid or CloudEvents).

Thin: convert the delivered event, hand it to shared.flusher, emit the telemetry facts of
docs/operations.md. A malformed event is logged with its id and dropped (returning normally, so Event Grid
does not retry what cannot work); anything else that fails raises, so Event Grid redelivers it later.
Whether a recorded event's changes landed is reported by the flusher that applied them (`event_applied`).
"""

from __future__ import annotations

import logging
import os

import azure.functions as func

from shared import telemetry
from shared.events import MalformedEvent, event_fields, event_to_dict
from shared.flusher import event_service

log = logging.getLogger("poolsync.events")

bp = func.Blueprint()


@bp.function_name("eventgrid_resource_events")
@bp.event_grid_trigger(arg_name="event")
def eventgrid_resource_events(event: func.EventGridEvent) -> None:
    # The worker hands over a func.CloudEvent instead when the subscription uses the CloudEvents schema.
    event_id = getattr(event, "id", None)
    try:
        payload = event_to_dict(event)
        telemetry.emit("event_received", **event_fields(payload))
        result = event_service().handle(payload)
    except MalformedEvent as bad:
        telemetry.emit("event_ignored", logging.ERROR, event_id=bad.event_id or event_id,
                       reason=f"malformed: {bad.reason}")
        return
    except Exception as error:
        telemetry.emit("event_failed", logging.ERROR, event_id=event_id, reason=type(error).__name__,
                       error=str(error).splitlines()[0][:500] if str(error) else "")
        raise
    if result.decision == "ignored":
        telemetry.emit("event_ignored", event_id=result.event_id, reason=result.reason,
                       subject=result.subject)
        return
    log.info("event %s for %s recorded for %s", result.event_id, result.subject,
             ", ".join(result.load_balancers), extra=result.log_fields())


SWEEP_SCHEDULE_ENV = "POOLSYNC_SWEEP_SCHEDULE"
DEFAULT_SWEEP_SCHEDULE = "0 */5 * * * *"


@bp.function_name("intents_sweep_timer")
@bp.timer_trigger(arg_name="timer", schedule=os.environ.get(SWEEP_SCHEDULE_ENV) or DEFAULT_SWEEP_SCHEDULE,
                  run_on_startup=False, use_monitor=True)
def intents_sweep_timer(timer: func.TimerRequest) -> None:
    """Flush intents left behind by a holder that crashed or ran out of budget (its lease has expired)."""
    reports = event_service().sweep()
    if reports:
        log.info("sweep flushed %d load balancer(s) with pending intents", len(reports))
