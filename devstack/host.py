"""A local stand-in for the Azure Functions host, driven only by `app.get_functions()`.

It serves what the real host serves for this app, over plain HTTP on loopback:

- HTTP triggers at `/<routePrefix>/<route>` (prefix from host.json, `api` by default), with route
  parameters from each function's template and function-key auth (`x-functions-key` or `?code=`);
- Event Grid deliveries at `/runtime/webhooks/eventgrid?functionName=<name>`: Event Grid schema arrays
  with the subscription-validation handshake, CloudEvents (single or batch, with the OPTIONS
  abuse-protection handshake); one invocation per event, 202 when all succeeded, 500 (so the sender
  retries) when one raised;
- queue triggers: a poller per function reads its Azurite queue (connection from the binding's app
  setting), hands each base64-decoded message to the function (up to 16 + 8 at once, as the extension's
  batchSize and newBatchThreshold allow), deletes it on success, lets it come back on failure and moves it
  to `<queue>-poison` after 5 dequeues, as the queue extension does; an idle queue is polled at least
  every 2 s (host.json's maxPollingInterval);
- timers declared `runOnStartup` run once, in the background, as the host starts;
- `POST /admin/functions/<name>` to run a non-HTTP function (timer, Event Grid, queue) by hand, plus
  `/admin/host/status`, `/admin/host/ping` and `GET /admin/functions`.

Trigger objects are the library's own types (func.HttpRequest, and the worker's converters for Event
Grid and timer payloads), so user code sees what it sees in Azure. Deliberate differences, all in the
direction of a friendlier local loop: malformed webhook bodies get 400 instead of an exception page,
and `/admin/functions/<name>` answers once the invocation finished (202, or 500 with the error).
One generated key acts as master key: it opens FUNCTION, ADMIN and system (webhook) endpoints.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import importlib
import inspect
import json
import logging
import secrets
import signal
import sys
import threading
import time
import traceback
import uuid
import weakref
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequestConverter

from devstack.routes import RouteTemplate, RouteTemplateError, ordered
from shared.settings import app_settings

log = logging.getLogger("devstack.host")

REPO_ROOT = Path(__file__).resolve().parent.parent
HTTP_TRIGGER = "httptrigger"
EVENT_GRID_TRIGGER = "eventgridtrigger"
TIMER_TRIGGER = "timertrigger"
QUEUE_TRIGGER = "queuetrigger"
HTTP_OUTPUT = "http"
SUPPORTED_BINDINGS = {HTTP_TRIGGER, EVENT_GRID_TRIGGER, TIMER_TRIGGER, QUEUE_TRIGGER, HTTP_OUTPUT}
MAX_DEQUEUE_COUNT = 5  # the queue extension's default maxDequeueCount
QUEUE_BATCH_SIZE = 16  # the queue extension's default batchSize ...
QUEUE_NEW_BATCH_THRESHOLD = 8  # ... and newBatchThreshold: fetch more when this few are still running
QUEUE_VISIBILITY_SECONDS = 600  # a message stays hidden while its invocation runs (functionTimeout)
EVENT_GRID_PATH = "/runtime/webhooks/eventgrid"
MAX_BODY_BYTES = 100 * 1024 * 1024  # the Functions host's request size limit
MAX_URL_BYTES = 4096  # the Functions host's URL length limit
CLOUDEVENTS_TYPES = ("application/cloudevents+json", "application/cloudevents-batch+json")
VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"


class UnsupportedFunction(RuntimeError):
    """The app declares a binding this local host cannot provide."""


class BadInput(ValueError):
    """A request the host itself refuses (malformed payload), answered with 400."""


# --- the function index -------------------------------------------------------------------------


@dataclass(frozen=True)
class HostedFunction:
    name: str
    trigger: str  # lower-cased binding type, e.g. httptrigger
    binding: Mapping[str, Any]
    user_function: Callable[..., Any]
    trigger_parameter: str
    wants_context: bool
    route: RouteTemplate | None = None
    methods: frozenset[str] | None = None  # None: every method
    auth_level: str = "function"

    def call(self, trigger_value: Any) -> Any:
        kwargs: dict[str, Any] = {self.trigger_parameter: trigger_value}
        if self.wants_context:
            kwargs["context"] = InvocationContext(self.name)
        result = self.user_function(**kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
        return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


class InvocationContext(func.Context):
    """The `context` argument a function may declare."""

    def __init__(self, function_name: str) -> None:
        self._invocation_id = str(uuid.uuid4())
        self._function_name = function_name
        self._local = threading.local()
        self._local.invocation_id = self._invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._local

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return str(REPO_ROOT)

    @property
    def trace_context(self) -> Any:
        return None

    @property
    def retry_context(self) -> Any:
        return None


_indexed: weakref.WeakKeyDictionary[Any, list[Any]] = weakref.WeakKeyDictionary()
_index_lock = threading.Lock()


def _functions_of(app: Any) -> list[Any]:
    # FunctionApp.get_functions() refuses a second call (it sees its own names as duplicates), so the
    # result is kept per app object for hosts created later in the same process; when someone else made
    # the first call, the functions are built again from the app's builders, as get_functions does.
    with _index_lock:
        if app not in _indexed:
            try:
                _indexed[app] = app.get_functions()
            except ValueError:
                builders = getattr(app, "_function_builders", None)
                if builders is None:
                    raise
                _indexed[app] = [builder.build(app.auth_level) for builder in builders]
        return _indexed[app]


@dataclass
class FunctionIndex:
    by_name: dict[str, HostedFunction] = field(default_factory=dict)  # lower-cased name
    http_routes: list[tuple[RouteTemplate, HostedFunction]] = field(default_factory=list)

    @classmethod
    def of(cls, app: Any) -> FunctionIndex:
        index = cls()
        problems: list[str] = []
        routed: list[tuple[RouteTemplate, HostedFunction]] = []
        for function in _functions_of(app):
            hosted = _hosted(function, problems)
            if hosted is None:
                continue
            index.by_name[hosted.name.lower()] = hosted
            if hosted.route is not None:
                routed.append((hosted.route, hosted))
        if problems:
            raise UnsupportedFunction("the local host cannot run this app:\n  " + "\n  ".join(problems))
        order = {id(t): position for position, t in enumerate(ordered(t for t, _ in routed))}
        index.http_routes = sorted(routed, key=lambda pair: order[id(pair[0])])
        return index

    def get(self, name: str) -> HostedFunction | None:
        return self.by_name.get(name.lower())


def _hosted(function: Any, problems: list[str]) -> HostedFunction | None:
    name = function.get_function_name()
    bindings = json.loads(function.get_function_json())["bindings"]
    unsupported = [b["type"] for b in bindings if str(b.get("type", "")).lower() not in SUPPORTED_BINDINGS]
    if unsupported:
        problems.append(f"{name}: unsupported binding(s) {', '.join(unsupported)}")
        return None
    trigger = next((b for b in bindings if str(b["type"]).lower().endswith("trigger")), None)
    if trigger is None:
        problems.append(f"{name}: no trigger")
        return None
    user_function = function.get_user_function()
    parameters = inspect.signature(user_function).parameters
    kind = str(trigger["type"]).lower()
    route = None
    methods = None
    if kind == HTTP_TRIGGER:
        try:
            route = RouteTemplate.compile(trigger.get("route") or name)
        except RouteTemplateError as error:
            problems.append(f"{name}: {error}")
            return None
        if trigger.get("methods"):
            methods = frozenset(str(m).upper() for m in trigger["methods"])
    return HostedFunction(
        name=name,
        trigger=kind,
        binding=trigger,
        user_function=user_function,
        trigger_parameter=trigger["name"],
        wants_context="context" in parameters,
        route=route,
        methods=methods,
        auth_level=str(trigger.get("authLevel") or "function").lower(),
    )


def route_prefix_from(host_json: Path) -> str:
    """`extensions.http.routePrefix` from host.json ("api" when absent, as in Azure)."""
    try:
        document = json.loads(host_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "api"
    prefix = ((document.get("extensions") or {}).get("http") or {}).get("routePrefix")
    return "api" if prefix is None else str(prefix).strip("/")


# --- trigger payloads ---------------------------------------------------------------------------


def event_from_json(event: Any) -> Any:
    """func.EventGridEvent (or func.CloudEvent for a CloudEvents body), as the Python worker builds it."""
    if not isinstance(event, dict):
        raise BadInput("each event must be a JSON object")
    try:
        return EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})
    except (ValueError, TypeError, OverflowError, RecursionError) as error:
        raise BadInput(f"event {str(event.get('id'))[:64]!r} cannot be read: {error}") from error


def timer_request(past_due: bool = False) -> Any:
    status = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": None, "IsPastDue": past_due}
    return TimerRequestConverter.decode(meta.Datum(json.dumps(status), "json"), trigger_metadata={})


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise BadInput(f"body is not JSON: {error}") from error


def validation_code(body: bytes) -> str:
    """The code of a subscription-validation request (Event Grid array, or a CloudEvent object)."""
    document = _parse_json(body)
    first = document[0] if isinstance(document, list) and document else document
    data = first.get("data") if isinstance(first, dict) else None
    if isinstance(data, str):  # CloudEvents carry the data JSON-encoded
        data = _parse_json(data.encode())
    code = data.get("validationCode") if isinstance(data, dict) else None
    if not isinstance(code, str) or not code:
        raise BadInput("no data.validationCode in the validation request")
    return code


class QueuePoller:
    """Runs one queue-triggered function on the messages of its queue, as the queue extension does."""

    def __init__(self, function: HostedFunction, connection_string: str, *,
                 idle_seconds: float = 0.2, max_idle_seconds: float = 2.0) -> None:
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        self.function = function
        queue_name = str(function.binding["queueName"])
        self.queue = QueueClient.from_connection_string(
            connection_string, queue_name, message_decode_policy=TextBase64DecodePolicy())
        self.poison = QueueClient.from_connection_string(
            connection_string, f"{queue_name}-poison", message_encode_policy=TextBase64EncodePolicy())
        self.idle_seconds, self.max_idle_seconds = idle_seconds, max_idle_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._running = threading.Semaphore(QUEUE_BATCH_SIZE + QUEUE_NEW_BATCH_THRESHOLD)
        self._in_flight = 0
        self._count_lock = threading.Lock()

    def start(self) -> QueuePoller:
        self._thread = threading.Thread(target=self._run, name=f"queue-{self.function.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        deadline = time.monotonic() + 30  # let running invocations finish, as the host drains
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)

    @property
    def in_flight(self) -> int:
        with self._count_lock:
            return self._in_flight

    def _run(self) -> None:
        wait = self.idle_seconds
        while not self._stopping.is_set():
            try:
                handled = self.poll_once(wait=False)
            except AzureError as error:  # Azurite not there (yet): back off, as the extension does
                log.warning("queue %s: %s", self.queue.queue_name, str(error).splitlines()[0])
                handled = 0
            wait = self.idle_seconds if handled else min(wait * 2, self.max_idle_seconds)
            self._stopping.wait(wait)

    def poll_once(self, wait: bool = True) -> int:
        """Receive the messages now visible (while fewer than newBatchThreshold run) and start each in its
        own thread; with `wait`, return once they are handled. How many were received."""
        if self.in_flight > QUEUE_NEW_BATCH_THRESHOLD:
            return 0
        with contextlib.suppress(ResourceExistsError):
            self.queue.create_queue()
        messages = list(self.queue.receive_messages(messages_per_page=QUEUE_BATCH_SIZE,
                                                    max_messages=QUEUE_BATCH_SIZE,
                                                    visibility_timeout=QUEUE_VISIBILITY_SECONDS))
        threads = []
        for message in messages:
            self._running.acquire()
            with self._count_lock:
                self._in_flight += 1
            thread = threading.Thread(target=self._run_one, args=(message,), daemon=True,
                                      name=f"queue-{self.function.name}-invocation")
            thread.start()
            threads.append(thread)
        if wait:
            for thread in threads:
                thread.join()
        return len(messages)

    def _run_one(self, message: Any) -> None:
        try:
            self._handle(message)
        except AzureError as error:  # the message comes back after its visibility timeout
            log.warning("queue %s: %s", self.queue.queue_name, str(error).splitlines()[0])
        finally:
            with self._count_lock:
                self._in_flight -= 1
            self._running.release()

    def _handle(self, message: Any) -> None:
        if message.dequeue_count > MAX_DEQUEUE_COUNT:
            log.error("queue %s: message %s failed %d times; moved to %s", self.queue.queue_name, message.id,
                      MAX_DEQUEUE_COUNT, self.poison.queue_name)
            with contextlib.suppress(ResourceExistsError):
                self.poison.create_queue()
            self.poison.send_message(message.content)
            self.queue.delete_message(message)
            return
        body = message.content if isinstance(message.content, bytes) else str(message.content).encode()
        trigger = QueueMessage(id=message.id, body=body, dequeue_count=message.dequeue_count,
                               expiration_time=message.expires_on, insertion_time=message.inserted_on,
                               time_next_visible=message.next_visible_on, pop_receipt=message.pop_receipt)
        try:
            self.function.call(trigger)
        except Exception:
            log.exception("function %s failed on message %s (dequeue %d)", self.function.name, message.id,
                          message.dequeue_count)
            self.queue.update_message(message, visibility_timeout=0)  # retried at once, as by default
            return
        self.queue.delete_message(message)


def queue_connection(binding: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
    """The connection string the binding's `connection` app setting names (Azurite locally)."""
    from shared.storage.account import StorageSettings

    value = env.get(str(binding.get("connection") or "AzureWebJobsStorage"))
    return StorageSettings.from_env({"AzureWebJobsStorage": value} if value else {}).connection_string


