"""HTTP trigger: the manual-operations API for runbooks (documented in shared/openapi.json).

Thin on purpose: each function turns the `func.HttpRequest` into an `ApiRequest` and hands it to
`shared.http_ops`, which does parsing, authorization and the work. Function keys (authLevel FUNCTION)
guard everything but /api/health; the Functions host checks them before any code here runs.
"""

from __future__ import annotations

import azure.functions as func

from shared import http_ops

bp = func.Blueprint()

POOL_ROUTE = "pools/{subscriptionId}/{resourceGroup}/{loadBalancer}/{pool}"
ADDRESS_ROUTE = f"{POOL_ROUTE}/addresses/{{address}}"
FUNCTION_KEY = func.AuthLevel.FUNCTION


def to_api_request(req: func.HttpRequest) -> http_ops.ApiRequest:
    return http_ops.ApiRequest(
        method=req.method,
        route_params=dict(req.route_params),
        query=dict(req.params),
        headers={key.lower(): value for key, value in req.headers.items()},
        body=req.get_body() or b"",
    )


def to_http_response(response: http_ops.ApiResponse) -> func.HttpResponse:
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", **response.headers}
    return func.HttpResponse(
        response.json_text(), status_code=response.status, headers=headers, mimetype="application/json"
    )


def serve(operation: http_ops.Operation, req: func.HttpRequest) -> func.HttpResponse:
    return to_http_response(http_ops.handle(operation, to_api_request(req)))


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def http_health(req: func.HttpRequest) -> func.HttpResponse:
    return to_http_response(http_ops.health())


@bp.route(route="openapi.json", methods=["GET"], auth_level=FUNCTION_KEY)
def http_openapi(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.get_openapi, req)


@bp.route(route="pools", methods=["GET"], auth_level=FUNCTION_KEY)
def http_list_pools(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.list_pools, req)


@bp.route(route=POOL_ROUTE, methods=["GET"], auth_level=FUNCTION_KEY)
def http_get_pool(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.get_pool, req)


@bp.route(route=f"{POOL_ROUTE}/addresses", methods=["POST"], auth_level=FUNCTION_KEY)
def http_add_addresses(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.add_addresses, req)


@bp.route(route=ADDRESS_ROUTE, methods=["DELETE"], auth_level=FUNCTION_KEY)
def http_remove_address(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.remove_address, req)


@bp.route(route=f"{ADDRESS_ROUTE}/drain", methods=["POST"], auth_level=FUNCTION_KEY)
def http_drain_address(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.drain_address, req)


@bp.route(route=f"{ADDRESS_ROUTE}/enable", methods=["POST"], auth_level=FUNCTION_KEY)
def http_enable_address(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.enable_address, req)


@bp.route(route="reconcile", methods=["POST"], auth_level=FUNCTION_KEY)
def http_reconcile(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.reconcile, req)


@bp.route(route="audit", methods=["POST"], auth_level=FUNCTION_KEY)
def http_audit(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.audit, req)


@bp.route(route="audits/{auditId}", methods=["GET"], auth_level=FUNCTION_KEY)
def http_audit_status(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.audit_status, req)


@bp.route(route="operations/{operationId}", methods=["GET"], auth_level=FUNCTION_KEY)
def http_operation_status(req: func.HttpRequest) -> func.HttpResponse:
    return serve(http_ops.operation_status, req)
