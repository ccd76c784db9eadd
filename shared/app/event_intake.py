"""What the event triggers do: one Event Grid delivery (convert, record, ask for a flush, emit the facts)
and one flush request (run the subscription's flusher).

A malformed event is logged with its id and dropped (returning normally, so Event Grid does not retry
what cannot work); anything else that fails raises, so Event Grid redelivers it later. A malformed flush
request is dropped the same way; a flush whose pools failed has deferred their intents (the sweep or the
next request retries them) and is logged, not raised; a storage error raises, so the queue redelivers.
"""

from __future__ import annotations

import logging
from typing import Any

from shared import telemetry
from shared.app.flusher import FlushFailed, event_service
from shared.core.events import MalformedEvent, event_fields, event_to_dict
from shared.storage.flush_requests import FLUSH_QUEUE, parse_request

__all__ = ["FLUSH_QUEUE", "receive_event", "receive_flush_request"]

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


def receive_flush_request(message_id: str, text: str) -> None:
    """One `flush_requests` queue message: flush the subscription it names."""
    try:
        scope = parse_request(text)
    except ValueError as error:
        log.error("dropping flush request %s: %s", message_id, error)
        return
    try:
        report = event_service().flush(scope)
    except FlushFailed as failed:  # its intents are deferred with a back-off: retrying now cannot help
        telemetry.emit("flush_failed", logging.ERROR, subscription=scope, reason=type(failed).__name__,
                       error=str(failed)[:500])
        return
    log.info("flush of %s: %s, %d round(s), %d intent(s) applied, %d deferred", scope, report.status,
             report.rounds, report.intents, report.deferred, extra=report.as_dict())
