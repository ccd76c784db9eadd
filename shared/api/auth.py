"""Who may call the runbook API: Microsoft Entra ID app roles, checked per operation.

With `POOLSYNC_API_AUTH=entra` (what infra/ deploys) App Service Authentication validates the caller's token
in front of the app and rejects unauthenticated requests (except `/api/health` and the Event Grid webhook);
the routes carry no function key. Here every operation then requires an app role: reading (pools, plan,
audit status) needs `PoolSync.Reader` or `PoolSync.Operator`, changing anything (add, remove, drain, enable,
reconcile, audit) needs `PoolSync.Operator`. The caller's identity comes from `x-ms-client-principal`, which
App Service Authentication sets and strips from incoming requests, so it is trusted only when that feature is
on (`WEBSITE_AUTH_ENABLED`); otherwise every request fails closed with 503.

With the default `key`, function keys guard the routes (the local stack, tests) and no role is required.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from shared import settings as app_settings
from shared.errors import PoolsyncError

PRINCIPAL_HEADER = "x-ms-client-principal"
READER = "PoolSync.Reader"
OPERATOR = "PoolSync.Operator"
# An operator may also read; a reader may only read.
ROLES_GRANTING = {READER: frozenset({READER, OPERATOR}), OPERATOR: frozenset({OPERATOR})}
ROLE_CLAIM_TYPES = frozenset({"roles", "role", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
# Who to name in logs and records, best first: a person's name, then their sign-in name, then (an app or a
# managed identity, whose tokens carry neither) the client application id and the object id.
NAME_CLAIM_TYPES = ("name", "preferred_username", "upn",
                    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn")
APP_CLAIM_TYPES = ("appid", "azp")
OBJECT_ID_CLAIM_TYPES = ("oid", "http://schemas.microsoft.com/identity/claims/objectidentifier")

F = TypeVar("F", bound=Callable[..., Any])


class AuthError(PoolsyncError):
    """The request may not run: status and error code for the HTTP answer."""

    def __init__(self, status: int, code: str, message: str, target: str | None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.target = status, code, message, target


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


def requires(role: str) -> Callable[[F], F]:
    """Mark an operation with the app role it needs (READER or OPERATOR)."""

    def mark(operation: F) -> F:
        operation.required_role = role  # type: ignore[attr-defined]
        return operation

    return mark


def required_role_of(operation: Callable[..., Any]) -> str:
    """An operation nobody marked is treated as a change: it needs the operator role."""
    return getattr(operation, "required_role", OPERATOR)


def entra_mode(settings: Mapping[str, str]) -> bool:
    return app_settings.API_AUTH.or_default(settings).strip().lower() == "entra"


def client_principal(header: str | None) -> Principal | None:
    """The caller App Service Authentication vouches for (base64 JSON in x-ms-client-principal), or None
    for a missing or unreadable header."""
    if not header:
        return None
    try:
        padded = header.strip() + "=" * (-len(header.strip()) % 4)
        document = json.loads(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
        return None
    role_types = set(ROLE_CLAIM_TYPES)
    if isinstance(document.get("role_typ"), str):
        role_types.add(document["role_typ"])
    name_types = list(NAME_CLAIM_TYPES)
    if isinstance(document.get("name_typ"), str):
        name_types.insert(0, document["name_typ"])
    roles: set[str] = set()
    values: dict[str, str] = {}
    for claim in document["claims"]:
        if not isinstance(claim, dict) or not isinstance(claim.get("typ"), str) or not isinstance(
            claim.get("val"), str
        ):
            continue
        if claim["typ"] in role_types:
            roles.add(claim["val"])
        elif claim["val"].isprintable():  # logged with every change: no control characters
            values.setdefault(claim["typ"], claim["val"])
    return Principal(_name(values, name_types), frozenset(roles))


def _name(values: Mapping[str, str], name_types: list[str]) -> str:
    for typ in name_types:
        if values.get(typ):
            return values[typ][:256]
    app = next((values[typ] for typ in APP_CLAIM_TYPES if values.get(typ)), None)
    oid = next((values[typ] for typ in OBJECT_ID_CLAIM_TYPES if values.get(typ)), None)
    if app or oid:
        parts = ([f"app {app}"] if app else []) + ([f"object {oid}"] if oid else [])
        return " ".join(parts)[:256]
    return "unknown"


def authorize(headers: Mapping[str, str], settings: Mapping[str, str], role: str) -> Principal | None:
    """In Entra mode, the caller holding `role` (or one that grants it); else None (function keys decide)."""
    if not entra_mode(settings):
        return None
    if (app_settings.AUTH_ENABLED.text(settings) or "").lower() != "true":
        raise AuthError(503, "AuthenticationNotConfigured",
                        f"{app_settings.API_AUTH.name}=entra but App Service Authentication is not enabled "
                        f"({app_settings.AUTH_ENABLED.name}), so the caller's identity cannot be trusted",
                        None)
    principal = client_principal(headers.get(PRINCIPAL_HEADER))
    if principal is None:
        raise AuthError(401, "Unauthenticated",
                        f"this API requires a Microsoft Entra ID token with the app role {role!r}",
                        PRINCIPAL_HEADER)
    if not principal.roles & ROLES_GRANTING[role]:
        raise AuthError(403, "Forbidden", f"the caller ({principal.name}) lacks the app role {role!r}",
                        "role")
    return principal


def caller_name(headers: Mapping[str, str], settings: Mapping[str, str]) -> str:
    """The name logged and recorded with a change: the signed-in principal (only App Service Authentication
    can vouch for one; without it the header could be forged), else the shared function key."""
    trusted = (app_settings.AUTH_ENABLED.text(settings) or "").lower() == "true"
    principal = client_principal(headers.get(PRINCIPAL_HEADER)) if trusted else None
    return principal.name if principal else "function key"
