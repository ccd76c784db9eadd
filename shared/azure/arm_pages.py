"""ARM reads as JSON through an SDK client's pipeline (auth, TLS, the SDK's own api-version and request
builders) without building SDK models: paged lists follow nextLink; ARM errors raise as the SDK raises."""

from __future__ import annotations

import logging
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest
from azure.mgmt.core.exceptions import ARMErrorFormat

log = logging.getLogger("poolsync.inventory")


def read_refused(error: HttpResponseError, what: str, resource_id: str) -> bool:
    """True (and logged) for a 403: the resource is neither there nor gone to poolsync - a principal scoped
    to some resource groups still gets the events of the whole subscription - so its entries stay as they
    are. Any other error is the caller's to raise."""
    if error.status_code != 403:
        return False
    log.warning("%s refused (403): its entries are left as they are", what, extra={"resource": resource_id})
    return True


def list_json(client: Any, first: HttpRequest) -> list[dict[str, Any]]:
    """Every item of a paged ARM list, following nextLink."""
    items: list[dict[str, Any]] = []
    request: HttpRequest | None = first
    while request is not None:
        response = client.send_request(request)
        if response.status_code >= 400:
            raise HttpResponseError(response=response, error_format=ARMErrorFormat)
        page = response.json()
        items += page.get("value") or []
        next_link = page.get("nextLink")
        request = HttpRequest("GET", next_link) if next_link else None
    return items


def get_json(client: Any, request: HttpRequest) -> dict[str, Any] | None:
    """One resource, or None when ARM answers 404."""
    response = client.send_request(request)
    if response.status_code == 404:
        return None
    if response.status_code >= 400:
        raise HttpResponseError(response=response, error_format=ARMErrorFormat)
    body: dict[str, Any] = response.json()
    return body
