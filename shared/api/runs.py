"""POST /api/reconcile, the audit (queued over HTTP, in-process for the CLI) and ARM operation status."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from shared.api import auth
from shared.api.arm_answers import (
    azure_error,
    operation_link,
    operation_path,
    operation_token,
    pool_not_found,
)
from shared.api.context import MANUAL_POOLS_ENV, ApiContext
from shared.api.http import (
    DEFAULT_RETRY_AFTER,
    JSON,
    ApiError,
    ApiRequest,
    ApiResponse,
    bad_request,
    force_reason,
    parse_json_body,
    parse_model,
    query_bool,
)
from shared.api.models import ReconcileRequest
from shared.api.operations import authorize_change, caller_name
from shared.api.views import plan_json
from shared.audit.collect import run_audit
from shared.audit.jobs import audit_store
from shared.azure.retry import call_with_retry
from shared.core.ids import id_key
from shared.storage.account import StorageNotConfigured
from shared.storage.audit_jobs import is_job_id

log = logging.getLogger("poolsync.http")

def _reconcile_targets(context: ApiContext, value: JSON) -> list[str] | None:
    """None for "all"; else the canonical rule-pool ids asked for."""
    if value == "all":
        return None
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise bad_request("InvalidField", 'pool must be a pool id, a list of pool ids, or "all"', "pool")
    targets: dict[str, str] = {}
    for position, text in enumerate(values):
        target = "pool" if not isinstance(value, list) else f"pool[{position}]"
        pool_id, source = context.parse_pool_id(text, target)
        if source == "manual":
            raise ApiError(
                409,
                "ManualPoolNotReconciled",
                f"pool {pool_id} is a manual pool ({MANUAL_POOLS_ENV}); poolsync does not reconcile it",
                target,
            )
        targets.setdefault(id_key(pool_id), pool_id)
    return list(targets.values())


@auth.requires(auth.READER)
def reconcile(context: ApiContext, request: ApiRequest) -> ApiResponse:
    document = parse_json_body(request, required=True)
    if not isinstance(document, dict):
        raise bad_request("InvalidBody", "expected a JSON object", "body")
    asked = parse_model(ReconcileRequest, document)
    targets = _reconcile_targets(context, asked.pool)
    dry_run, force = asked.dryRun, asked.force
    reason = force_reason(force, asked.reason)
    wait = asked.wait if "wait" in document else query_bool(request, "wait", True)
    if not dry_run:  # a dry run is a plan (reader); applying it is a change
        authorize_change(context, request)
    who = caller_name(context, request)
    if force:
        log.warning("reconcile by %s with force: %s", who, reason)
    outcomes = context.runtime.reconciler.reconcile(
        targets, dry_run=dry_run, force=force, force_reason=reason, wait=wait, source="http", by=who
    )
    endpoint = context.runtime.clients.settings.endpoint
    pools = []
    pending = False
    for outcome in outcomes:
        item = outcome.as_dict()
        item["plan"] = plan_json(outcome.plan) if outcome.plan is not None else None
        item.pop("diff", None)
        if outcome.result is not None and outcome.result.operation_url and not wait:
            item["operation"] = operation_link(operation_token(outcome.result.operation_url, endpoint))
            pending = True
        pools.append(item)
    body: dict[str, JSON] = {"dryRun": dry_run, "pools": pools}
    log.info("reconcile by %s: %s", who, [(o.pool_id, o.status) for o in outcomes])
    refused = [o for o in outcomes if o.status == "refused"]
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        error = failed[0].error
        mapped = (
            pool_not_found(error, failed[0].pool_id)
            if error is not None
            else ApiError(502, "AzureError", failed[0].detail)
        )
        raise ApiError(mapped.status, mapped.code, f"{failed[0].pool_id}: {mapped.message}", "pool",
                       extra=body, headers=mapped.headers)
    rejected = [o for o in outcomes if o.status == "rejected"]
    if rejected:  # Azure refused the plan; its removals were written alone
        raise ApiError(422, "PoolWriteRejected", "; ".join(f"{o.pool_id}: {o.detail}" for o in rejected),
                       "pool", extra=body)
    if refused:
        reasons = "; ".join(o.detail for o in refused)
        raise ApiError(422, "GuardRefused", f"{reasons}; repeat with force=true and a reason to override",
                       "pool", extra=body)
    return ApiResponse(202 if pending else 200, body)


@auth.requires(auth.OPERATOR)
def audit(context: ApiContext, request: ApiRequest) -> ApiResponse:
    """Queue the audit the timer runs (remediating only when POOLSYNC_AUDIT_REMEDIATE is on): 202 and
    where to follow it. It runs in the `audit_requests` queue trigger, which outlives any HTTP timeout."""
    document = parse_json_body(request, required=False)
    if document is not None and not (isinstance(document, dict) and not document):
        raise bad_request("InvalidBody", "POST /api/audit takes no parameters (an empty body or {})", "body")
    try:
        job = audit_store(context.runtime).submit(datetime.now(UTC))
    except (AzureError, StorageNotConfigured) as error:
        log.error("could not queue an audit: %s", error)
        raise ApiError(503, "StorageUnavailable", "the audit request could not be queued; try again later",
                       None, headers={"Retry-After": str(DEFAULT_RETRY_AFTER)}) from None
    log.info("audit %s queued by %s", job["id"], caller_name(context, request))
    href = f"/api/audits/{job['id']}"
    return ApiResponse(202, {"id": job["id"], "status": job["status"], "href": href}, {"Location": href})


@auth.requires(auth.READER)
def audit_status(context: ApiContext, request: ApiRequest) -> ApiResponse:
    job_id = request.route_params.get("auditId") or ""
    if not is_job_id(job_id):
        raise bad_request("InvalidAuditId", "not an audit id issued by this API (32 hex digits)", "auditId")
    try:
        job = audit_store(context.runtime).read(job_id)
    except (AzureError, StorageNotConfigured) as error:
        log.error("could not read audit request %s: %s", job_id, error)
        raise ApiError(503, "StorageUnavailable", "the audit status could not be read; try again later",
                       None, headers={"Retry-After": str(DEFAULT_RETRY_AFTER)}) from None
    if job is None:
        raise ApiError(404, "AuditNotFound", f"no audit request {job_id}", "auditId")
    return ApiResponse(200, {**job, "href": f"/api/audits/{job_id}"})


@auth.requires(auth.OPERATOR)
def run_audit_now(context: ApiContext, request: ApiRequest) -> ApiResponse:
    """The audit, run in this process until done (the CLI; the queue trigger for HTTP callers)."""
    try:
        return ApiResponse(200, dict(run_audit(context.runtime)))
    except AzureError as error:
        mapped = azure_error(error)
        if mapped.status in (404, 409):  # a list call the audit needs failed; the request itself was fine
            raise ApiError(502, "AzureError", mapped.message, None) from None
        raise mapped from None


@auth.requires(auth.READER)
def operation_status(context: ApiContext, request: ApiRequest) -> ApiResponse:
    token = request.route_params.get("operationId") or ""
    path, subscription = operation_path(token)
    context.check_subscription(subscription, "operationId")
    client = context.runtime.clients.network(subscription)

    def fetch() -> tuple[int, JSON]:
        response = client.send_request(HttpRequest("GET", path))
        if response.status_code == 404:
            raise ResourceNotFoundError(response=response)
        if response.status_code >= 400:
            raise HttpResponseError(response=response)
        try:
            return response.status_code, response.json() if response.content else {}
        except ValueError:
            return response.status_code, {}

    try:
        status_code, payload = call_with_retry(
            fetch, settings=context.runtime.writer.retry, stats=context.runtime.retry_stats,
            operation="GET operation status",
        )
    except ResourceNotFoundError:
        raise ApiError(404, "OperationNotFound", "Azure does not know this operation (any more)",
                       "operationId") from None
    except HttpResponseError as error:
        if error.status_code != 400:  # Azure refusing the GET means the (forged) id is bad, not a conflict
            raise
        detail = (getattr(error.error, "message", None) or str(error)).splitlines()[0][:500]
        raise bad_request("InvalidOperationId", f"Azure refused this operation id: {detail}",
                          "operationId") from None
    # Azure-AsyncOperation answers {"status"}; a Location URL answers 202 while running, 200/204 when done.
    payload = payload if isinstance(payload, dict) else {}
    status = payload.get("status") or ("InProgress" if status_code == 202 else "Succeeded")
    body: dict[str, JSON] = {"id": token, "status": status, "done": status not in ("InProgress", "Running")}
    if isinstance(payload.get("error"), dict):
        body["error"] = {"code": payload["error"].get("code"), "message": payload["error"].get("message")}
    return ApiResponse(200, body)
