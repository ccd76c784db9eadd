"""Requests, answers and errors of the HTTP API, and the strict parsing of JSON bodies and query values.

No azure.functions types: `handlers/http_api.py` turns a `func.HttpRequest` into an `ApiRequest` and an
`ApiResponse` back. Every error leaves as `{"error": {"code", "message", "target"}}` with its status."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.errors import PoolsyncError

MAX_BODY_BYTES = 256 * 1024
DEFAULT_RETRY_AFTER = 30  # seconds, when Azure throttled us without saying for how long

JSON = Any
Model = TypeVar("Model", bound=BaseModel)


# --- request / response / error ------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRequest:
    method: str
    route_params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # keys lower-cased
    body: bytes = b""
    # Who an in-process caller (the CLI) signed in as, from its own credential; HTTP requests never carry it:
    # their caller comes from x-ms-client-principal, trusted only behind App Service Authentication.
    caller: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class ApiResponse:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)

    def json_text(self) -> str:
        return json.dumps(self.body, indent=2, sort_keys=False)


class ApiError(PoolsyncError):
    """An answer other than success; `extra` goes next to `error` in the body (e.g. the refused plan)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        target: str | None = None,
        *,
        extra: Mapping[str, JSON] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def response(self) -> ApiResponse:
        body = {"error": {"code": self.code, "message": self.message, "target": self.target}, **self.extra}
        return ApiResponse(self.status, body, self.headers)


def bad_request(code: str, message: str, target: str | None) -> ApiError:
    return ApiError(400, code, message, target)


# --- parsing helpers -----------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, JSON]]) -> dict[str, JSON]:
    result: dict[str, JSON] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json_body(request: ApiRequest, *, required: bool) -> JSON:
    """The body as JSON; strict (no duplicate keys, no NaN). None when empty and not required."""
    if not request.body.strip():
        if required:
            raise bad_request("MissingBody", "a JSON request body is required", "body")
        return None
    try:
        text = request.body.decode("utf-8-sig")
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("InvalidJson", "the body is not UTF-8 text", "body") from None
    except json.JSONDecodeError as error:
        raise bad_request(
            "InvalidJson", f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}", "body"
        ) from None
    except ValueError as error:
        raise bad_request("InvalidJson", f"invalid JSON: {error}", "body") from None
    except RecursionError:
        raise bad_request("InvalidJson", "the JSON is nested too deeply", "body") from None






def query_bool(request: ApiRequest, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise bad_request("InvalidQueryParameter", f"{name} must be true or false, got {raw[:40]!r}", name)


@dataclass(frozen=True)
class WriteOptions:
    wait: bool = True
    force: bool = False
    reason: str | None = None

    @classmethod
    def from_query(cls, request: ApiRequest) -> WriteOptions:
        return cls(
            query_bool(request, "wait", True),
            query_bool(request, "force", False),
            force_reason(query_bool(request, "force", False), request.query.get("reason")),
        )


def force_reason(force: bool, reason: JSON) -> str | None:
    # The reason goes into logs verbatim: no control characters, so it cannot forge log lines.
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500 or not reason.isprintable()):
        raise bad_request(
            "InvalidField", "reason must be at most 500 characters of text without control characters",
            "reason",
        )
    reason = (reason or "").strip() or None
    if force and reason is None:
        raise bad_request("MissingField", "force needs a reason (it is logged with the override)", "reason")
    return reason


# Which pydantic error is reported first: unknown fields, then missing ones, then wrong values.
_ERROR_ORDER = {"extra_forbidden": 0, "missing": 1}


def parse_model(model: type[Model], document: JSON) -> Model:
    """`document` as `model` (strict: no coercion of "yes" into true), or 400 naming the field."""
    try:
        return model.model_validate(document, strict=True)
    except ValidationError as error:
        first = min(error.errors(), key=lambda e: _ERROR_ORDER.get(e["type"], 2))
        target = str(first["loc"][0]) if first["loc"] else "body"
        if first["type"] == "extra_forbidden":
            allowed = ", ".join(sorted(info.alias or name for name, info in model.model_fields.items()))
            raise bad_request("UnknownField", f"unknown field {target!r} (allowed: {allowed})",
                              target) from None
        if first["type"] == "missing":
            raise bad_request("MissingField", f"{target} is required", target) from None
        raise bad_request("InvalidField", f"{target}: {first['msg']}", target) from None
