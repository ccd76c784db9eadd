"""`Emulator`: the emulated Azure (`Cloud`) behind an HTTPS server with a throw-away CA."""

from __future__ import annotations

import ssl
import threading
from pathlib import Path
from typing import Any

import trustme

from emulator.admin import AdminApi
from emulator.cloud import Cloud
from emulator.frontdoor import FrontDoor
from emulator.server import ArmHttpServer

HOST = "127.0.0.1"


class Emulator(Cloud):
    def __init__(self, state_dir: str | Path, port: int = 0, **options: Any) -> None:
        """`options`: those of `Cloud` (topology, operation_seconds, lro_retry_after, page_size,
        event_webhook, read_limit, write_limit, profile)."""
        super().__init__(**options)
        self.state_dir = Path(state_dir)
        self.port = port
        self.admin = AdminApi(self)
        self.front_door = FrontDoor(self, self.admin)
        self._server: ArmHttpServer | None = None
        self._thread: threading.Thread | None = None
        self.ca_path = str(self.state_dir / "ca.pem")

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("emulator not started")
        return f"https://{HOST}:{self._server.server_address[1]}"

    def start(self) -> Emulator:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        ca = trustme.CA()
        ca.cert_pem.write_to_path(self.ca_path)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert(HOST, "localhost").configure_cert(context)
        self._server = ArmHttpServer((HOST, self.port), context, self.front_door)
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="emulator-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        super().stop()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
