"""What the Event Grid trigger does with one delivery: convert, hand to the flusher, emit the facts.

A malformed event is logged with its id and dropped (returning normally, so Event Grid does not retry
what cannot work); anything else that fails raises, so Event Grid redelivers it later.
"""

from __future__ import annotations

import logging
from typing import Any

from shared import telemetry
from shared.app.flusher import event_service
from shared.core.events import MalformedEvent, event_fields, event_to_dict

log = logging.getLogger("poolsync.events")


def receive_event(event: Any) -> None:
    """One delivered event (func.EventGridEvent, func.CloudEvent, an SDK event or its JSON)."""
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
    log.info("event %s for %s recorded", result.event_id, result.subject, extra=result.log_fields())
