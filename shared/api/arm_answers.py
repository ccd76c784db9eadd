"""Azure, as the API's caller sees it: opaque ids for long-running operations (wait=false) and what an
Azure failure after the retry policy means (status, code, Retry-After)."""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError

from shared.api.http import (
    DEFAULT_RETRY_AFTER,
    JSON,
    ApiError,
    bad_request,
)
from shared.azure.retry import classify, unreachable
from shared.core.ids import _GUID

# --- ARM operations (wait=false) -----------------------------------------------------------------

_OPERATION_PATH_RE = re.compile(
    rf"^/subscriptions/(?P<sub>{_GUID})/providers/Microsoft\.(?:Network|Compute)/locations/[A-Za-z0-9]{{1,40}}"
    r"/(?:operations|operationResults)/[A-Za-z0-9-]{1,64}(?:\?api-version=[0-9A-Za-z.-]{1,32})?\Z"
)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,600}$")


def operation_token(url: str | None, endpoint: str) -> str | None:
    """An opaque id for an LRO URL of the configured ARM endpoint (None for anything else)."""
    if not url:
        return None
    parsed, base = urlsplit(url), urlsplit(endpoint)
    if (parsed.scheme.lower(), parsed.netloc.lower()) != (base.scheme.lower(), base.netloc.lower()):
        return None
    path = parsed.path[len(base.path.rstrip("/")):] if base.path.strip("/") else parsed.path
    path_and_query = path + (f"?{parsed.query}" if parsed.query else "")
    if not _OPERATION_PATH_RE.match(path_and_query):
        return None
    return base64.urlsafe_b64encode(path_and_query.encode()).decode().rstrip("=")


def operation_path(token: str) -> tuple[str, str]:
    """(path and query, subscription) of a token made by `operation_token`, or 400."""
    error = bad_request("InvalidOperationId", "not an operation id issued by this API", "operationId")
    if not _TOKEN_RE.match(token or ""):
        raise error
    try:
        path = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise error from None
    match = _OPERATION_PATH_RE.match(path)
    if not match:
        raise error
    return path, match["sub"]


def operation_link(token: str | None) -> dict[str, JSON] | None:
    if token is None:
        return None
    return {"id": token, "href": f"/api/operations/{token}", "status": "InProgress"}


# --- Azure errors --------------------------------------------------------------------------------


def azure_error(error: AzureError, target: str | None = None) -> ApiError:
    """What an Azure failure (after the retry policy gave up) means for the API's caller."""
    if (down := unreachable(error)) is not None:
        return ApiError(503, "AzureUnreachable", down.message(), target,
                        headers={"Retry-After": str(DEFAULT_RETRY_AFTER)})
    decision = classify(error)
    status = getattr(error, "status_code", None)
    code = getattr(getattr(error, "error", None), "code", None) or type(error).__name__
    message = (getattr(getattr(error, "error", None), "message", None) or str(error)).splitlines()[0][:500]
    if status == 404:
        return ApiError(404, "NotFound", f"Azure: {message}", target)
    if decision.retry:
        retry_after = int(decision.retry_after) if decision.retry_after else DEFAULT_RETRY_AFTER
        label = "AzureThrottled" if status in (429, 409) else "AzureUnavailable"
        return ApiError(
            503,
            label,
            f"Azure is busy or throttling ({code}); the retry deadline passed. Try again later.",
            target,
            headers={"Retry-After": str(max(retry_after, 1))},
        )
    if status in (400, 409):
        return ApiError(409, "AzureRejected", f"Azure refused the change ({code}): {message}", target)
    return ApiError(502, "AzureError", f"Azure call failed ({code}): {message}", target)


def pool_not_found(error: AzureError, pool_id: str) -> ApiError:
    mapped = azure_error(error, "pool")
    if mapped.status == 404:
        return ApiError(404, "PoolNotFound", f"pool {pool_id} does not exist in Azure", "pool")
    return mapped
