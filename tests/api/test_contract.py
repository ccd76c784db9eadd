"""The OpenAPI document is valid, describes exactly the routes the app registers, and is what the API serves.

Each test in tests/http also checks every answer against the document (`ApiClient.check_contract`), so
together they are the contract test: documented statuses only, bodies matching their schemas.
"""

from __future__ import annotations

import ast
import json
import re
import tomllib
from pathlib import Path

import azure.functions as func
from openapi_spec_validator import validate

from function_app import BLUEPRINTS
from handlers import http_api
from shared.api.health import app_version, openapi_document
from shared.api.models import ERROR_CODES
from shared.api.openapi import ENDPOINTS, OPENAPI_PATH, build_document
from tests.api.helpers import ApiClient, registered_routes

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}
REPO = Path(__file__).resolve().parents[2]


def documented_operations() -> set[tuple[str, str]]:
    document = openapi_document()
    return {
        (path, method.upper())
        for path, item in document["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


def test_openapi_document_is_valid_openapi() -> None:
    validate(json.loads(OPENAPI_PATH.read_text()))


def test_every_route_is_documented_and_every_documented_path_is_routed() -> None:
    routed = {(route.openapi_path, method) for route in registered_routes() for method in route.methods}
    assert routed == documented_operations()


def test_documented_path_parameters_are_the_route_parameters() -> None:
    document = openapi_document()
    for route in registered_routes():
        item = document["paths"][route.openapi_path]
        for method in route.methods:
            operation = item[method.lower()]
            declared = {
                p["name"] for p in [*item.get("parameters", []), *operation.get("parameters", [])]
                if p["in"] == "path"
            }
            assert declared == set(re.findall(r"\{(\w+)\}", route.route)), route.route


def test_only_health_is_anonymous_everything_else_needs_a_function_key() -> None:
    levels = {route.route: route.auth_level for route in registered_routes()}
    assert levels.pop("health") == "anonymous"
    assert levels and set(levels.values()) == {func.AuthLevel.FUNCTION.value.lower()}
    document = openapi_document()
    assert document["paths"]["/health"]["get"]["security"] == []
    assert all("security" not in op for path, item in document["paths"].items() if path != "/health"
               for op in item.values() if isinstance(op, dict) and "responses" in op)


def test_the_function_app_registers_the_http_blueprint() -> None:
    assert http_api.bp in BLUEPRINTS


def test_document_version_is_the_app_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert openapi_document()["info"]["version"] == project["version"]


def test_the_api_serves_its_document(api: ApiClient) -> None:
    answer = api.call("GET", "/api/openapi.json")
    assert answer.status == 200
    assert answer.body == openapi_document()


def raised_error_codes() -> set[str]:
    """The literal codes of every ApiError / bad_request in shared/api (and azure_error's two labels)."""
    codes: set[str] = set()
    for path in (REPO / "shared" / "api").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in (
                "ApiError", "bad_request"
            ):
                code = node.args[1 if node.func.id == "ApiError" else 0] if node.args else None
                if isinstance(code, ast.Constant):
                    codes.add(code.value)
            if isinstance(node, ast.IfExp) and all(
                isinstance(branch, ast.Constant) and str(branch.value).startswith("Azure")
                for branch in (node.body, node.orelse)
            ):
                codes.update({node.body.value, node.orelse.value})  # type: ignore[attr-defined]
    return codes


def test_every_documented_error_code_is_raised_and_every_raised_code_is_documented() -> None:
    """Every answer in tests/api is also checked against this enum (ApiClient.check_contract)."""
    document = openapi_document()
    documented = document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]["enum"]
    assert set(documented) == set(ERROR_CODES)
    assert raised_error_codes() == set(ERROR_CODES)


def test_the_served_document_is_the_generated_one_and_the_file_is_current() -> None:
    """Generated from the models and endpoints (shared/api/openapi.py); the file is a copy for readers:
    `python -m shared.api.openapi` rewrites it."""
    generated = build_document(app_version())
    assert openapi_document() == generated
    assert json.loads(OPENAPI_PATH.read_text()) == generated, "run: python -m shared.api.openapi"
    assert len(ENDPOINTS) == len(documented_operations())
