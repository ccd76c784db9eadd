"""`python -m devstack --check`: one request of each kind against a running stack.

HTTP trigger (with and without the key), the Event Grid validation handshake, an event the emulator
itself sends after a real SDK write, and the admin invocation of each timer function.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

from devstack.stack import LocalStack
from shared.azure.clients import ArmSettings, compute_client
from shared.core.ids import ResourceId


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    detail: str


def send(url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None,
         timeout: float = 120) -> tuple[int, bytes]:
    """(status, body); status 0 when the connection failed or broke (a dead or dying process)."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return 0, b""


def run_checks(stack: LocalStack) -> list[CheckResult]:
    checks = [check_http, check_validation_handshake, check_emulator_events, check_timers]
    results = []
    for check in checks:
        try:
            results += check(stack)
        except Exception as error:  # a broken check is a failed check, not a crashed self-test
            results.append(CheckResult(check.__name__.removeprefix("check_"), False,
                                       f"{type(error).__name__}: {error}"))
    return results


def check_http(stack: LocalStack) -> list[CheckResult]:
    assert stack.host is not None
    route = stack.sample_get_route()
    if route is None:
        return [CheckResult("http", False, "the app has no parameterless GET route")]
    url = stack.host.http_url(route)
    anonymous, _ = send(url)
    status, body = send(url, headers={"x-functions-key": stack.host.master_key})
    passed = 200 <= status < 300 and anonymous == 401
    return [CheckResult("http", passed, f"GET {url} -> {status} with key ({len(body)} bytes), "
                                        f"{anonymous} without")]


def check_validation_handshake(stack: LocalStack) -> list[CheckResult]:
    assert stack.host is not None
    function = stack.event_function()
    if function is None:
        return [CheckResult("event grid handshake", False, "the app has no Event Grid function")]
    code = "devstack-self-check"
    payload = [{"id": "self-check", "topic": "", "subject": "", "dataVersion": "2",
                "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "eventTime": "2026-01-01T00:00:00Z", "data": {"validationCode": code}}]
    status, body = send(stack.host.event_grid_url(function.name), "POST", json.dumps(payload).encode(),
                        {"aeg-event-type": "SubscriptionValidation", "Content-Type": "application/json"})
    answered = json.loads(body or b"{}").get("validationResponse") if status == 200 else None
    return [CheckResult("event grid handshake", answered == code, f"-> {status} {body[:80]!r}")]


def arm_settings(stack: LocalStack) -> ArmSettings:
    return ArmSettings.from_env(stack.settings)


def touch_a_vm(stack: LocalStack) -> str:
    """Re-write one VM with a changed tag through the real SDK: the emulator then sends a write event."""
    settings = arm_settings(stack)
    from emulator.world import DEFAULT_SUBSCRIPTION

    compute = compute_client(settings, DEFAULT_SUBSCRIPTION)
    vms = list(compute.virtual_machines.list_all())
    if not vms:
        raise RuntimeError("the topology has no VMs to touch")
    vm = vms[0]
    assert vm.id is not None
    rid = ResourceId.parse(vm.id)
    vm.tags = {**(vm.tags or {}), "devstack-check": str(int(time.time()))}
    compute.virtual_machines.begin_create_or_update(
        rid.resource_group, rid.name, vm, polling=settings.lro_polling()).result()
    return vm.id


def check_emulator_events(stack: LocalStack, timeout: float = 90.0) -> list[CheckResult]:
    assert stack.host is not None
    function = stack.event_function()
    if function is None:
        return [CheckResult("emulator events", False, "the app has no Event Grid function")]
    before = stack.host.replies(function.name)
    vm_id = touch_a_vm(stack)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = stack.host.replies(function.name)
        if now[202] > before[202]:
            vm_name = vm_id.rsplit("/", 1)[-1]
            return [CheckResult("emulator events", True, f"write of {vm_name} delivered -> 202")]
        failures = {status: n - before[status] for status, n in now.items()
                    if status != 202 and n > before[status]}
        if failures:
            return [CheckResult("emulator events", False, f"delivery answered {failures}")]
        time.sleep(0.1)
    return [CheckResult("emulator events", False, f"no delivery within {timeout:.0f}s")]


def check_timers(stack: LocalStack) -> list[CheckResult]:
    assert stack.host is not None
    timers = stack.timer_functions()
    if not timers:
        return [CheckResult("timer", False, "the app has no timer function")]
    results = []
    for timer in timers:
        status, body = send(stack.host.admin_url(timer.name), "POST", b"{}",
                            {"x-functions-key": stack.host.master_key, "Content-Type": "application/json"})
        results.append(CheckResult(f"timer {timer.name}", status == 202, f"-> {status} {body[:200]!r}"))
    return results
