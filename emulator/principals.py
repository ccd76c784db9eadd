"""Who is calling: the principal behind a bearer token, as ARM throttles, authorizes and counts it.

ARM identifies a caller by the token's object id (`oid`) or application id (`appid`).
Tests often send opaque strings instead of JWTs; then the token text itself is the
principal, so two different fake tokens still count as two callers.
"""

from __future__ import annotations

import base64
import json
from typing import Any


def bearer_token(authorization: str | None) -> str:
    """The token of an `Authorization: Bearer ...` header ("" when absent or another scheme)."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def jwt_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT (signature not checked: the emulator trusts every caller), {} otherwise."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
        claims = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def principal_of(token: str) -> str:
    claims = jwt_claims(token)
    for claim in ("oid", "appid"):
        value = claims.get(claim)
        if isinstance(value, str) and value:
            return value
    return token


def client_of(token: str) -> tuple[str, str]:
    """(client id, object id) as ARM names them in AuthorizationFailed messages."""
    claims = jwt_claims(token)
    principal = principal_of(token)
    client = claims.get("appid") or claims.get("upn") or principal
    return str(client), principal