# --- HTTP ---------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def text(cls, status: int, text: str = "") -> Reply:
        return cls(status, text.encode(), {"Content-Type": "text/plain; charset=utf-8"} if text else {})

    @classmethod
    def json(cls, status: int, document: Any) -> Reply:
        return cls(status, json.dumps(document).encode(), {"Content-Type": "application/json; charset=utf-8"})


def reply_from(result: Any) -> Reply:
    """What the worker sends back for an HTTP function's return value."""
    if result is None:
        return Reply(HTTPStatus.NO_CONTENT)
    if isinstance(result, str | bytes):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        log.error("HTTP function returned %s, not an HttpResponse", type(result).__name__)
        return Reply(HTTPStatus.INTERNAL_SERVER_ERROR)
    headers = {key: value for key, value in result.headers.items()}
    if not any(key.lower() == "content-type" for key in headers) and result.mimetype:
        headers["Content-Type"] = f"{result.mimetype}; charset={result.charset or 'utf-8'}"
    return Reply(int(result.status_code), result.get_body() or b"", headers)


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # percent-encoded, without the query
    query: dict[str, str]
    headers: Mapping[str, str]
    body: bytes
    url: str

    def header(self, name: str) -> str | None:
        for key, value in self.headers.items():
            if key.lower() == name.lower():
                return value
        return None


