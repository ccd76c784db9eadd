"""Queue trigger: runs the audits that `POST /api/audit` queued (queue `poolsync-audit-requests`).

An audit can take longer than an HTTP request may stay open, so the API only records and queues the
request; this function runs it and writes the outcome to the request's status blob
(shared/storage/audit_jobs.py). A message that is not an audit request is logged and dropped: retrying it
cannot make it valid.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.app.runtime import get_runtime
from shared.audit.collect import run_audit
from shared.audit.jobs import AUDIT_QUEUE, audit_store, parse_message, run_job

log = logging.getLogger("poolsync.audit")

bp = func.Blueprint()


@bp.function_name("audit_requests")
@bp.queue_trigger(arg_name="message", queue_name=AUDIT_QUEUE, connection="AzureWebJobsStorage")
def audit_requests(message: func.QueueMessage) -> None:
    try:
        job_id = parse_message(message.get_body().decode("utf-8", errors="replace"))
    except ValueError as error:
        log.error("dropping queue message %s: %s", message.id, error)
        return
    runtime = get_runtime()
    run_job(runtime, audit_store(runtime), job_id, run_audit)
