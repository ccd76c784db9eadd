"""Who may call: function keys (checked by the host), the optional app role, the anonymous health check."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from devstack.host import LocalFunctionsHost
from emulator import Emulator
from handlers import http_api
from shared.http_ops import app_version
from shared.runtime import set_runtime
from tests.fixtures.arm import SUBSCRIPTION, ids
from tests.http.conftest import Configure
from tests.http.helpers import MANUAL_POOL, ApiClient, pool_path, principal_header

ROLE = "PoolSync.Operator"
KEY = "test-function-key"


def test_role_required_without_a_signed_in_caller_is_401(world: Emulator, configure: Configure) -> None:
    configure(POOLSYNC_REQUIRED_ROLE=ROLE, WEBSITE_AUTH_ENABLED="True")

    answer = ApiClient().call("GET", "/api/pools")
    assert answer.status == 401
    assert (answer.error["code"], answer.error["target"]) == ("Unauthenticated", "x-ms-client-principal")


def test_a_caller_without_the_role_is_403_and_nothing_changes(world: Emulator, configure: Configure) -> None:
    configure(POOLSYNC_REQUIRED_ROLE=ROLE, WEBSITE_AUTH_ENABLED="True")
    reader = ApiClient(default_headers={"x-ms-client-principal": principal_header(["PoolSync.Reader"])})

    answer = reader.call("POST", pool_path(MANUAL_POOL) + "/addresses", {"ipAddress": "10.0.5.10"})
    assert answer.status == 403
    assert (answer.error["code"], answer.error["target"]) == ("Forbidden", "role")
    assert ApiClient(default_headers={"x-ms-client-principal": principal_header([ROLE])}).call(
        "GET", pool_path(MANUAL_POOL)).body["members"] == []


def test_a_caller_with_the_role_may_act(world: Emulator, configure: Configure) -> None:
    configure(POOLSYNC_REQUIRED_ROLE=ROLE, WEBSITE_AUTH_ENABLED="True")
    operator = ApiClient(default_headers={"x-ms-client-principal": principal_header(["Other", ROLE])})

    answer = operator.call("POST", pool_path(MANUAL_POOL) + "/addresses", {"ipAddress": "10.0.5.10"})
    assert answer.status == 200


@pytest.mark.parametrize("header", ["not base64!", base64.b64encode(b"[]").decode(),
                                    base64.b64encode(b'{"claims": "roles"}').decode()])
def test_an_unreadable_principal_counts_as_no_caller(
    world: Emulator, configure: Configure, header: str
) -> None:
    configure(POOLSYNC_REQUIRED_ROLE=ROLE, WEBSITE_AUTH_ENABLED="True")

    answer = ApiClient(default_headers={"x-ms-client-principal": header}).call("GET", "/api/pools")
    assert answer.status == 401


HOSTILE_PRINCIPALS = {
    "claim type a list": {"claims": [{"typ": ["roles"], "val": ROLE}]},
    "claim type an object": {"claims": [{"typ": {"roles": 1}, "val": ROLE}]},
    "name_typ a list": {"claims": [{"typ": "name", "val": "ann"}], "name_typ": ["name"]},
}


def _encoded(document: Any) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


@pytest.mark.parametrize("header", [
    *(_encoded(document) for document in HOSTILE_PRINCIPALS.values()),
    base64.b64encode(b"[" * 5000 + b"]" * 5000).decode(),  # nested past the recursion limit
], ids=[*HOSTILE_PRINCIPALS, "deeply nested"])
@pytest.mark.parametrize("role", [ROLE, ""])
def test_a_hostile_principal_is_no_caller_never_a_500(
    world: Emulator, configure: Configure, header: str, role: str
) -> None:
    configure(POOLSYNC_REQUIRED_ROLE=role, WEBSITE_AUTH_ENABLED="True")

    answer = ApiClient(default_headers={"x-ms-client-principal": header}).call("GET", "/api/pools")
    assert answer.status in ((401, 403) if role else (200,)), answer.body


def test_without_a_required_role_the_function_key_is_enough(api: ApiClient) -> None:
    assert api.call("GET", "/api/pools").status == 200


def test_health_is_anonymous_and_tells_no_secrets(world: Emulator, configure: Configure) -> None:
    configure(POOLSYNC_REQUIRED_ROLE=ROLE, WEBSITE_AUTH_ENABLED="True")

    answer = ApiClient().call("GET", "/api/health")
    assert answer.status == 200
    assert answer.body == {"status": "ok", "version": app_version(), "configLoaded": True,
                           "azureReachable": True, "managedPools": 7}
    text = json.dumps(answer.body)
    assert SUBSCRIPTION not in text and world.url not in text


def test_health_reports_azure_unreachable(world: Emulator, configure: Configure) -> None:
    configure()
    world.faults.add("500", method="GET")

    answer = ApiClient().call("GET", "/api/health")
    assert answer.status == 503
    assert (answer.body["configLoaded"], answer.body["azureReachable"]) == (True, False)
    assert answer.body["detail"] == "azure:server_error"


@pytest.fixture
def broken_configuration(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No installed runtime, and app settings whose rules do not parse."""
    set_runtime(None)
    monkeypatch.setenv("POOLSYNC_RULES", '{"version": 1, "rules": [')
    monkeypatch.delenv("POOLSYNC_RULES_FILE", raising=False)
    monkeypatch.delenv("POOLSYNC_REQUIRED_ROLE", raising=False)
    yield
    set_runtime(None)


