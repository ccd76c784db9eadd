"""GET /api/audits/{auditId}/report: a stored audit report, as JSON or as the HTML page people read.

`auditId` is the id POST /api/audit answered (the report is the one that request produced) or a run id
(`20261206T000500Z-1a2b3c4d`, the blob name the timer and the CLI report). The HTML is rendered from the
stored JSON now, so an older report reads with today's page.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared.api import auth
from shared.api.context import ApiContext
from shared.api.http import DEFAULT_RETRY_AFTER, ApiError, ApiRequest, ApiResponse, bad_request
from shared.audit.collect import AuditSettings
from shared.audit.jobs import audit_store
from shared.audit.report import render_html
from shared.storage.account import StorageNotConfigured
from shared.storage.audit_jobs import SUCCEEDED, is_job_id
from shared.storage.report_store import ReportLocation, ReportStore, report_location

log = logging.getLogger("poolsync.http")

RUN_ID_RE = re.compile(r"^(?P<started>\d{8}T\d{6}Z)-[0-9a-f]{8}\Z")
FORMATS = ("json", "html")
# The page is self-contained (inline CSS, no script): forbid everything else.
HTML_HEADERS = {"Content-Type": "text/html; charset=utf-8",
                "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}


def _storage_unavailable(what: str, error: Exception) -> ApiError:
    log.error("could not read %s: %s", what, error)
    return ApiError(503, "StorageUnavailable", f"the {what} could not be read; try again later", None,
                    headers={"Retry-After": str(DEFAULT_RETRY_AFTER)})


def report_location_of(context: ApiContext, audit_id: str) -> ReportLocation:
    container = AuditSettings.from_env(context.runtime.settings).container
    run = RUN_ID_RE.match(audit_id)
    if run is not None:
        started = datetime.strptime(run["started"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
        return report_location(audit_id, started, container)
    if not is_job_id(audit_id):
        raise bad_request("InvalidAuditId", "neither an audit id from POST /api/audit (32 hex digits) nor a "
                          "run id (like 20261206T000500Z-1a2b3c4d)", "auditId")
    try:
        job = audit_store(context.runtime).read(audit_id)
    except (AzureError, StorageNotConfigured) as error:
        raise _storage_unavailable("audit status", error) from None
    if job is None:
        raise ApiError(404, "AuditNotFound", f"no audit request {audit_id}", "auditId")
    report = job.get("report") or {}
    if job.get("status") != SUCCEEDED:
        raise ApiError(409, "AuditNotFinished", f"audit {audit_id} is {job.get('status')}; its report comes "
                       f"when it succeeded (GET /api/audits/{audit_id})", "auditId")
    if not report.get("json"):
        raise ApiError(404, "ReportNotFound", f"audit {audit_id} ran but its report was not stored",
                       "auditId")
    return ReportLocation(report["container"], report["json"], report["html"])


@auth.requires(auth.READER)
def audit_report(context: ApiContext, request: ApiRequest) -> ApiResponse:
    audit_id = request.route_params.get("auditId") or ""
    accepts_html = "text/html" in (request.header("accept") or "")
    wanted = request.query.get("format") or ("html" if accepts_html else "json")
    if wanted not in FORMATS:
        raise bad_request("InvalidQueryParameter", f"format must be json or html, got {wanted[:20]!r}",
                          "format")
    location = report_location_of(context, audit_id)
    try:
        report = ReportStore(context.runtime.storage).read_json(location)
    except ResourceNotFoundError:
        raise ApiError(404, "ReportNotFound", f"no stored report for {audit_id}", "auditId") from None
    except (AzureError, StorageNotConfigured) as error:
        raise _storage_unavailable("audit report", error) from None
    if wanted == "html":
        return ApiResponse(200, render_html(report), dict(HTML_HEADERS))
    return ApiResponse(200, report)
