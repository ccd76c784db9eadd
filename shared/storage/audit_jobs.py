"""Asynchronous audits: `POST /api/audit` queues a request, the `audit_requests` queue trigger runs it.

Each request has a status blob `<audit container>/requests/<id>.json` that moves
queued -> running -> succeeded | failed; `GET /api/audits/{id}` reads it. The status is written before
the message is queued, so a worker never finds a request nobody recorded. The transitions themselves
(`queued`, `started`, `finished`, `failed`) are pure; `AuditJobStore` does the storage I/O;
shared/audit/jobs.py runs a queued request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContentSettings
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.storage.account import StorageSettings

log = logging.getLogger("poolsync.audit_jobs")

AUDIT_QUEUE = "poolsync-audit-requests"
QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
TERMINAL = frozenset({SUCCEEDED, FAILED})
_JOB_ID = re.compile(r"^[0-9a-f]{32}\Z")
JSON = Any


def new_job_id() -> str:
    return uuid.uuid4().hex


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID.match(value or ""))


def _stamp(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# --- the status document (pure) ------------------------------------------------------------------


def queued(job_id: str, now: datetime) -> dict[str, JSON]:
    return {"id": job_id, "status": QUEUED, "requestedAt": _stamp(now), "startedAt": None,
            "finishedAt": None, "attempts": 0, "summary": None, "report": None, "error": None}


def started(job: Mapping[str, JSON], now: datetime) -> dict[str, JSON]:
    return {**job, "status": RUNNING, "startedAt": _stamp(now), "attempts": int(job.get("attempts") or 0) + 1}


def finished(job: Mapping[str, JSON], report: Mapping[str, JSON], now: datetime) -> dict[str, JSON]:
    """Succeeded, with the report's summary and where its JSON and HTML are stored."""
    return {**job, "status": SUCCEEDED, "finishedAt": _stamp(now), "summary": report.get("summary"),
            "report": {"runId": report.get("runId"), **dict(report.get("artifacts") or {})}, "error": None}


def failed(job: Mapping[str, JSON], code: str, message: str, now: datetime) -> dict[str, JSON]:
    return {**job, "status": FAILED, "finishedAt": _stamp(now),
            "error": {"code": code, "message": message.splitlines()[0][:500] if message else code}}


def parse_message(text: str) -> str:
    """The job id of a queue message `{"id": "<32 hex>"}`; ValueError for anything else."""
    try:
        document = json.loads(text)
    except ValueError:
        raise ValueError("audit request message is not JSON") from None
    job_id = document.get("id") if isinstance(document, dict) else None
    if not isinstance(job_id, str) or not is_job_id(job_id):
        raise ValueError("audit request message has no valid id")
    return job_id


# --- storage ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditJobStore:
    storage: StorageSettings
    container: str
    queue_name: str = AUDIT_QUEUE

    def _blob(self, job_id: str):  # type: ignore[no-untyped-def]
        return self.storage.blob_service().get_blob_client(self.container, f"requests/{job_id}.json")

    def read(self, job_id: str) -> dict[str, JSON] | None:
        try:
            return json.loads(self._blob(job_id).download_blob().readall())
        except ResourceNotFoundError:
            return None

    def write(self, job: Mapping[str, JSON]) -> None:
        container = self.storage.blob_service().get_container_client(self.container)
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        container.upload_blob(
            f"requests/{job['id']}.json", json.dumps(job, indent=2).encode(), overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )

    def queue(self) -> QueueClient:
        # Base64, because that is what the Functions queue trigger decodes by default (messageEncoding).
        return self.storage.queue_service().get_queue_client(
            self.queue_name, message_encode_policy=TextBase64EncodePolicy()
        )

    def submit(self, now: datetime) -> dict[str, JSON]:
        """Record a queued request, then queue its message; a request that cannot be queued is marked
        failed (never left looking queued) and the error raised."""
        job = queued(new_job_id(), now)
        self.write(job)
        queue = self.queue()
        try:
            with contextlib.suppress(ResourceExistsError):
                queue.create_queue()
            queue.send_message(json.dumps({"id": job["id"]}))
        except AzureError as error:
            with contextlib.suppress(AzureError):
                self.write(failed(job, "QueueUnavailable", str(error), now))
            raise
        return job
