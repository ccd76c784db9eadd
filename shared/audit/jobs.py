"""Running a queued audit request (the `audit_requests` queue trigger) and where its status lives."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

from azure.core.exceptions import AzureError

from shared.app.runtime import Runtime
from shared.audit.collect import AuditSettings
from shared.storage.audit_jobs import (
    AUDIT_QUEUE,
    JSON,
    TERMINAL,
    AuditJobStore,
    failed,
    finished,
    parse_message,
    queued,
    started,
)

__all__ = ["AUDIT_QUEUE", "audit_store", "parse_message", "run_job"]

log = logging.getLogger("poolsync.audit_jobs")


def audit_store(runtime: Runtime) -> AuditJobStore:
    return AuditJobStore(runtime.storage, AuditSettings.from_env(runtime.settings).container)


def run_job(
    runtime: Runtime,
    store: AuditJobStore,
    job_id: str,
    audit: Callable[[Runtime], Mapping[str, JSON]],
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> dict[str, JSON]:
    """Run one queued audit and record its outcome. An audit that fails is recorded as failed and not
    raised (the operator asks again; re-running it five times would not help). A status that cannot be
    written raises, so the queue delivers the message again."""
    job = store.read(job_id)
    if job is None:
        log.warning("audit request %s has no status record; running it anyway", job_id)
        job = queued(job_id, clock())
    if job.get("status") in TERMINAL:
        log.info("audit request %s is already %s; duplicate delivery ignored", job_id, job["status"])
        return dict(job)
    job = started(job, clock())
    store.write(job)
    try:
        report = audit(runtime)
    except Exception as error:
        log.exception("audit request %s failed", job_id)
        code = getattr(getattr(error, "error", None), "code", None) or type(error).__name__
        job = failed(job, "AzureError" if isinstance(error, AzureError) else "AuditFailed",
                     f"{code}: {error}", clock())
    else:
        job = finished(job, report, clock())
    store.write(job)
    return job
