"""The HTTP API's entry: `handle(operation, request)` checks size, configuration and the caller, then runs
the operation (in shared/api/: pools, changes, runs, health, audit_report). Who is calling: function keys
are checked by the host; an Entra ID app role from `x-ms-client-principal`, trusted only when App Service
Authentication is on (else keyed routes fail closed with 503).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from azure.core.exceptions import AzureError

from shared import settings as app_settings
from shared.api.arm_answers import azure_error
from shared.api.context import ApiContext
from shared.api.http import (
    MAX_BODY_BYTES,
    ApiError,
    ApiRequest,
    ApiResponse,
)
from shared.app.runtime import Runtime, get_runtime
from shared.core.rules import RulesError

log = logging.getLogger("poolsync.http")

REQUIRED_ROLE_ENV = app_settings.REQUIRED_ROLE.name
PRINCIPAL_HEADER = "x-ms-client-principal"
ROLE_CLAIM_TYPES = frozenset({"roles", "role", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})


# --- the caller ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


def client_principal(request: ApiRequest) -> Principal | None:
    """The caller App Service Authentication vouches for (base64 JSON in x-ms-client-principal).

    Only meaningful when App Service Authentication is enabled: it strips this header from incoming
    requests and sets its own, so callers cannot forge it.
    """
    raw = request.header(PRINCIPAL_HEADER)
    if not raw:
        return None
    try:
        padded = raw.strip() + "=" * (-len(raw.strip()) % 4)
        document = json.loads(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
        return None
    role_types = set(ROLE_CLAIM_TYPES)
    if isinstance(document.get("role_typ"), str):
        role_types.add(document["role_typ"])
    name_types = {"name", "preferred_username"}
    if isinstance(document.get("name_typ"), str):
        name_types.add(document["name_typ"])
    roles: set[str] = set()
    name = "unknown"
    for claim in document["claims"]:
        if not isinstance(claim, dict) or not isinstance(claim.get("val"), str) or not isinstance(
            claim.get("typ"), str
        ):
            continue
        if claim.get("typ") in role_types:
            roles.add(claim["val"])
        elif claim.get("typ") in name_types and name == "unknown" and claim["val"].isprintable():
            name = claim["val"]  # logged with every change: no control characters (cf. force_reason)
    return Principal(name, frozenset(roles))


def authorize(request: ApiRequest, required_role: str | None) -> Principal | None:
    principal = client_principal(request)
    if not required_role:
        return principal
    if principal is None:
        raise ApiError(
            401,
            "Unauthenticated",
            f"this API requires a signed-in caller with the app role {required_role!r} "
            "(App Service Authentication must be enabled)",
            PRINCIPAL_HEADER,
        )
    if required_role not in principal.roles:
        raise ApiError(403, "Forbidden", f"the caller lacks the app role {required_role!r}", "role")
    return principal


# --- configuration: which pools the API may touch -----------------------------------------------


def required_role(settings: Mapping[str, str]) -> str | None:
    return app_settings.REQUIRED_ROLE.text(settings) or None


AUTH_ENABLED_ENV = app_settings.AUTH_ENABLED.name  # App Service sets it when App Service Authentication is on


def enforced_role(settings: Mapping[str, str]) -> str | None:
    """The required role, only where the principal header can be trusted: App Service Authentication strips
    a forged x-ms-client-principal; without it anyone with a key could claim any role, so fail closed."""
    role = required_role(settings)
    if role and app_settings.AUTH_ENABLED.text(settings).lower() != "true":
        raise ApiError(503, "AuthenticationNotConfigured",
                       f"{REQUIRED_ROLE_ENV} is set but App Service Authentication is not enabled "
                       f"({AUTH_ENABLED_ENV}), so the caller's identity cannot be trusted", None)
    return role



Operation = Callable[[ApiContext, ApiRequest], ApiResponse]


def caller_name(request: ApiRequest) -> str:
    """Who a change is logged under: the signed-in principal, else the function key's holder."""
    principal = client_principal(request)
    return principal.name if principal else "function key"


# --- dispatch ------------------------------------------------------------------------------------


def handle(
    operation: Operation, request: ApiRequest, runtime_provider: Callable[[], Runtime] = get_runtime
) -> ApiResponse:
    """Size limit, configuration, authorization, then the operation; every failure as an error body."""
    try:
        if len(request.body) > MAX_BODY_BYTES:
            raise ApiError(413, "PayloadTooLarge", f"the body exceeds {MAX_BODY_BYTES} bytes", "body")
        try:
            runtime = runtime_provider()
        except (RulesError, ValueError) as error:
            authorize(request, enforced_role(app_settings.app_settings()))
            log.error("configuration does not load: %s", error)
            raise ApiError(503, "ConfigurationError", f"poolsync's configuration does not load: {error}",
                           None) from None
        authorize(request, enforced_role(runtime.settings))  # before anything else reads the settings
        return operation(ApiContext(runtime), request)
    except ApiError as error:
        return error.response()
    except AzureError as error:
        return azure_error(error).response()
    except Exception:
        log.exception("unexpected error in %s", getattr(operation, "__name__", "operation"))
        return ApiError(500, "InternalError", "unexpected error; see the function's logs", None).response()
