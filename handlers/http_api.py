"""HTTP trigger: the manual-operations API for runbooks (documented in shared/api/openapi.json).

Thin on purpose: each function turns the `func.HttpRequest` into an `ApiRequest` and hands it to
`shared.api.operations`, which does parsing, authorization and the work. Function keys (authLevel FUNCTION)
guard everything but /api/health; the Functions host checks them before any code here runs. With
POOLSYNC_API_AUTH=entra (as deployed) App Service Authentication checks a Microsoft Entra ID token instead and
the routes take no key: shared/api/auth.py requires an app role per operation.
"""

from __future__ import annotations

import logging
import re

import azure.functions as func
from opentelemetry import trace

from shared import settings, telemetry
from shared.api import auth, changes, health, operations, pools, runs
from shared.api.audit_report import audit_report
from shared.api.http import ApiRequest, ApiResponse

bp = func.Blueprint()

POOL_ROUTE = "pools/{subscriptionId}/{resourceGroup}/{loadBalancer}/{pool}"
ADDRESS_ROUTE = f"{POOL_ROUTE}/addresses/{{address}}"
# Read when the host indexes the functions, like the timers' schedules.
ENTRA = auth.entra_mode(settings.app_settings())
FUNCTION_KEY = func.AuthLevel.ANONYMOUS if ENTRA else func.AuthLevel.FUNCTION


def to_api_request(req: func.HttpRequest) -> ApiRequest:
    return ApiRequest(
        method=req.method,
        route_params=dict(req.route_params),
        query=dict(req.params),
        headers={key.lower(): value for key, value in req.headers.items()},
        body=req.get_body() or b"",
    )


# W3C trace context: version-traceid-parentid-flags. Only a well-formed value is trusted as an id.
TRACEPARENT_RE = re.compile(r"^[0-9a-f]{2}-(?P<trace>[0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}\Z")


def operation_id(req: func.HttpRequest) -> str | None:
    """The Application Insights operation id of this request: the caller's trace id when it sent a
    valid `traceparent` (the host then uses the same id), else the current span's, else None."""
    found = TRACEPARENT_RE.match((req.headers.get("traceparent") or "").strip().lower())
    if found and found["trace"] != "0" * 32:
        return found["trace"]
    span = trace.get_current_span().get_span_context()
    return format(span.trace_id, "032x") if span.is_valid else None


def log_failure(route: str, req: func.HttpRequest, response: ApiResponse) -> None:
    """One structured line per 4xx/5xx answer. Never the body, query (it may hold `code=`, the
    function key) or headers; the line is JSON, so newlines in any value are escaped, not written."""
    if response.status < 400:
        return
    body = response.body if isinstance(response.body, dict) else {}
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else body.get("detail")
    telemetry.emit(
        "http_failed",
        logging.ERROR if response.status >= 500 else logging.WARNING,
        route=route,
        method=req.method,
        status=response.status,
        code=code,
        operation_id=operation_id(req),
    )


def to_http_response(response: ApiResponse) -> func.HttpResponse:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **response.headers}
    if isinstance(response.body, str):  # a page (the audit report), with its own Content-Type
        mimetype = headers.pop("Content-Type").split(";")[0]
        return func.HttpResponse(response.body, status_code=response.status, headers=headers,
                                 mimetype=mimetype, charset="utf-8")
    return func.HttpResponse(
        response.json_text(), status_code=response.status, headers=headers, mimetype="application/json"
    )


def serve(operation: operations.Operation, req: func.HttpRequest, route: str) -> func.HttpResponse:
    response = operations.handle(operation, to_api_request(req))
    log_failure(route, req, response)
    return to_http_response(response)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def http_health(req: func.HttpRequest) -> func.HttpResponse:
    response = health.health()
    log_failure("health", req, response)
    return to_http_response(response)


@bp.route(route="openapi.json", methods=["GET"], auth_level=FUNCTION_KEY)
def http_openapi(req: func.HttpRequest) -> func.HttpResponse:
    return serve(health.get_openapi, req, "openapi.json")


@bp.route(route="pools", methods=["GET"], auth_level=FUNCTION_KEY)
def http_list_pools(req: func.HttpRequest) -> func.HttpResponse:
    return serve(pools.list_pools, req, "pools")


@bp.route(route=POOL_ROUTE, methods=["GET"], auth_level=FUNCTION_KEY)
def http_get_pool(req: func.HttpRequest) -> func.HttpResponse:
    return serve(pools.get_pool, req, POOL_ROUTE)


@bp.route(route=f"{POOL_ROUTE}/addresses", methods=["POST"], auth_level=FUNCTION_KEY)
def http_add_addresses(req: func.HttpRequest) -> func.HttpResponse:
    return serve(changes.add_addresses, req, f"{POOL_ROUTE}/addresses")


@bp.route(route=ADDRESS_ROUTE, methods=["DELETE"], auth_level=FUNCTION_KEY)
def http_remove_address(req: func.HttpRequest) -> func.HttpResponse:
    return serve(changes.remove_address, req, ADDRESS_ROUTE)


@bp.route(route=f"{ADDRESS_ROUTE}/drain", methods=["POST"], auth_level=FUNCTION_KEY)
def http_drain_address(req: func.HttpRequest) -> func.HttpResponse:
    return serve(changes.drain_address, req, f"{ADDRESS_ROUTE}/drain")


@bp.route(route=f"{ADDRESS_ROUTE}/enable", methods=["POST"], auth_level=FUNCTION_KEY)
def http_enable_address(req: func.HttpRequest) -> func.HttpResponse:
    return serve(changes.enable_address, req, f"{ADDRESS_ROUTE}/enable")


@bp.route(route="reconcile", methods=["POST"], auth_level=FUNCTION_KEY)
def http_reconcile(req: func.HttpRequest) -> func.HttpResponse:
    return serve(runs.reconcile, req, "reconcile")


@bp.route(route="audit", methods=["POST"], auth_level=FUNCTION_KEY)
def http_audit(req: func.HttpRequest) -> func.HttpResponse:
    return serve(runs.audit, req, "audit")


@bp.route(route="audits/{auditId}", methods=["GET"], auth_level=FUNCTION_KEY)
def http_audit_status(req: func.HttpRequest) -> func.HttpResponse:
    return serve(runs.audit_status, req, "audits/{auditId}")


@bp.route(route="audits/{auditId}/report", methods=["GET"], auth_level=FUNCTION_KEY)
def http_audit_report(req: func.HttpRequest) -> func.HttpResponse:
    return serve(audit_report, req, "audits/{auditId}/report")


@bp.route(route="operations/{operationId}", methods=["GET"], auth_level=FUNCTION_KEY)
def http_operation_status(req: func.HttpRequest) -> func.HttpResponse:
    return serve(runs.operation_status, req, "operations/{operationId}")
