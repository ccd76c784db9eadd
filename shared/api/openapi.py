"""The OpenAPI document, generated: body schemas from the pydantic models (shared/api/models.py), the
operations from ENDPOINTS below. `python -m shared.api.openapi` rewrites shared/api/openapi.json (the
copy for readers and clients); tests check that the file, the generated document and what
GET /api/openapi.json serves are one and the same.
"""

from __future__ import annotations

import json
import sys
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from pydantic.json_schema import models_json_schema

from shared import settings as app_settings
from shared.api import models
from shared.core.ids import _GUID, _NAME, _SEGMENT

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
REF = "#/components/schemas/{model}"
ERROR = "Error"

DESCRIPTION = (
    "Runbook API of poolsync: inspect managed load balancer backend pools, add, remove, drain and enable "
    "addresses, reconcile on demand and queue the audit. Only pools named by the rules or listed in "
    'POOLSYNC_MANUAL_POOLS can be touched. Errors are `{"error": {"code", "message", "target"}}`. '
    "Every call but /health needs a function key, or with POOLSYNC_API_AUTH=entra (as deployed) a Microsoft "
    "Entra ID token with the app role PoolSync.Reader (reads and plans) or PoolSync.Operator (changes); "
    "when POOLSYNC_REQUIRED_ROLE is set, also a signed-in caller with that app role."
)
# Answers every keyed operation may give.
KEYED_ERRORS = {
    401: "POOLSYNC_API_AUTH=entra or POOLSYNC_REQUIRED_ROLE is set and no signed-in caller "
    "(x-ms-client-principal) was presented",
    403: "The caller lacks the operation's app role, or the pool / subscription is not configured for "
    "poolsync",
    500: "Unexpected error (details are in the function's logs only)",
}
AZURE_ERRORS = {
    502: "Azure answered with an error poolsync cannot act on",
    503: "Azure throttled, was unavailable or unreachable past the retry deadline, or the configuration does "
    "not load",
}
WRITE_ERRORS = {
    400: "Malformed JSON, a bad field or parameter (named in error.target)",
    404: "Unknown pool, address or virtual network",
    409: "Conflicts with a rule, the pool (Basic SKU, NIC-based, other virtual network) or an existing "
    "address",
    413: "The request body exceeds 256 KiB",
    422: "The blast-radius guard refused the change; the refused plan is in `plan`",
}
STORAGE_UNAVAILABLE = (
    "The audit request could not be queued or read (storage unavailable), or the configuration does not load"
)
RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again",
        "schema": {"type": "integer", "minimum": 1},
    }
}
OPERATION_LOCATION = {
    "Location": {
        "description": "The operation to poll: /api/operations/{operationId}",
        "schema": {"type": "string"},
    }
}