class LocalFunctionsHost:
    def __init__(
        self,
        app: Any,
        *,
        master_key: str | None = None,
        route_prefix: str | None = None,
        port: int = 0,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.index = FunctionIndex.of(app)
        self.master_key = master_key or secrets.token_urlsafe(32)
        self.route_prefix = (route_prefix if route_prefix is not None
                             else route_prefix_from(REPO_ROOT / "host.json")).strip("/")
        self.max_body_bytes = max_body_bytes
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.host = self
        self._thread: threading.Thread | None = None
        self._replies: Counter[tuple[str, int]] = Counter()  # (function, status) of every invocation
        self._replies_lock = threading.Lock()
        self._in_flight = 0
        self._idle = threading.Condition()
        self._pollers: list[QueuePoller] = []

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalFunctionsHost:
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="functions-host", daemon=True)
        self._thread.start()
        self._start_queue_pollers(app_settings())
        self._run_startup_timers()
        return self

    def _run_startup_timers(self) -> None:
        """Timers declared runOnStartup run once as the host starts, beside it (requests are served)."""
        for function in self.functions():
            if function.trigger == TIMER_TRIGGER and function.binding.get("runOnStartup"):
                threading.Thread(target=self._run_timer, args=(function,), name=f"startup-{function.name}",
                                 daemon=True).start()

    def _run_timer(self, function: HostedFunction) -> None:
        try:
            function.call(timer_request())
        except Exception as error:
            log.exception("function %s failed", function.name)
            reply = Reply.text(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}"[:500])
            self._count(function, reply)
            return
        self._count(function, Reply(HTTPStatus.ACCEPTED))

    def _start_queue_pollers(self, env: Mapping[str, str]) -> None:
        for function in self.functions():
            if function.trigger != QUEUE_TRIGGER:
                continue
            connection = queue_connection(function.binding, env)
            if connection is None:
                log.warning("queue trigger %s not polled: no storage connection string in %s", function.name,
                            function.binding.get("connection"))
                continue
            self._pollers.append(QueuePoller(function, connection).start())

    def stop(self, drain_seconds: float = 15.0) -> None:
        """Stop accepting requests, then give running invocations a while to finish (as the host drains)."""
        for poller in self._pollers:
            poller.stop()
        self._pollers.clear()
        if self._thread is not None:  # shutdown() waits for serve_forever, which runs only once started
            self._server.shutdown()
            self._thread.join(timeout=10)
            self._thread = None
        self._server.server_close()
        deadline = time.monotonic() + drain_seconds
        with self._idle:
            while self._in_flight and time.monotonic() < deadline:
                self._idle.wait(max(0.0, deadline - time.monotonic()))
            if self._in_flight:
                log.warning("stopped with %d invocation(s) still running", self._in_flight)

    def _enter(self) -> None:
        with self._idle:
            self._in_flight += 1

    def _leave(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def __enter__(self) -> LocalFunctionsHost:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ----------------------------------------------------------------------------
    def http_url(self, route: str) -> str:
        prefix = f"/{self.route_prefix}" if self.route_prefix else ""
        return f"{self.url}{prefix}/{route.lstrip('/')}"

    def event_grid_url(self, function_name: str, *, with_key: bool = True) -> str:
        code = f"&code={self.master_key}" if with_key else ""
        return f"{self.url}{EVENT_GRID_PATH}?functionName={function_name}{code}"

    def admin_url(self, function_name: str) -> str:
        return f"{self.url}/admin/functions/{function_name}"

    def functions(self) -> list[HostedFunction]:
        return list(self.index.by_name.values())

    def replies(self, function_name: str | None = None) -> Counter[int]:
        """Statuses answered for invocations (of one function, or all): what a caller can wait on."""
        statuses: Counter[int] = Counter()
        with self._replies_lock:
            for (name, status), count in self._replies.items():
                if function_name is None or name == function_name.lower():
                    statuses[status] += count
        return statuses

    def _count(self, function: HostedFunction, reply: Reply) -> Reply:
        with self._replies_lock:
            self._replies[(function.name.lower(), reply.status)] += 1
        return reply

    # -- dispatch -----------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        path = request.path.rstrip("/").lower() or "/"
        if path == "/":
            return Reply.text(HTTPStatus.OK, "poolsync local Functions host is running")
        if path == "/admin/host/ping":
            return Reply(HTTPStatus.OK)
        if path.startswith("/admin/"):
            return self._admin(request, path)
        if path == EVENT_GRID_PATH:
            if not self._has_master_key(request):
                return Reply(HTTPStatus.UNAUTHORIZED)
            return self._event_grid(request)
        prefix = f"/{self.route_prefix.lower()}" if self.route_prefix else ""
        if prefix and not (path == prefix or path.startswith(prefix + "/")):
            return Reply(HTTPStatus.NOT_FOUND)
        return self._http(request, request.path[len(prefix):])

    def _has_master_key(self, request: Request) -> bool:
        offered = request.header("x-functions-key") or request.query.get("code") or ""
        return hmac.compare_digest(offered.encode(), self.master_key.encode())

    def _http(self, request: Request, route_path: str) -> Reply:
        allowed: set[str] = set()
        for template, function in self.index.http_routes:
            values = template.match(route_path)
            if values is None:
                continue
            if function.methods is not None and request.method not in function.methods:
                allowed |= function.methods
                continue
            if function.auth_level != "anonymous" and not self._has_master_key(request):
                return Reply(HTTPStatus.UNAUTHORIZED)
            http_request = func.HttpRequest(
                request.method, request.url, headers=dict(request.headers), params=request.query,
                route_params=values, body=request.body,
            )
            try:
                return self._count(function, reply_from(function.call(http_request)))
            except Exception:
                log.exception("function %s failed", function.name)
                return self._count(function, Reply(HTTPStatus.INTERNAL_SERVER_ERROR))
        if allowed:
            return Reply(HTTPStatus.METHOD_NOT_ALLOWED, headers={"Allow": ", ".join(sorted(allowed))})
        return Reply(HTTPStatus.NOT_FOUND)

    def _event_grid(self, request: Request) -> Reply:
        name = request.query.get("functionName") or ""
        function = self.index.get(name)
        if function is None or function.trigger != EVENT_GRID_TRIGGER:
            return Reply.text(HTTPStatus.NOT_FOUND, f"cannot find function: '{name[:100]}'")
        if request.method == "OPTIONS":  # CloudEvents abuse protection
            origin = request.header("WebHook-Request-Origin")
            if not origin:
                return Reply.text(HTTPStatus.BAD_REQUEST, "missing WebHook-Request-Origin")
            return Reply(HTTPStatus.OK,
                         headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"})
        if request.method != "POST":
            return Reply(HTTPStatus.METHOD_NOT_ALLOWED, headers={"Allow": "POST, OPTIONS"})
        kind = (request.header("aeg-event-type") or "").lower()
        content_type = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if kind == "subscriptionvalidation":
                return Reply.json(HTTPStatus.OK, {"validationResponse": validation_code(request.body)})
            if kind == "unsubscribe":
                return Reply(HTTPStatus.ACCEPTED)
            if kind != "notification" and content_type not in CLOUDEVENTS_TYPES:
                return Reply.text(HTTPStatus.BAD_REQUEST, "missing aeg-event-type header")
            document = _parse_json(request.body)
            raw_events = document if isinstance(document, list) else [document]
            events = [event_from_json(event) for event in raw_events]
        except BadInput as error:
            return Reply.text(HTTPStatus.BAD_REQUEST, str(error))
        for event in events:
            try:
                function.call(event)
            except Exception as error:
                log.exception("function %s failed on event %s", function.name, getattr(event, "id", "?"))
                return self._count(function, Reply.text(HTTPStatus.INTERNAL_SERVER_ERROR,
                                                        f"{type(error).__name__}: {error}"[:500]))
        return self._count(function, Reply(HTTPStatus.ACCEPTED))

    def _admin(self, request: Request, path: str) -> Reply:
        if not self._has_master_key(request):
            return Reply(HTTPStatus.UNAUTHORIZED)
        if path == "/admin/host/status":
            return Reply.json(HTTPStatus.OK, {"state": "Running", "functions": sorted(self.index.by_name)})
        if path == "/admin/functions":
            return Reply.json(HTTPStatus.OK, [
                {"name": f.name, "trigger": f.binding.get("type"),
                 "invoke_url_template": self.http_url(f.route.template) if f.route else None}
                for f in self.functions()
            ])
        if not path.startswith("/admin/functions/"):
            return Reply(HTTPStatus.NOT_FOUND)
        if request.method != "POST":
            return Reply(HTTPStatus.METHOD_NOT_ALLOWED, headers={"Allow": "POST"})
        function = self.index.get(path.removeprefix("/admin/functions/"))
        if function is None:
            return Reply(HTTPStatus.NOT_FOUND)
        if function.trigger == HTTP_TRIGGER:
            return Reply.text(HTTPStatus.BAD_REQUEST, "HTTP functions are called through their route")
        try:
            trigger_value = self._admin_input(function, request.body)
        except BadInput as error:
            return Reply.text(HTTPStatus.BAD_REQUEST, str(error))
        try:
            function.call(trigger_value)
        except Exception as error:
            log.exception("function %s failed", function.name)
            return self._count(function, Reply.text(HTTPStatus.INTERNAL_SERVER_ERROR,
                                                    f"{type(error).__name__}: {error}"[:500]))
        return self._count(function, Reply(HTTPStatus.ACCEPTED))

    @staticmethod
    def _admin_input(function: HostedFunction, body: bytes) -> Any:
        """`{"input": "..."}` as the real admin API takes it; timers ignore the input, queue functions get
        it as the message body."""
        document = _parse_json(body) if body.strip() else {}
        if not isinstance(document, dict):
            raise BadInput('body must be a JSON object like {"input": "..."}')
        if function.trigger == TIMER_TRIGGER:
            return timer_request()
        raw = document.get("input")
        if function.trigger == QUEUE_TRIGGER:
            if not isinstance(raw, str):
                raise BadInput('a queue function takes {"input": "<message text>"}')
            return QueueMessage(id=str(uuid.uuid4()), body=raw.encode(), dequeue_count=1)
        event = _parse_json(raw.encode()) if isinstance(raw, str) else raw
        return event_from_json(event)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    host: LocalFunctionsHost


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _serve(self) -> None:
        started = time.perf_counter()
        host = self.server.host
        host._enter()
        try:
            if len(self.path.encode()) > MAX_URL_BYTES:
                reply = Reply(HTTPStatus.REQUEST_URI_TOO_LONG)
                self.close_connection = True
            else:
                body = self._read_body(host.max_body_bytes)
                if body is None:
                    reply = Reply(HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
                    self.close_connection = True
                else:
                    reply = host.handle(self._request(body))
        except Exception:  # the host itself must never take the connection down with a traceback
            log.error("local host error on %s %s\n%s", self.command, self.path.split("?")[0],
                      traceback.format_exc())
            reply = Reply(HTTPStatus.INTERNAL_SERVER_ERROR)
            self.close_connection = True
        finally:
            host._leave()
        self._send(reply)
        log.info("%s %s -> %d (%.0f ms)", self.command, self.path.split("?")[0][:200], reply.status,
                 (time.perf_counter() - started) * 1000)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def _request(self, body: bytes) -> Request:
        parts = urlsplit(self.path)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        headers = {key: value for key, value in self.headers.items()}
        url = f"http://{self.headers.get('Host') or f'127.0.0.1:{self.server.server_address[1]}'}{self.path}"
        return Request(self.command, parts.path or "/", query, headers, body, url)

    def _read_body(self, limit: int) -> bytes | None:
        """The request body, or None when it is larger than `limit`."""
        if (self.headers.get("Transfer-Encoding") or "").lower() == "chunked":
            return self._read_chunked(limit)
        length_text = self.headers.get("Content-Length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            return b""
        if length < 0 or length > limit:
            return None
        return self.rfile.read(length)

    def _read_chunked(self, limit: int) -> bytes | None:
        chunks: list[bytes] = []
        total = 0
        while True:
            size_line = self.rfile.readline(1024).split(b";")[0].strip()
            try:
                size = int(size_line or b"0", 16)
            except ValueError:
                self.close_connection = True
                return b"".join(chunks)
            if size == 0:
                while self.rfile.readline(1024).strip():  # trailers
                    pass
                return b"".join(chunks)
            total += size
            if total > limit:
                return None
            chunks.append(self.rfile.read(size))
            self.rfile.readline(8)  # CRLF after the chunk

    def _send(self, reply: Reply) -> None:
        try:
            self.send_response(reply.status)
            for key, value in reply.headers.items():
                if key.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(0 if self.command == "HEAD" else len(reply.body)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and reply.body:
                self.wfile.write(reply.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug(format, *args)


# --- running on its own (worker processes) ------------------------------------------------------


def load_app(spec: str = "function_app:app") -> Any:
    module_name, _, attribute = spec.partition(":")
    return getattr(importlib.import_module(module_name), attribute or "app")


def main(argv: list[str] | None = None) -> int:
    """`python -m devstack.host`: one worker process serving the app with the settings in its environment."""
    parser = argparse.ArgumentParser(prog="python -m devstack.host", description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--master-key", default=None, help="key for FUNCTION/admin/webhook endpoints")
    parser.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.path.insert(0, str(REPO_ROOT))
    host = LocalFunctionsHost(load_app(args.app), master_key=args.master_key, port=args.port).start()
    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    # One write of the whole line: the start-up timers already log from other threads into the same file,
    # and print() writes the text and its newline apart (a log line could land between them).
    sys.stdout.write(f"listening on {host.url}\n")
    sys.stdout.flush()
    stopping.wait()
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
