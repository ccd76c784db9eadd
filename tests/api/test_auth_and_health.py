"""Who may call: function keys (checked by the host), the optional app role, the anonymous health check."""

from __future__ import annotations

import base64
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.functions as func
import pytest

from devstack.host import LocalFunctionsHost
from emulator import Emulator
from handlers import http_api
from shared.api.health import HEALTH_CACHE, app_version
from shared.app.health import SingleFlightCache
from shared.app.runtime import set_runtime
from tests.api.conftest import Configure
from tests.api.helpers import MANUAL_POOL, ApiClient, pool_path, principal_header
from tests.fixtures.arm import SUBSCRIPTION, ids

ROLE = "PoolSync.Operator"
KEY = "test-function-key"
LB_READS = ("GET", "Microsoft.Network/loadBalancers")


@pytest.fixture(autouse=True)
def fresh_health_cache() -> Iterator[None]:
    """The health cache is per process; each test starts (and leaves) it empty."""
    HEALTH_CACHE.clear()
    yield
    HEALTH_CACHE.clear()


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
                           "azureReachable": True, "managedPools": 7, "checkAgeSeconds": 0.0,
                           "cacheSeconds": 60.0}
    text = json.dumps(answer.body)
    assert SUBSCRIPTION not in text and world.url not in text


def test_health_reports_azure_unreachable(world: Emulator, configure: Configure) -> None:
    configure()
    world.faults.add("500", method="GET")

    answer = ApiClient().call("GET", "/api/health")
    assert answer.status == 503
    assert (answer.body["configLoaded"], answer.body["azureReachable"]) == (True, False)
    assert answer.body["detail"] == "azure:server_error"


def probe_burst(probes: int) -> list[tuple[int, dict[str, Any]]]:
    """`probes` anonymous health calls at once."""
    start = threading.Barrier(probes)

    def probe(_: int) -> tuple[int, dict[str, Any]]:
        start.wait()
        answer = ApiClient().call("GET", "/api/health")
        return answer.status, answer.body

    with ThreadPoolExecutor(probes) as pool:
        return list(pool.map(probe, range(probes)))


def test_a_burst_of_anonymous_probes_costs_one_arm_read(world: Emulator, configure: Configure) -> None:
    configure()
    world.faults.add("slow", method="GET", delay=0.5)  # the check is still in flight as the others arrive
    reads_before = world.stats.requests(*LB_READS)

    answers = probe_burst(20)

    assert world.stats.requests(*LB_READS) - reads_before == 1
    assert {status for status, _ in answers} == {200}
    assert all(body["azureReachable"] and body["cacheSeconds"] == 60.0 for _, body in answers)


def test_an_unreachable_arm_is_cached_too_so_probes_do_not_add_to_throttling(
    world: Emulator, configure: Configure
) -> None:
    configure()
    world.faults.add("429", method="GET")

    answers = probe_burst(10)

    assert world.stats.faults_injected("429") == 1
    assert {(status, body["detail"]) for status, body in answers} == {(503, "azure:throttled")}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(HEALTH_CACHE, "clock", fake)
    return fake


def test_health_reports_the_age_of_the_cached_check_and_checks_again_after_the_ttl(
    world: Emulator, configure: Configure, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOLSYNC_HEALTH_CACHE_SECONDS", "30")
    configure()
    reads_before = world.stats.requests(*LB_READS)

    assert ApiClient().call("GET", "/api/health").body["checkAgeSeconds"] == 0.0
    clock.now += 29.5
    cached = ApiClient().call("GET", "/api/health").body
    assert (cached["checkAgeSeconds"], cached["cacheSeconds"]) == (29.5, 30.0)
    assert world.stats.requests(*LB_READS) - reads_before == 1

    world.faults.add("500", method="GET")
    clock.now += 0.5
    expired = ApiClient().call("GET", "/api/health")
    assert (expired.status, expired.body["detail"], expired.body["checkAgeSeconds"]) == (
        503, "azure:server_error", 0.0)
    assert world.stats.requests(*LB_READS) - reads_before == 2


@pytest.mark.parametrize("value", ["soon", "0", "-5", "nan", "7200"])
def test_a_bad_health_cache_setting_is_a_configuration_error_and_reads_nothing(
    world: Emulator, configure: Configure, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
    value: str,
) -> None:
    configure()
    monkeypatch.setenv("POOLSYNC_HEALTH_CACHE_SECONDS", value)
    reads_before = world.stats.requests()

    answer = ApiClient().call("GET", "/api/health")

    assert (answer.status, answer.body["detail"]) == (503, "configuration")
    assert world.stats.requests() == reads_before
    assert "POOLSYNC_HEALTH_CACHE_SECONDS" in caplog.text


def wait_for(condition: Callable[[], bool], polls: int = 6000) -> None:
    """Poll (every 5 ms, at most 30 s) until `condition` holds: a state to reach, not a timing claim."""
    pause = threading.Event()
    for _ in range(polls):
        if condition():
            return
        pause.wait(0.005)
    raise AssertionError("the condition never held")


def test_callers_arriving_during_a_check_share_it() -> None:
    cache: SingleFlightCache[int] = SingleFlightCache()
    release, calls = threading.Event(), []

    def slow_check() -> int:
        calls.append(1)
        release.wait(30)
        return len(calls)

    with ThreadPoolExecutor(5) as pool:
        results = [pool.submit(cache.get, slow_check, 60) for _ in range(5)]
        wait_for(lambda: cache.waiting == 4)  # one caller runs the check, four wait for it
        release.set()
        assert [future.result().value for future in results] == [1] * 5
    assert len(calls) == 1


def test_when_a_check_raises_a_waiting_caller_runs_it_again() -> None:
    cache: SingleFlightCache[str] = SingleFlightCache()
    release, calls = threading.Event(), []

    def check() -> str:
        calls.append(1)
        if len(calls) == 1:
            release.wait(30)
            raise RuntimeError("boom")
        return "second"

    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.get, check, 60)
        wait_for(lambda: bool(calls))
        second = pool.submit(cache.get, check, 60)
        wait_for(lambda: cache.waiting == 1)
        release.set()
        with pytest.raises(RuntimeError):
            first.result()
        assert second.result().value == "second"
    assert len(calls) == 2


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
