"""Every HTTP route and the Event Grid endpoint of a running worker, fed malformed, oversized and hostile
input: never a 500, the worker never dies, and nothing changes in Azure.

The pools start in sync, so even a well-formed event about a real VM leaves Azure as it is; hostile
inputs never name a real address, so no request can be a legitimate change.
"""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devstack.host import HTTP_TRIGGER, FunctionIndex, HostedFunction
from emulator import Emulator
from function_app import BLUEPRINTS
from tests.reliability.helpers import (
    EVENT_FUNCTION,
    HAND_ADDED,
    LB_ID,
    RESOURCE_GROUP,
    SUBSCRIPTION,
    VNET_ID,
    Worker,
    reading_runtime,
    send,
    topology,
    worker_settings,
    write_rules,
)

REAL_VNET = ipaddress.ip_network("10.20.0.0/16")
FUZZ_SETTINGS = settings(deadline=None, database=None,
                         suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
OVERSIZED = 5 * 1024 * 1024


def http_functions() -> list[HostedFunction]:
    # A fresh app from the same blueprints: function_app.app refuses a second get_functions() call,
    # and other tests make the first one.
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for blueprint in BLUEPRINTS:
        app.register_functions(blueprint)
    index = FunctionIndex.of(app)
    return sorted((f for f in index.by_name.values() if f.trigger == HTTP_TRIGGER), key=lambda f: f.name)


# --- what a hostile caller sends -------------------------------------------------------------------

def _not_a_real_address(text: str) -> bool:
    """Route values and IPs that cannot select an existing pool entry (those requests would be legitimate)."""
    try:
        if ipaddress.ip_address(text.strip()) in REAL_VNET:
            return False
    except ValueError:
        pass
    names = {name for entries in HAND_ADDED.values() for name in entries}
    return text.lower() not in names and not text.lower().startswith("psync-")


hostile_text = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), min_size=100, max_size=400),
    st.sampled_from([
        "", ".", "..", "%2e%2e", "../../../etc/passwd", "..%2f..%2f", "\x00", "%00", "\r\nX-Injected: 1",
        "$(reboot)", "'; DROP TABLE intents;--", "<script>alert(1)</script>", "ünïcødé", "NaN", "-1", "1e309",
        "null", "true", "[]", "{}", "*", "all", "0.0.0.0", "255.255.255.255", "::1", "fe80::1%eth0",
        "10.20.1.999", "999.1.1.1", "a" * 1000, SUBSCRIPTION, RESOURCE_GROUP, "lb-rel", "pool-a", "pool-b",
        "00000000-0000-0000-0000-00000000000g", "appliance-z", "Down", "Up", "None",
    ]),
    st.from_regex(r"[A-Za-z0-9._()-]{1,90}", fullmatch=True),
).filter(_not_a_real_address)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | hostile_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(hostile_text, children, max_size=4),
    max_leaves=15,
)
address_like = st.fixed_dictionaries({}, optional={
    "name": hostile_text,
    "ipAddress": json_values.filter(lambda v: not isinstance(v, str) or _not_a_real_address(v)),
    "virtualNetwork": st.sampled_from([VNET_ID, {"id": VNET_ID}, "not-an-id", {"id": 5}]) | json_values,
    "subnet": json_values, "adminState": st.sampled_from(["Down", "Up", "None", "down", ""]) | json_values,
})
reconcile_like = st.fixed_dictionaries({}, optional={
    "pool": st.sampled_from([f"{LB_ID}/backendAddressPools/nope", LB_ID, "all ", ["all"], []]) | json_values,
    "dryRun": json_values, "force": json_values, "reason": json_values, "wait": json_values,
    "extra": json_values,
})
# Known-nasty bodies: each route gets every one of them, besides what hypothesis generates.
BODY_CORPUS = [
    b"{", b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000, b"\xff\xfe\x00", b'{"pool": "all", "pool": "x"}',
    b'{"ipAddress": NaN}', b'{"ipAddress": Infinity}', b"\xef\xbb\xbf{}", b'"\\ud800"', b"1" * 5000,
    b'{"pool": "all", "dryRun": true}' + b" " * 100_000,
]
hostile_bodies = st.one_of(
    st.none(),
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.one_of(address_like, st.lists(address_like, max_size=3), reconcile_like).map(
        lambda v: json.dumps(v).encode()),
    st.sampled_from(BODY_CORPUS),
)
hostile_headers = st.dictionaries(
    st.sampled_from(["Content-Type", "x-ms-client-principal", "x-ms-client-principal-name", "If-Match",
                     "x-ms-client-principal-id", "Accept", "X-Forwarded-For", "Authorization"]),
    st.one_of(st.sampled_from(["application/json", "text/plain", "e30=", "eyJ1c2VyUm9sZXMiOiBbMV19",
                               "bm90IGpzb24=", "*", ""]),
              st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60)),
    max_size=3,
)
hostile_query = st.dictionaries(
    st.sampled_from(["dryRun", "wait", "force", "reason", "pool", "api-version", "code2", "x"]),
    hostile_text, max_size=3,
)


