"""Who the CLI acts as: the signed-in principal (recorded with every write, as the HTTP API records its
caller) and a credential that remembers why signing in failed, so the CLI can say what to do."""

from __future__ import annotations

import base64
import getpass
import json
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential

NAME_CLAIMS = ("upn", "unique_name", "preferred_username", "email", "name", "appid", "oid")
SIGN_IN_HELP = (
    "sign in first: `az login` (then `--auth cli` uses only that account), or run where a managed "
    "identity is available (`--auth managed-identity`), or set AZURE_CLIENT_ID / AZURE_TENANT_ID / "
    "AZURE_CLIENT_SECRET for a service principal"
)


class RecordingCredential:
    """Wraps a TokenCredential; `failure` holds the first sign-in error (the SDK wraps it in others)."""

    def __init__(self, inner: TokenCredential) -> None:
        self.inner = inner
        self.failure: Exception | None = None

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        try:
            return self.inner.get_token(*scopes, **kwargs)
        except Exception as error:
            from azure.core.exceptions import ClientAuthenticationError

            if isinstance(error, ClientAuthenticationError) and self.failure is None:
                self.failure = error
            raise


def token_claims(token: str) -> dict[str, Any]:
    """The claims of a JWT access token (not verified: Azure verifies it; this only names the caller)."""
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}


def principal_name(credential: TokenCredential, scope: str) -> str:
    """The signed-in user or application; a static (non-JWT) token names the local OS user."""
    claims = token_claims(credential.get_token(scope).token)
    for claim in NAME_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str) and value.isprintable() and value:
            return value
    return f"{getpass.getuser()} (local, static token)"
