"""The local Functions host serves an app's functions the way the Functions host does: routes, keys,
Event Grid deliveries and handshakes, admin invocation of non-HTTP functions."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import pytest

from devstack.host import LocalFunctionsHost, UnsupportedFunction

KEY = "test-master-key"


def build_app(calls: list[tuple[str, Any]]) -> func.FunctionApp:
    bp = func.Blueprint()

    @bp.route(route="pools/{pool}/addresses/{name?}", methods=["GET", "POST"])
    def pool_addresses(req: func.HttpRequest) -> func.HttpResponse:
        calls.append(("pool_addresses", req))
        document = {"route": dict(req.route_params), "query": dict(req.params),
                    "body": req.get_body().decode()}
        return func.HttpResponse(json.dumps(document), status_code=201, mimetype="application/json")

    @bp.route(route="pools/summary", methods=["GET"])
    def pools_summary(req: func.HttpRequest) -> str:
        return "summary"

    @bp.route(route="health", auth_level=func.AuthLevel.ANONYMOUS)
    def health(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
        return func.HttpResponse(context.function_name)

    @bp.route(route="boom")
    def boom(req: func.HttpRequest) -> func.HttpResponse:
        raise RuntimeError("handler bug")

    @bp.event_grid_trigger(arg_name="event")
    def resource_events(event: func.EventGridEvent) -> None:
        calls.append(("event", event))
        if event.subject == "fail":
            raise RuntimeError("transient")

    @bp.timer_trigger(schedule="0 */15 * * * *", arg_name="timer", run_on_startup=False)
    def audit(timer: func.TimerRequest) -> None:
        calls.append(("timer", timer))

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    return app


@pytest.fixture
def calls() -> list[tuple[str, Any]]:
    return []


@pytest.fixture
def host(calls: list[tuple[str, Any]]) -> Iterator[LocalFunctionsHost]:
    with LocalFunctionsHost(build_app(calls), master_key=KEY, route_prefix="api") as running:
        yield running


def send(url: str, method: str = "GET", body: bytes | None = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def event(subject: str, event_id: str = "e1") -> dict[str, Any]:
    return {
        "id": event_id, "topic": "/subscriptions/s", "subject": subject,
        "eventType": "Microsoft.Resources.ResourceWriteSuccess", "eventTime": "2026-01-02T03:04:05.678Z",
        "dataVersion": "2", "data": {"resourceUri": subject},
    }


def post_events(host: LocalFunctionsHost, payload: Any, **headers: str) -> tuple[int, bytes]:
    status, _, body = send(host.event_grid_url("resource_events"), "POST", json.dumps(payload).encode(),
                           {"aeg-event-type": "Notification", "Content-Type": "application/json", **headers})
    return status, body


def test_http_route_gets_route_params_query_and_body(host: LocalFunctionsHost) -> None:
    status, headers, body = send(host.http_url("pools/web/addresses/a1?dry=1"), "POST", b"hello",
                                 {"x-functions-key": KEY})
    assert status == 201
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"route": {"pool": "web", "name": "a1"}, "query": {"dry": "1"},
                                "body": "hello"}


def test_function_level_routes_need_the_key(host: LocalFunctionsHost, calls: list) -> None:
    assert send(host.http_url("pools/web/addresses"))[0] == 401
    assert send(host.http_url("pools/web/addresses"), headers={"x-functions-key": "wrong"})[0] == 401
    assert calls == []
    assert send(host.http_url(f"pools/web/addresses?code={KEY}"))[0] == 201
    assert send(host.http_url("health"))[0] == 200  # anonymous


def test_literal_route_wins_and_plain_string_results_become_200(host: LocalFunctionsHost) -> None:
    status, _, body = send(host.http_url("pools/summary"), headers={"x-functions-key": KEY})
    assert (status, body) == (200, b"summary")


def test_context_parameter_is_supplied(host: LocalFunctionsHost) -> None:
    assert send(host.http_url("health"))[2] == b"health"


def test_unknown_routes_methods_and_prefixes(host: LocalFunctionsHost) -> None:
    assert send(host.http_url("nothing-here"), headers={"x-functions-key": KEY})[0] == 404
    assert send(f"{host.url}/pools/summary", headers={"x-functions-key": KEY})[0] == 404  # no prefix
    status, headers, _ = send(host.http_url("pools/summary"), "DELETE", headers={"x-functions-key": KEY})
    assert status == 405 and "GET" in headers["Allow"]


def test_a_failing_function_is_a_500_and_the_host_keeps_serving(host: LocalFunctionsHost) -> None:
    assert send(host.http_url("boom"), headers={"x-functions-key": KEY})[0] == 500
    assert send(host.http_url("health"))[0] == 200


def test_event_grid_subscription_validation_handshake(host: LocalFunctionsHost, calls: list) -> None:
    payload = [{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                "subject": "", "data": {"validationCode": "512d38b6-c7b8"}, "dataVersion": "2"}]
    status, _, body = send(host.event_grid_url("resource_events"), "POST", json.dumps(payload).encode(),
                           {"aeg-event-type": "SubscriptionValidation"})
    assert (status, json.loads(body)) == (200, {"validationResponse": "512d38b6-c7b8"})
    assert calls == []


def test_event_grid_array_invokes_the_function_once_per_event(host: LocalFunctionsHost, calls: list) -> None:
    status, _ = post_events(host, [event("/a", "1"), event("/b", "2")])
    assert status == 202
    received = [value for kind, value in calls if kind == "event"]
    assert [(e.id, e.subject, e.event_type) for e in received] == [
        ("1", "/a", "Microsoft.Resources.ResourceWriteSuccess"),
        ("2", "/b", "Microsoft.Resources.ResourceWriteSuccess"),
    ]
    assert received[0].get_json() == {"resourceUri": "/a"}
    assert received[0].event_time.year == 2026


def test_cloud_events_batch_and_abuse_protection_handshake(host: LocalFunctionsHost, calls: list) -> None:
    status, headers, _ = send(host.event_grid_url("resource_events"), "OPTIONS",
                              headers={"WebHook-Request-Origin": "eventgrid.azure.net"})
    assert status == 200 and headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"
    cloud_event = {"specversion": "1.0", "id": "c1", "source": "/subscriptions/s", "subject": "/vm",
                   "type": "Microsoft.Resources.ResourceWriteSuccess", "time": "2026-01-02T03:04:05Z",
                   "data": {"resourceUri": "/vm"}}
    status, _, _ = send(host.event_grid_url("resource_events"), "POST", json.dumps([cloud_event]).encode(),
                        {"Content-Type": "application/cloudevents-batch+json"})
    assert status == 202
    [(_, received)] = calls
    assert isinstance(received, func.CloudEvent)
    assert (received.id, received.subject) == ("c1", "/vm")
    assert received.type == "Microsoft.Resources.ResourceWriteSuccess"


def test_event_grid_failure_is_a_500_so_the_sender_retries(host: LocalFunctionsHost) -> None:
    status, body = post_events(host, [event("fail")])
    assert status == 500 and b"transient" in body


def test_event_grid_rejects_bad_payloads_without_invoking(host: LocalFunctionsHost, calls: list) -> None:
    url = host.event_grid_url("resource_events")
    notification = {"aeg-event-type": "Notification"}
    assert send(url, "POST", b"{not json", notification)[0] == 400
    assert send(url, "POST", b"[1, 2]", notification)[0] == 400
    assert send(url, "POST", json.dumps([{"eventTime": "not a time"}]).encode(), notification)[0] == 400
    assert send(url, "POST", b"[]")[0] == 400  # no aeg-event-type
    assert send(url, "POST", b"[]", {"aeg-event-type": "SubscriptionValidation"})[0] == 400
    assert send(host.event_grid_url("resource_events", with_key=False), "POST", b"[]", notification)[0] == 401
    assert send(host.event_grid_url("nosuch"), "POST", b"[]", notification)[0] == 404
    assert calls == []


def test_admin_endpoint_fires_the_timer(host: LocalFunctionsHost, calls: list) -> None:
    assert send(host.admin_url("audit"), "POST", b"{}")[0] == 401
    status, _, _ = send(host.admin_url("audit"), "POST", b'{"input": ""}',
                        {"x-functions-key": KEY, "Content-Type": "application/json"})
    assert status == 202
    [(kind, timer)] = calls
    assert kind == "timer" and timer.past_due is False
    assert send(host.admin_url("nosuch"), "POST", b"{}", {"x-functions-key": KEY})[0] == 404


def test_admin_endpoint_feeds_an_event_to_an_event_grid_function(host: LocalFunctionsHost,
                                                                   calls: list) -> None:
    payload = json.dumps({"input": json.dumps(event("/vm"))}).encode()
    assert send(host.admin_url("resource_events"), "POST", payload, {"x-functions-key": KEY})[0] == 202
    assert [value.subject for _, value in calls] == ["/vm"]


def test_oversized_bodies_are_refused_before_the_function_runs(calls: list) -> None:
    with LocalFunctionsHost(build_app(calls), master_key=KEY, max_body_bytes=1024) as small:
        status, _, _ = send(small.http_url("pools/p/addresses"), "POST", b"x" * 4096,
                            {"x-functions-key": KEY})
        assert status == 413
        assert send(small.http_url("health"))[0] == 200
    assert calls == []


def test_host_status_lists_the_functions(host: LocalFunctionsHost) -> None:
    status, _, body = send(f"{host.url}/admin/host/status", headers={"x-functions-key": KEY})
    assert status == 200
    assert json.loads(body)["functions"] == sorted(
        ["pool_addresses", "pools_summary", "health", "boom", "resource_events", "audit"])


def test_apps_with_bindings_the_host_cannot_provide_are_refused_at_start() -> None:
    app = func.FunctionApp()

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="q", connection="ServiceBus")
    def on_message(msg: func.ServiceBusMessage) -> None:
        pass

    with pytest.raises(UnsupportedFunction, match="on_message"):
        LocalFunctionsHost(app)


def test_an_app_whose_functions_were_already_listed_can_still_be_hosted(calls: list) -> None:
    app = build_app(calls)
    app.get_functions()  # e.g. a test or tool looked first; a second call would raise
    with LocalFunctionsHost(app, master_key=KEY) as running:
        assert send(running.http_url("health"))[0] == 200


def test_a_host_that_never_started_stops_at_once(calls: list) -> None:
    LocalFunctionsHost(build_app(calls)).stop()  # e.g. the stack failed to start a later piece


def test_replies_count_every_invocation_by_status(host: LocalFunctionsHost) -> None:
    send(host.http_url("health"))
    send(host.http_url("boom"), headers={"x-functions-key": KEY})
    post_events(host, [event("/a", "1")])
    assert host.replies("health") == {200: 1}
    assert host.replies() == {200: 1, 500: 1, 202: 1}