def path_for(function: HostedFunction, values: dict[str, str]) -> str:
    assert function.route is not None
    path = function.route.template
    for parameter in function.route.parameters:
        value = urllib.parse.quote(values.get(parameter.name, "x"), safe="")
        for spelling in (f"{{{parameter.name}}}", f"{{{parameter.name}?}}", f"{{*{parameter.name}}}"):
            path = path.replace(spelling, value)
    return path


# --- the stack under attack ------------------------------------------------------------------------

class Target:
    def __init__(self, arm: Emulator, worker: Worker) -> None:
        self.arm = arm
        self.worker = worker
        self.snapshot = world_snapshot(arm)

    def request(self, method: str, path: str, body: bytes | None, headers: dict[str, str],
                query: dict[str, str]) -> int:
        query_text = urllib.parse.urlencode({**query, "code": self.worker.key})
        status, _ = send(f"{self.worker.url}/{path}?{query_text}", method, body, headers)
        return status

    def assert_unharmed(self) -> None:
        assert self.worker.alive, "the worker process died"
        status, _ = send(f"{self.worker.url}/api/health")
        assert status == 200
        self.arm.wait_operations_done(60)
        assert self.arm.stats.requests("PUT") == 0, "something was written to Azure"
        assert self.arm.stats.requests("DELETE") == 0, "something was deleted in Azure"
        assert world_snapshot(self.arm) == self.snapshot


def world_snapshot(arm: Emulator) -> dict[str, Any]:
    world = arm.world
    with world.lock:
        return json.loads(json.dumps({
            "vnets": [world.render_vnet(v) for v in world.vnets.values()],
            "nics": [world.render_nic(n) for n in world.nics.values()],
            "vms": [world.render_vm(v) for v in world.vms.values()],
            "lbs": [world.render_lb(lb) for lb in world.lbs.values()],
        }, sort_keys=True))


@pytest.fixture
def target(arm: Emulator, storage_connection_string: str, tmp_path: Path) -> Iterator[Target]:
    arm.reset(topology(vms_per_group=3))
    settings_ = worker_settings(arm, storage_connection_string, write_rules(tmp_path))
    reading_runtime(settings_).reconciler.reconcile()  # in sync: no legitimate request has work to do
    arm.wait_operations_done(60)
    worker = Worker(settings_, tmp_path / "logs").start()
    arm.stats.reset()
    try:
        yield Target(arm, worker)
    finally:
        worker.stop()


# --- the tests -------------------------------------------------------------------------------------

HTTP_FUNCTIONS = http_functions()
ROUTE_PARAMETERS = st.sampled_from(
    sorted({p.name for f in HTTP_FUNCTIONS if f.route for p in f.route.parameters} or {"x"}))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_http_routes_never_fail_on_hostile_requests(target: Target) -> None:
    answers: Counter[tuple[str, int]] = Counter()

    def attack_route(function: HostedFunction) -> None:
        methods = sorted(function.methods or {"GET", "POST"})

        @settings(FUZZ_SETTINGS, max_examples=40)
        @given(values=st.dictionaries(ROUTE_PARAMETERS, hostile_text), method_choice=st.integers(0, 9),
               body=hostile_bodies, headers=hostile_headers, query=hostile_query)
        def attack(values: dict[str, str], method_choice: int, body: bytes | None, headers: dict[str, str],
                   query: dict[str, str]) -> None:
            method = methods[method_choice % len(methods)] if method_choice < 8 else "PATCH"  # unlisted too
            path = "api/" + path_for(function, values)
            status = target.request(method, path, body, headers, query)
            answers[(function.name, status)] += 1
            assert status != 0, f"{method} /{path}: the connection broke"
            assert status != 500, f"{method} /{path} with {body[:200] if body else body!r} answered 500"
            assert status < 500 or status == 501, f"{method} /{path} answered {status}"

        attack()

    failures = []
    for function in HTTP_FUNCTIONS:  # every route gets its turn even when an earlier one fails
        for method in sorted(function.methods or {"POST"}):
            for body in BODY_CORPUS:
                status = target.request(method, "api/" + path_for(function, {}), body,
                                        {"Content-Type": "application/json"}, {})
                answers[(function.name, status)] += 1
                if status == 0 or (status >= 500 and status != 501):
                    failures.append(f"{function.name}: {method} with {body[:40]!r}... answered {status}")
        try:
            attack_route(function)
        except AssertionError as failure:
            failures.append(f"{function.name}: {str(failure).splitlines()[0][:300]}")
    print("answers:", sorted(answers.items()))
    assert not failures, "\n".join(failures)
    target.assert_unharmed()


