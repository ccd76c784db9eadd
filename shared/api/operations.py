"""The HTTP API's entry: `handle(operation, request)` checks size, configuration and the caller, then runs
the operation (in shared/api/: pools, changes, runs, health, audit_report). Who is calling: function keys
are checked by the host; with POOLSYNC_API_AUTH=entra each operation's app role (its `auth.requires`
marker, shared/api/auth.py) from `x-ms-client-principal`, trusted only when App Service Authentication is
on (else the API fails closed with 503); optionally POOLSYNC_REQUIRED_ROLE on top.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from azure.core.exceptions import AzureError

from shared import settings as app_settings
from shared.api import auth
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
PRINCIPAL_HEADER = auth.PRINCIPAL_HEADER


# --- the caller ----------------------------------------------------------------------------------


Principal = auth.Principal


def client_principal(request: ApiRequest) -> Principal | None:
    """The caller App Service Authentication vouches for (x-ms-client-principal); see shared/api/auth.py.

    Only meaningful when App Service Authentication is enabled: it strips this header from incoming
    requests and sets its own, so callers cannot forge it.
    """
    return auth.client_principal(request.header(PRINCIPAL_HEADER))


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


def caller_name(context: ApiContext, request: ApiRequest) -> str:
    """Who a change is logged and recorded under: the signed-in principal, else the function key's holder."""
    return request.caller or auth.caller_name(request.headers, context.runtime.settings)


# --- dispatch ------------------------------------------------------------------------------------


def _authorize(request: ApiRequest, settings: Mapping[str, str], role: str) -> None:
    """The operation's app role (POOLSYNC_API_AUTH=entra, shared/api/auth.py), then POOLSYNC_REQUIRED_ROLE."""
    try:
        auth.authorize(request.headers, settings, role)
    except auth.AuthError as error:
        raise ApiError(error.status, error.code, error.message, error.target) from None
    authorize(request, enforced_role(settings))


def authorize_change(context: ApiContext, request: ApiRequest) -> None:
    """An operation marked for readers that turns out to change something (a reconcile that is no dry run).
    The CLI (an in-process caller) is not asked: Azure RBAC on its own credential decides what it may do."""
    if request.caller is None:
        _authorize(request, context.runtime.settings, auth.OPERATOR)


def handle(
    operation: Operation, request: ApiRequest, runtime_provider: Callable[[], Runtime] = get_runtime
) -> ApiResponse:
    """Size limit, configuration, authorization, then the operation; every failure as an error body."""
    try:
        if len(request.body) > MAX_BODY_BYTES:
            raise ApiError(413, "PayloadTooLarge", f"the body exceeds {MAX_BODY_BYTES} bytes", "body")
        role = auth.required_role_of(operation)
        try:
            runtime = runtime_provider()
        except (RulesError, ValueError) as error:
            _authorize(request, app_settings.app_settings(), role)
            log.error("configuration does not load: %s", error)
            raise ApiError(503, "ConfigurationError", f"poolsync's configuration does not load: {error}",
                           None) from None
        _authorize(request, runtime.settings, role)  # before anything else reads the settings
        return operation(ApiContext(runtime), request)
    except ApiError as error:
        return error.response()
    except AzureError as error:
        return azure_error(error).response()
    except Exception:
        log.exception("unexpected error in %s", getattr(operation, "__name__", "operation"))
        return ApiError(500, "InternalError", "unexpected error; see the function's logs", None).response()
