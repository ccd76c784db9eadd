"""POOLSYNC_API_AUTH=entra: Microsoft Entra ID app roles per operation, and who changed what.

App Service Authentication (deployed by infra/) validates the token and passes the caller in
x-ms-client-principal; these tests play that part and check what poolsync does with it."""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

from emulator import Emulator
from shared.api import audit_report, auth, changes, health, pools, runs
from tests.api.conftest import Configure
from tests.api.helpers import MANUAL_POOL, ApiClient, azure_addresses, pool_path, principal_header
from tests.fixtures.arm import ids

ENTRA = {"POOLSYNC_API_AUTH": "entra", "WEBSITE_AUTH_ENABLED": "True"}
ROOT = Path(__file__).resolve().parents[2]


def as_caller(roles: list[str], name: str = "ann@example.com") -> ApiClient:
    return ApiClient(default_headers={"x-ms-client-principal": principal_header(roles, name)})


def managed_identity_header(roles: list[str], app_id: str, object_id: str) -> str:
    """A managed identity's token carries no name: only its application (client) id and object id."""
    claims = [{"typ": "appid", "val": app_id}, {"typ": "oid", "val": object_id}]
    claims += [{"typ": "roles", "val": role} for role in roles]
    document = {"auth_typ": "aad", "claims": claims, "name_typ": "name", "role_typ": "roles"}
    return base64.b64encode(json.dumps(document).encode()).decode()


ADDRESS = pool_path(MANUAL_POOL) + "/addresses"
WRITES: dict[str, tuple[str, str, Any]] = {
    "add": ("POST", ADDRESS, {"ipAddress": "10.0.5.10"}),
    "remove": ("DELETE", ADDRESS + "/10.0.5.10", None),
    "drain": ("POST", ADDRESS + "/10.0.5.10/drain", None),
    "enable": ("POST", ADDRESS + "/10.0.5.10/enable", None),
    "reconcile": ("POST", "/api/reconcile", {"pool": "all"}),
    "audit": ("POST", "/api/audit", None),
}
READS: dict[str, tuple[str, str, Any]] = {
    "pools": ("GET", "/api/pools", None),
    "pool": ("GET", pool_path(MANUAL_POOL), None),
    "plan": ("POST", "/api/reconcile", {"pool": "all", "dryRun": True}),
    "openapi": ("GET", "/api/openapi.json", None),
}


def operation(name: str) -> Any:
    return next(getattr(module, name) for module in (health, pools, changes, runs, audit_report)
                if hasattr(module, name))


def test_every_operation_names_its_role_and_changes_need_the_operator() -> None:
    roles = {name: auth.required_role_of(operation(name)) for name in (
        "get_openapi", "list_pools", "get_pool", "audit_status", "audit_report", "operation_status",
        "reconcile", "add_addresses", "remove_address", "drain_address", "enable_address", "audit",
        "run_audit_now")}
    assert roles == {
        "get_openapi": auth.READER, "list_pools": auth.READER, "get_pool": auth.READER,
        "audit_status": auth.READER, "audit_report": auth.READER, "operation_status": auth.READER,
        "reconcile": auth.READER,  # a dry run is a plan; a real run also needs the operator (below)
        "add_addresses": auth.OPERATOR, "remove_address": auth.OPERATOR, "drain_address": auth.OPERATOR,
        "enable_address": auth.OPERATOR, "audit": auth.OPERATOR, "run_audit_now": auth.OPERATOR,
    }


@pytest.mark.parametrize("call", WRITES.values(), ids=list(WRITES))
def test_a_reader_may_not_change_anything(
    world: Emulator, configure: Configure, network: NetworkManagementClient, call: tuple[str, str, Any]
) -> None:
    configure(**ENTRA)
    method, path, body = call

    answer = as_caller([auth.READER]).call(method, path, body)

    assert answer.status == 403
    assert (answer.error["code"], answer.error["target"]) == ("Forbidden", "role")
    assert auth.OPERATOR in answer.error["message"]
    assert azure_addresses(network) == {}


@pytest.mark.parametrize("call", READS.values(), ids=list(READS))
def test_a_reader_may_read_and_plan(
    world: Emulator, configure: Configure, call: tuple[str, str, Any]
) -> None:
    configure(**ENTRA)
    method, path, body = call

    assert as_caller([auth.READER]).call(method, path, body).status == 200