event_types = st.sampled_from([
    "Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Resources.ResourceDeleteSuccess",
    "Microsoft.Resources.ResourceActionSuccess", "Microsoft.EventGrid.SubscriptionValidationEvent",
    "Microsoft.Storage.BlobCreated", "",
]) | hostile_text
subjects = st.sampled_from([
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/a-1",
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Network/networkInterfaces/b-2-nic",
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Compute/virtualMachines/gone",
    f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}",
    "/subscriptions/11111111-1111-1111-1111-111111111111/resourceGroups/x/providers/Microsoft.Compute/virtualMachines/y",
]) | hostile_text
grid_event = st.fixed_dictionaries(
    {"id": hostile_text | st.uuids().map(str), "eventType": event_types, "subject": subjects},
    optional={"topic": hostile_text, "eventTime": st.sampled_from(["2026-01-01T00:00:00Z", "yesterday", ""])
              | hostile_text, "dataVersion": json_values,
              "data": json_values | st.fixed_dictionaries({}, optional={
                  "resourceUri": subjects, "operationName": hostile_text, "status": hostile_text,
                  "subscriptionId": hostile_text, "validationCode": hostile_text})},
)
cloud_event = st.fixed_dictionaries(
    {"specversion": st.sampled_from(["1.0", "0.3", "2"]), "id": hostile_text, "type": event_types,
     "source": hostile_text},
    optional={"subject": subjects, "time": hostile_text, "data": json_values},
)
deliveries = st.one_of(
    st.lists(grid_event, max_size=5).map(lambda v: json.dumps(v).encode()),
    st.lists(cloud_event, max_size=3).map(lambda v: json.dumps(v).encode()),
    grid_event.map(lambda v: json.dumps(v).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.sampled_from([b"", b"[", b"[{}]", b"[null]", b"[[]]", b'[{"id": 1}]', b"[" * 5000 + b"]" * 5000]),
)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_event_grid_endpoint_never_fails_on_hostile_deliveries(target: Target) -> None:
    @settings(FUZZ_SETTINGS, max_examples=200)
    @given(body=deliveries, kind=st.sampled_from(["Notification", "SubscriptionValidation", "Unsubscribe", "",
                                                   "notification", "Bogus"]),
           content_type=st.sampled_from(["application/json", "application/cloudevents-batch+json",
                                         "application/cloudevents+json", "text/plain"]))
    def attack(body: bytes, kind: str, content_type: str) -> None:
        headers = {"Content-Type": content_type, **({"aeg-event-type": kind} if kind else {})}
        status = target.request("POST", "runtime/webhooks/eventgrid", body, headers,
                                {"functionName": EVENT_FUNCTION})
        assert status != 0, "the connection broke"
        assert status in (200, 202, 400), f"{kind} delivery of {body[:300]!r} answered {status}"

    attack()
    target.assert_unharmed()


@pytest.mark.slow
def test_oversized_requests_are_refused_everywhere(target: Target) -> None:
    big_json = json.dumps({"pool": "all", "padding": "x" * OVERSIZED}).encode()
    for function in HTTP_FUNCTIONS:
        for method in sorted(function.methods or {"POST"}):
            status = target.request(method, "api/" + path_for(function, {}), big_json,
                                    {"Content-Type": "application/json"}, {})
            assert status < 500 or status == 501, f"{method} {function.name}: {status}"
            if method == "POST":
                assert status in (400, 404, 413, 501), f"{method} {function.name}: {status}"
    events = json.dumps([{"id": str(n), "eventType": "Microsoft.Resources.ResourceWriteSuccess",
                          "subject": "/x", "data": {"pad": "y" * 1000}} for n in range(2000)]).encode()
    status = target.request("POST", "runtime/webhooks/eventgrid", events,
                            {"aeg-event-type": "Notification", "Content-Type": "application/json"},
                            {"functionName": EVENT_FUNCTION})
    assert status in (202, 400, 413)
    target.assert_unharmed()
