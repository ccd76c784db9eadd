"""HTTPS plumbing: HTTP/1.1 keep-alive, auth, throttling, fault injection, admin endpoints.

The request pipeline mirrors ARM's front door: authentication, then subscription
lookup and throttling, then the resource provider (`api.ArmApi`). Injected faults act
before the provider so they can stand in for any of those layers.
"""

from __future__ import annotations

import json
import logging
import socket
import ssl
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from emulator import faults as fault_kinds
from emulator import routing
from emulator.api import Reply, Request
from emulator.errors import ArmError
from emulator.principals import bearer_token, client_of, principal_of
from emulator.rbac import guarded_scope
from emulator.throttling import operation_kind

if TYPE_CHECKING:
    from emulator.app import Emulator

ADMIN_PREFIX = "/_emulator"
logger = logging.getLogger("emulator")


class ArmHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, emulator: Emulator) -> None:
        super().__init__(address, ArmRequestHandler)
        self.emulator = emulator
        # The TLS handshake runs in the request thread, so a slow client cannot stall accept().
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients dropping connections (SDK timeouts, injected resets) are routine here.
        pass


class ArmRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: ArmHttpServer
    server_version = "ArmEmulator/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    # ----------------------------------------------------------------
    def _serve(self) -> None:
        emulator = self.server.emulator
        split = urlsplit(self.path)
        path = split.path
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        if path.startswith(ADMIN_PREFIX):
            self._reply(emulator.admin.handle(self.command, path[len(ADMIN_PREFIX) :], query, body))
            return
        resource_type = routing.resource_type_label(path)
        emulator.stats.request(self.command, resource_type)
        extra: dict[str, str] = {}
        try:
            token = self._authenticate(headers)
            principal = principal_of(token)
            fault = emulator.faults.pick(self.command, path, resource_type)
            fail_lro = False
            if fault is not None:
                emulator.stats.fault(fault.kind)
                if fault.kind == fault_kinds.RESET:
                    self._reset_connection()
                    return
                if fault.kind == fault_kinds.SLOW:
                    time.sleep(fault.delay)
                elif fault.kind == fault_kinds.LRO_FAILED:
                    fail_lro = self.command in ("PUT", "DELETE")
                else:
                    raise fault.error()
            route = routing.parse(path)
            if not emulator.world.has_subscription(route.subscription):
                raise ArmError(
                    404,
                    "SubscriptionNotFound",
                    f"The subscription '{route.subscription}' could not be found.",
                )
            emulator.stats.arm_call(principal, operation_kind(self.command))
            extra = emulator.throttle.charge(
                route.subscription,
                is_write=self.command != "GET",
                principal=principal,
                method=self.command,
                namespace=route.namespace,
            )
            scope = guarded_scope(route.action, route.resource_id)
            if scope is not None:
                emulator.rbac.check(principal, client_of(token)[0], self.command, route.full_type, scope)
            request = Request(
                self.command,
                route,
                path,
                query,
                headers,
                body,
                emulator.url,
                fail_lro=fail_lro,
                principal=principal,
            )
            reply = emulator.api.handle(request)
        except ArmError as error:
            emulator.stats.rejection(error.status, error.code)
            extra = {**extra, **error.headers}
            reply = Reply(error.status, error.body())
        except Exception as bug:  # an emulator defect: answer 500 like ARM rather than drop the connection
            logger.exception("unhandled error serving %s %s", self.command, path)
            emulator.stats.rejection(500, "InternalServerError")
            message = f"Emulator error: {bug!r}"
            reply = Reply(500, {"error": {"code": "InternalServerError", "message": message}})
        reply.headers = {**extra, **reply.headers}
        self._reply(reply)

    def _authenticate(self, headers: dict[str, str]) -> str:
        """The caller's bearer token, or the 401 ARM answers."""
        value = headers.get("authorization")
        if value is None:
            raise ArmError(
                401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
            )
        token = bearer_token(value)
        if not token:
            raise ArmError(
                401, "InvalidAuthenticationToken", "The access token is invalid: expected a Bearer token."
            )
        return token

    def _reset_connection(self) -> None:
        self.close_connection = True
        try:
            # RST instead of FIN: the client sees "connection reset by peer", as with a dropped LB flow.
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.connection.close()
        except OSError:
            pass

    def _reply(self, reply: Reply) -> None:
        payload = b"" if reply.body is None else json.dumps(reply.body).encode()
        request_id = str(uuid.uuid4())
        self.send_response(reply.status)
        if reply.body is not None:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache")
        self.send_header("x-ms-request-id", request_id)
        self.send_header(
            "x-ms-correlation-request-id", self.headers.get("x-ms-client-request-id") or request_id
        )
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)
