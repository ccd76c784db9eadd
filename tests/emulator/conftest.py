"""Helpers for the emulator's own tests: raw HTTPS access (to see status codes and headers
the SDK hides) and a local webhook receiver for Event Grid deliveries."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests

from emulator import Emulator

NETWORK_API = "2026-03-01"
COMPUTE_API = "2026-04-01"


class RawArm:
    """Plain HTTPS calls to the emulator with a bearer token."""

    def __init__(self, emulator: Emulator) -> None:
        self.base = emulator.url
        self.session = requests.Session()
        # passed per request: a session-level `verify` loses to REQUESTS_CA_BUNDLE in the environment
        self.ca_path = emulator.ca_path
        self.session.headers["Authorization"] = "Bearer test-token"

    def url(self, path: str, api_version: str = NETWORK_API) -> str:
        joiner = "&" if "?" in path else "?"
        return f"{self.base}{path}{joiner}api-version={api_version}" if api_version else f"{self.base}{path}"

    def get(self, path: str, api_version: str = NETWORK_API, **kwargs: Any) -> requests.Response:
        return self.session.get(self.url(path, api_version), timeout=30, verify=self.ca_path, **kwargs)

    def put(self, path: str, body: Any, api_version: str = NETWORK_API, **kwargs: Any) -> requests.Response:
        return self.session.put(
            self.url(path, api_version), json=body, timeout=30, verify=self.ca_path, **kwargs
        )

    def patch(self, path: str, body: Any, api_version: str = NETWORK_API, **kwargs: Any) -> requests.Response:
        return self.session.patch(
            self.url(path, api_version), json=body, timeout=30, verify=self.ca_path, **kwargs
        )

    def delete(self, path: str, api_version: str = NETWORK_API, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.url(path, api_version), timeout=30, verify=self.ca_path, **kwargs)

    def absolute(self, url: str) -> requests.Response:
        return self.session.get(url, timeout=30, verify=self.ca_path)


@pytest.fixture
def raw(arm: Emulator) -> Iterator[RawArm]:
    client = RawArm(arm)
    yield client
    client.session.close()


@dataclass
class Delivery:
    headers: dict[str, str]
    events: list[dict[str, Any]]


@dataclass
class WebhookReceiver:
    url: str = ""
    deliveries: list[Delivery] = field(default_factory=list)
    fail_first: int = 0  # answer 500 to this many deliveries first (retry tests)
    # answers for the next POSTs, in order: an HTTP status, or a float = stall that many seconds, then 200
    script: list[int | float] = field(default_factory=list)
    attempts: list[tuple[int, str]] = field(default_factory=list)  # (status, event id) per POST; 0 = stalled
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def events(self) -> list[dict[str, Any]]:
        with self.lock:
            return [event for delivery in self.deliveries for event in delivery.events]


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            events = json.loads(body)
            with receiver.lock:
                answer: int | float = receiver.script.pop(0) if receiver.script else 200
                if receiver.fail_first > 0:
                    receiver.fail_first -= 1
                    answer = 500
                status = 200 if isinstance(answer, float) else answer
                receiver.attempts.append((0 if isinstance(answer, float) else status, events[0]["id"]))
            if isinstance(answer, float):
                time.sleep(answer)  # the sender gives up before this ends: not a delivery
                status = 200
            elif status == 200:
                with receiver.lock:
                    receiver.deliveries.append(
                        Delivery({k.lower(): v for k, v in self.headers.items()}, events)
                    )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/api/events"
    yield receiver
    server.shutdown()
    server.server_close()