@pytest.mark.parametrize("call", [*READS.values(), *WRITES.values()], ids=[*READS, *WRITES])
def test_without_a_signed_in_caller_every_operation_is_401(
    world: Emulator, configure: Configure, call: tuple[str, str, Any]
) -> None:
    configure(**ENTRA)
    method, path, body = call

    answer = ApiClient().call(method, path, body)

    assert answer.status == 401
    assert answer.error["target"] == "x-ms-client-principal"


def test_a_caller_with_an_unrelated_role_is_403_even_for_reads(world: Emulator, configure: Configure) -> None:
    configure(**ENTRA)

    assert as_caller(["Other.Role"]).call("GET", "/api/pools").status == 403


def test_entra_mode_without_app_service_authentication_fails_closed(
    world: Emulator, configure: Configure
) -> None:
    configure(POOLSYNC_API_AUTH="entra")  # a forgeable header and no function key: trust nobody

    answer = as_caller([auth.OPERATOR]).call("GET", "/api/pools")

    assert answer.status == 503
    assert answer.error["code"] == "AuthenticationNotConfigured"


def test_an_operators_change_names_them_in_the_log_line(
    world: Emulator, configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(**ENTRA)
    with caplog.at_level(logging.INFO, logger="poolsync.http"):
        answer = as_caller([auth.OPERATOR], "ann@example.com").call(*WRITES["add"])
    assert answer.status == 200
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("add addresses on ")]
    assert " by ann@example.com: " in line


def test_a_runbooks_managed_identity_is_named_by_its_ids_in_the_reconcile_record(
    world: Emulator, configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(**ENTRA)
    app_id, object_id = "6e1f0c1a-0000-4000-8000-000000000001", "9d2b7a51-0000-4000-8000-000000000002"
    runbook = ApiClient(default_headers={
        "x-ms-client-principal": managed_identity_header([auth.OPERATOR], app_id, object_id)})

    with caplog.at_level(logging.INFO, logger="poolsync.http"):
        assert runbook.call("POST", "/api/reconcile", {"pool": ids.pool()}).status == 200

    who = f"app {app_id} object {object_id}"
    assert any(r.getMessage().startswith(f"reconcile by {who}: ") for r in caplog.records)
    listed = {p["id"]: p for p in runbook.call("GET", "/api/pools").body["pools"]}
    record = listed[ids.pool()]["lastReconcile"]
    assert (record["source"], record["by"]) == ("http", who)


def test_poolsyncs_own_reconcile_records_no_caller(world: Emulator, configure: Configure) -> None:
    runtime = configure(**ENTRA)
    as_caller([auth.OPERATOR]).call("POST", "/api/reconcile", {"pool": ids.pool()})

    runtime.reconciler.reconcile([ids.pool()], source="timer")

    pools = as_caller([auth.READER]).call("GET", "/api/pools").body["pools"]
    record = {p["id"]: p for p in pools}[ids.pool()]
    assert (record["lastReconcile"]["source"], record["lastReconcile"]["by"]) == ("timer", None)


def test_with_function_keys_a_forged_principal_is_not_recorded_as_the_caller(
    world: Emulator, configure: Configure
) -> None:
    configure()  # key mode, no App Service Authentication: the header is whatever the caller sent
    forger = as_caller([auth.OPERATOR], "someone-else@example.com")

    assert forger.call("POST", "/api/reconcile", {"pool": ids.pool()}).status == 200

    record = {p["id"]: p for p in forger.call("GET", "/api/pools").body["pools"]}[ids.pool()]["lastReconcile"]
    assert record["by"] == "function key"


ROUTE_LEVELS = """
import json
from tests.api.helpers import registered_routes
print(json.dumps({r.function_name: r.auth_level for r in registered_routes()}))
"""


@pytest.mark.parametrize(("mode", "expected"), [("entra", "anonymous"), ("key", "function")])
def test_routes_take_a_function_key_only_in_key_mode(mode: str, expected: str) -> None:
    """Auth levels are read when the host indexes the functions: a fresh interpreter per mode."""
    env = {**os.environ, "POOLSYNC_API_AUTH": mode}
    done = subprocess.run([sys.executable, "-c", ROUTE_LEVELS], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    levels = json.loads(done.stdout.strip().splitlines()[-1])
    assert levels.pop("http_health") == "anonymous"
    assert set(levels.values()) == {expected}
