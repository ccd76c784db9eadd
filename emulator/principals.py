"""Who is calling: the principal ARM throttles (and would authorize) a request as."""

from __future__ import annotations

import base64
import binascii
import json


def principal_of(token: str) -> str:
    """The `oid` (else `appid`) claim of a JWT bearer token; any other token stands for itself.

    The signature is not checked: the emulator trusts every token, it only needs to tell
    callers apart the way ARM does.
    """
    parts = token.split(".")
    if len(parts) == 3:
        try:
            payload = base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4))
            claims = json.loads(payload)
        except (binascii.Error, ValueError):
            return token
        if isinstance(claims, dict):
            for claim in ("oid", "appid"):
                value = claims.get(claim)
                if isinstance(value, str) and value:
                    return value
    return token
