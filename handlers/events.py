"""Event Grid trigger for subscription / resource-group system-topic events (Event Grid or CloudEvents).

Thin: convert the delivered event, hand it to shared.flusher, log one structured line. A malformed event
is logged with its id and dropped (returning normally, so Event Grid does not retry what cannot work);
anything else that fails raises, so Event Grid redelivers the event later.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.events import MalformedEvent, event_to_dict
from shared.flusher import event_service

log = logging.getLogger("poolsync.events")

bp = func.Blueprint()


@bp.function_name("eventgrid_resource_events")
@bp.event_grid_trigger(arg_name="event")
def eventgrid_resource_events(event: func.EventGridEvent) -> None:
    # The worker hands over func.CloudEvent instead when the subscription uses the CloudEvents schema.
    event_id = getattr(event, "id", None)
    try:
        result = event_service().handle(event_to_dict(event))
    except MalformedEvent as bad:
        log.error("dropped malformed event %s: %s", bad.event_id or event_id, bad.reason,
                  extra={"event_id": bad.event_id or event_id, "decision": "malformed", "reason": bad.reason})
        return
    fields = result.log_fields()
    log.info("event %s for %s: %s (%s)", result.event_id, result.subject, result.decision, result.reason,
             extra=fields)