def _path(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": schema}


def _query(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


POOL_PARAMETERS = [
    _path(
        "subscriptionId", "Subscription id of the load balancer", {"type": "string", "pattern": f"^{_GUID}$"}
    ),
    _path(
        "resourceGroup", "Resource group of the load balancer", {"type": "string", "pattern": f"^{_SEGMENT}$"}
    ),
    _path("loadBalancer", "Load balancer name", {"type": "string", "pattern": f"^{_NAME}$"}),
    _path("pool", "Backend address pool name", {"type": "string", "pattern": f"^{_NAME}$"}),
]
ADDRESS_PARAMETERS = [
    *POOL_PARAMETERS,
    _path(
        "address",
        "The address's name, or its IP address",
        {"type": "string", "minLength": 1, "maxLength": 80},
    ),
]
WAIT = _query(
    "wait",
    "true (default): answer after Azure's long-running operation completes. false: answer "
    "202 with an operation to poll.",
    {"type": "boolean", "default": True},
)
WRITE_QUERY = [
    WAIT,
    _query(
        "force",
        "Override the blast-radius guard (needs reason; logged).",
        {"type": "boolean", "default": False},
    ),
    _query(
        "reason",
        "Why the guard is overridden (required with force=true).",
        {"type": "string", "maxLength": 500},
    ),
]


@dataclass(frozen=True)
class Endpoint:
    """One operation: route, what it answers (status -> description, body schema name) and its inputs."""

    method: str
    path: str
    operation_id: str
    summary: str
    answers: Mapping[int, tuple[str, str]]
    errors: Mapping[int, str] = field(default_factory=dict)
    path_parameters: list[dict[str, Any]] = field(default_factory=list)
    query: list[dict[str, Any]] = field(default_factory=list)
    body: str | None = None
    body_schema: dict[str, Any] | None = None  # an inline body schema (no model)
    headers: Mapping[int, dict[str, Any]] = field(default_factory=dict)
    description: str | None = None
    anonymous: bool = False
    html: bool = False  # 200 may also be a text/html page


def _write(
    path: str, operation_id: str, summary: str, done: str, method: str = "post", body: str | None = None
) -> Endpoint:
    parameters = ADDRESS_PARAMETERS if "{address}" in path else POOL_PARAMETERS
    return Endpoint(
        method,
        path,
        operation_id,
        summary,
        {200: (done, "WriteResult"), 202: ("Accepted (wait=false): poll the operation", "WriteResult")},
        {**WRITE_ERRORS, **AZURE_ERRORS},
        parameters,
        WRITE_QUERY,
        body,
        headers={202: OPERATION_LOCATION},
    )


POOL = "/pools/{subscriptionId}/{resourceGroup}/{loadBalancer}/{pool}"
ENDPOINTS = (
    Endpoint(
        "get",
        "/health",
        "health",
        "Liveness: version, configuration loaded, Azure reachable (anonymous; "
        "no secrets; checked at most once per POOLSYNC_HEALTH_CACHE_SECONDS per process)",
        {200: ("Healthy", "Health"), 503: ("Unhealthy", "Health")},
        anonymous=True,
    ),
    Endpoint(
        "get",
        "/openapi.json",
        "openapi",
        "This document",
        {200: ("The OpenAPI document", "OpenApiDocument")},
        {503: AZURE_ERRORS[503]},
    ),
    Endpoint(
        "get",
        "/pools",
        "listPools",
        "Managed pools with member counts and the last reconcile",
        {200: ("The pools", "PoolList")},
        AZURE_ERRORS,
    ),
    Endpoint(
        "get",
        POOL,
        "getPool",
        "Members of a pool: name, IP, admin state, managed or not, owner VM/NIC",
        {200: ("The pool", "PoolDetail")},
        {400: "A malformed path segment (named in target)", 404: "The pool does not exist", **AZURE_ERRORS},
        POOL_PARAMETERS,
    ),
    _write(
        f"{POOL}/addresses",
        "addAddresses",
        "Add one address or a list of them (manual entries)",
        "Added (or already present exactly as asked)",
        body="AddRequest",
    ),
    _write(
        f"{POOL}/addresses/{{address}}",
        "removeAddress",
        "Remove an address (manual or managed) by name or IP",
        "Removed",
        method="delete",
    ),
    _write(
        f"{POOL}/addresses/{{address}}/drain",
        "drainAddress",
        "Set adminState Down (no new connections)",
        "Drained (or already drained)",
    ),
    _write(
        f"{POOL}/addresses/{{address}}/enable",
        "enableAddress",
        "Set adminState None (health probes decide again)",
        "Enabled (or already enabled)",
    ),
    Endpoint(
        "post",
        "/reconcile",
        "reconcile",
        "Reconcile one, several or all rule pools now; dryRun returns the plans only",
        {
            200: ("Done (or planned, with dryRun)", "ReconcileResult"),
            202: ("Writes accepted (wait=false); each pool carries its operation", "ReconcileResult"),
        },
        {
            400: "Malformed JSON or a bad field (named in target)",
            404: "A pool named by the rules does not exist in Azure",
            409: "A manual pool was named: those are not reconciled",
            413: WRITE_ERRORS[413],
            422: "The guard refused at least one pool (GuardRefused), or Azure refused a pool's write "
            "(PoolWriteRejected; its removals were written alone); every pool's outcome is in `pools`",
            **AZURE_ERRORS,
        },
        query=[WAIT],
        body="ReconcileRequest",
    ),
    Endpoint(
        "post",
        "/audit",
        "audit",
        "Queue the audit (the one the timer runs) and answer at once; follow it at the Location",
        {202: ("Queued", "AuditAccepted")},
        {400: "The body is not empty or {}", 413: WRITE_ERRORS[413], 503: STORAGE_UNAVAILABLE},
        body_schema={"type": "object", "additionalProperties": False, "maxProperties": 0},
        headers={
            202: {
                "Location": {
                    "description": "/api/audits/{id}: where to follow the audit",
                    "schema": {"type": "string"},
                }
            }
        },
        description="The audit runs in the audit_requests queue trigger (queue poolsync-audit-requests), so "
        "it may take longer than an HTTP request stays open. It remediates only when "
        "POOLSYNC_AUDIT_REMEDIATE is on. The body must be empty or {}.",
    ),
    Endpoint(
        "get",
        "/audits/{auditId}",
        "auditStatus",
        "Status of a queued audit: queued, running, succeeded (with summary and report paths) or failed",
        {200: ("The audit request's status", "AuditStatus")},
        {
            400: "Not an audit id issued by this API (32 hex digits)",
            404: "No audit request with this id",
            503: STORAGE_UNAVAILABLE,
        },
        [_path("auditId", "The id from POST /api/audit", {"type": "string"})],
    ),
    Endpoint(
        "get",
        "/audits/{auditId}/report",
        "auditReport",
        "A stored audit report: JSON (the report schema) "
        "or the HTML page (format=html, or Accept: text/html)",
        {200: ("The report", "AuditReport")},
        {
            400: "Neither an audit id nor a run id, or an unknown format",
            404: "No audit request with this id, or no stored report for it",
            409: "The audit request has not succeeded (queued, running or failed)",
            503: "The report could not be read (storage unavailable), or the configuration does not load",
        },
        [
            _path(
                "auditId",
                "The id from POST /api/audit, or a report's run id (e.g. 20261206T000500Z-1a2b3c4d)",
                {"type": "string"},
            )
        ],
        [
            _query(
                "format",
                "json (default) or html; without it, Accept: text/html picks html",
                {"type": "string", "enum": ["json", "html"]},
            )
        ],
        html=True,
    ),
    Endpoint(
        "get",
        "/operations/{operationId}",
        "operationStatus",
        "Status of an Azure operation started with wait=false",
        {200: ("The operation's status", "OperationStatus")},
        {
            400: "Not an operation id issued by this API",
            404: "Azure does not know the operation",
            **AZURE_ERRORS,
        },
        [
            _path(
                "operationId",
                "The id from a 202 answer",
                {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,600}$"},
            )
        ],
    ),
)

MODELS: tuple[type[models.BaseModel], ...] = (
    models.Error,
    models.Health,
    models.PoolList,
    models.PoolDetail,
    models.WriteResult,
    models.ReconcileRequest,
    models.ReconcileResult,
    models.AuditReport,
    models.OperationStatus,
    models.OpenApiDocument,
    models.AuditAccepted,
    models.AuditStatus,
)


def _json_body(schema_name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": REF.format(model=schema_name)}}}


def _operation(endpoint: Endpoint) -> dict[str, Any]:
    errors = {} if endpoint.anonymous else {**KEYED_ERRORS, **endpoint.errors}
    responses: dict[str, Any] = {}
    for status in sorted({*endpoint.answers, *errors}):
        description, schema = endpoint.answers.get(status) or (errors[status], ERROR)
        answer: dict[str, Any] = {"description": description, "content": _json_body(schema)}
        if status == 200 and endpoint.html:
            answer["content"]["text/html"] = {"schema": {"type": "string"}}
        headers = {
            **endpoint.headers.get(status, {}),
            **(RETRY_AFTER if status == 503 and schema == ERROR else {}),
        }
        if headers:
            answer["headers"] = headers
        responses[str(status)] = answer
    operation: dict[str, Any] = {"operationId": endpoint.operation_id, "summary": endpoint.summary}
    if endpoint.description:
        operation["description"] = endpoint.description
    if endpoint.anonymous:
        operation["security"] = []
    parameters = [] if endpoint.path.startswith(POOL) else endpoint.path_parameters
    if parameters or endpoint.query:
        operation["parameters"] = [*parameters, *endpoint.query]
    if endpoint.body or endpoint.body_schema:
        content = (
            _json_body(endpoint.body)
            if endpoint.body
            else {"application/json": {"schema": endpoint.body_schema}}
        )
        operation["requestBody"] = {"required": endpoint.body is not None, "content": content}
    operation["responses"] = responses
    return operation


def _strip_titles(node: Any, in_properties: bool = False) -> Any:
    """pydantic titles every schema after its Python name; the document names things once, by key."""
    if isinstance(node, dict):
        return {
            key: _strip_titles(value, key == "properties" and not in_properties)
            for key, value in node.items()
            if in_properties or key != "title"
        }
    if isinstance(node, list):
        return [_strip_titles(item) for item in node]
    return node


def schemas() -> dict[str, Any]:
    _, top = models_json_schema([(model, "validation") for model in MODELS], ref_template=REF)
    found = dict(top.get("$defs", {}))
    add_request = TypeAdapter(models.AddRequest).json_schema(ref_template=REF)
    found.update(add_request.pop("$defs", {}))
    found["AddRequest"] = add_request
    return {name: _strip_titles(found[name]) for name in sorted(found)}


@cache
def _document(version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for endpoint in ENDPOINTS:
        item = paths.setdefault(endpoint.path, {})
        if endpoint.path.startswith(POOL):
            item["parameters"] = endpoint.path_parameters
        item[endpoint.method] = _operation(endpoint)
    return {
        "openapi": "3.1.0",
        "info": {"title": "poolsync manual operations API", "version": version, "description": DESCRIPTION},
        "servers": [{"url": "/api"}],
        "security": [{"functionKey": []}, {"functionKeyQuery": []}, {"entraId": []}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "securitySchemes": {
                "functionKey": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "x-functions-key",
                    "description": "Azure Functions function or host key",
                },
                "functionKeyQuery": {
                    "type": "apiKey",
                    "in": "query",
                    "name": "code",
                    "description": "The same key as a query parameter",
                },
                "entraId": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "Microsoft Entra ID access token for the API's app registration "
                    "(POOLSYNC_API_AUTH=entra, as deployed): app role PoolSync.Reader for reads and plans, "
                    "PoolSync.Operator for changes",
                },
            },
        },
    }


@cache
def app_version() -> str:
    explicit = app_settings.VERSION.raw(app_settings.app_settings())
    if explicit:
        return explicit
    try:
        with open(Path(__file__).parents[2] / "pyproject.toml", "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


def build_document(version: str) -> dict[str, Any]:
    """The document for this app version (a fresh copy: callers may change theirs)."""
    return json.loads(json.dumps(_document(version)))


def main() -> int:
    OPENAPI_PATH.write_text(json.dumps(build_document(app_version()), indent=2) + "\n", encoding="utf-8")
    print(f"wrote {OPENAPI_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