def test_health_reports_configuration_that_does_not_load(broken_configuration: None) -> None:
    answer = ApiClient().call("GET", "/api/health")

    assert answer.status == 503
    assert answer.body["configLoaded"] is False
    assert answer.body["detail"] == "configuration"
    assert "rules" not in json.dumps(answer.body)  # details go to the logs, not to anonymous callers


def test_keyed_endpoints_explain_configuration_errors(broken_configuration: None) -> None:
    answer = ApiClient().call("GET", "/api/pools")

    assert answer.status == 503
    assert answer.error["code"] == "ConfigurationError"
    assert "invalid JSON" in answer.error["message"]


def test_configuration_errors_stay_behind_the_role(
    broken_configuration: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOLSYNC_REQUIRED_ROLE", ROLE)
    monkeypatch.setenv("WEBSITE_AUTH_ENABLED", "True")

    assert ApiClient().call("GET", "/api/pools").status == 401


def test_a_bad_manual_pool_list_is_a_configuration_error(world: Emulator, configure: Configure) -> None:
    configure(POOLSYNC_MANUAL_POOLS="/subscriptions/x/resourceGroups/../pool")

    answer = ApiClient().call("GET", "/api/pools")
    assert answer.status == 503
    assert (answer.error["code"], answer.error["target"]) == ("ConfigurationError", "POOLSYNC_MANUAL_POOLS")


# --- through a Functions host: keys are checked before any code of ours runs ---------------------


@pytest.fixture
def host(api: ApiClient) -> Iterator[LocalFunctionsHost]:
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(http_api.bp)
    with LocalFunctionsHost(app, master_key=KEY) as running:
        yield running


def fetch(url: str, method: str = "GET", key: str | None = None, body: Any = None) -> tuple[int, bytes]:
    headers = {"x-functions-key": key} if key else {}
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_missing_or_wrong_function_key_is_401(host: LocalFunctionsHost) -> None:
    assert fetch(host.http_url("pools"))[0] == 401
    assert fetch(host.http_url("pools"), key="wrong")[0] == 401
    assert fetch(host.http_url("reconcile"), "POST", body={"pool": "all"})[0] == 401
    status, body = fetch(host.http_url("pools"), key=KEY)
    assert status == 200 and json.loads(body)["pools"]


def test_health_needs_no_key(host: LocalFunctionsHost) -> None:
    status, body = fetch(host.http_url("health"))
    assert status == 200
    assert json.loads(body)["status"] == "ok"


def test_the_host_routes_ip_addresses_in_the_path(host: LocalFunctionsHost) -> None:
    addresses = host.http_url(pool_path(MANUAL_POOL).removeprefix("/api/") + "/addresses")
    added = fetch(addresses, "POST", KEY, [{"ipAddress": "10.0.5.10", "name": "a"},
                                            {"ipAddress": "fd00:1::10", "name": "b"}])
    assert added[0] == 200, added[1]

    assert fetch(f"{addresses}/fd00:1::10/drain", "POST", KEY)[0] == 200
    assert fetch(f"{addresses}/10.0.5.10", "DELETE", KEY)[0] == 200
    status, body = fetch(host.http_url(pool_path(MANUAL_POOL).removeprefix("/api/")), key=KEY)
    assert status == 200
    assert [(m["name"], m["adminState"]) for m in json.loads(body)["members"]] == [("b", "Down")]


def test_the_callers_name_cannot_forge_log_lines(api: ApiClient, caplog: pytest.LogCaptureFixture) -> None:
    """The name is logged with every change, like the force reason: no control characters get through."""
    forged = principal_header([], name="eve\npoolsync.guard_overridden {\"by\": \"alice\"}")

    with caplog.at_level("INFO", logger="poolsync"):
        answer = api.call("POST", pool_path(MANUAL_POOL) + "/addresses", {"ipAddress": "10.0.5.10"},
                          headers={"x-ms-client-principal": forged})
    assert answer.status == 200
    logged = [record.getMessage() for record in caplog.records if record.name == "poolsync.http"]
    assert logged
    assert not [message for message in logged if "\n" in message]


def test_a_required_role_without_app_service_authentication_fails_closed(
    world: Emulator, configure: Configure
) -> None:
    """Without App Service Authentication the principal header is the caller's to forge: refuse it."""
    configure(POOLSYNC_REQUIRED_ROLE=ROLE)
    forged = ApiClient(default_headers={"x-ms-client-principal": principal_header([ROLE])})

    answer = forged.call("POST", pool_path(MANUAL_POOL) + "/addresses", {"ipAddress": "10.0.5.10"})

    assert answer.status == 503
    assert answer.error["code"] == "AuthenticationNotConfigured"
    assert world.world.pool_address_ips(ids.pool(MANUAL_POOL)) == []
