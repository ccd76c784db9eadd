"""Azure-shaped error responses.

Every failure the emulator answers with is an `ArmError`: the HTTP layer turns it
into `{"error": {"code", "message", "details"?}}` exactly as ARM / the resource
providers do, plus any extra headers (Retry-After on throttling and conflicts).
"""

from __future__ import annotations

from typing import Any


class ArmError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


def bad_request(code: str, message: str) -> ArmError:
    return ArmError(400, code, message, details=[])


def resource_not_found(resource_type: str, name: str, resource_group: str) -> ArmError:
    """ARM's answer for a missing top-level resource."""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{resource_type}/{name}' under resource group '{resource_group}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def nested_not_found(resource_id: str) -> ArmError:
    """The network RP's answer for a missing child resource (pool, subnet)."""
    return ArmError(404, "NotFound", f"Resource {resource_id} not found.", details=[])


def parent_not_found(parent_name: str) -> ArmError:
    return ArmError(
        404,
        "ParentResourceNotFound",
        f"Can not perform requested operation on nested resource. Parent resource '{parent_name}' not found.",
    )


def invalid_reference(resource_id: str, referencing_id: str) -> ArmError:
    return bad_request(
        "InvalidResourceReference",
        f"Resource {resource_id} referenced by resource {referencing_id} was not found. "
        "Please make sure that the referenced resource exists, "
        "and that both resources are in the same region.",
    )
