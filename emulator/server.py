"""HTTPS plumbing: HTTP/1.1 keep-alive, bytes in and out; every request goes to the
`FrontDoor` (auth, faults, throttling, admin endpoints, the resource provider)."""

from __future__ import annotations

import json
import socket
import ssl
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from emulator.api import Reply
from emulator.frontdoor import RESET_CONNECTION, FrontDoor


class ArmHttpServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext, front_door: FrontDoor) -> None:
        super().__init__(address, ArmRequestHandler)
        self.front_door = front_door
        self.base_url = f"https://{address[0]}:{self.server_address[1]}"
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
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        reply = self.server.front_door.serve(
            self.command, split.path, query, headers, body, self.server.base_url
        )
        if reply is RESET_CONNECTION:
            self._reset_connection()
            return
        self._reply(reply)

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
