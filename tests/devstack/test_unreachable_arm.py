"""An unreachable Resource Manager, end to end on the local stack (Azurite, the Functions host, the API over
HTTP; the runtime pointed at a closed port, or at a server that accepts connections and never answers):
a refused connection fails with its own message after a few attempts, and the anonymous health probe
answers whatever ARM does. Test timeouts are generous bounds; the figures are in bench-style prints."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.stack import SAMPLE_RULES, LocalStack
from shared.api.health import HEALTH_CACHE
from tests.fixtures.ports import refused_port

REPO = Path(__file__).resolve().parents[2]
@pytest.fixture(autouse=True)
def fresh_health_answer() -> Iterator[None]:
    HEALTH_CACHE.clear()  # one process runs several stacks: no answer about another stack's ARM
    yield
    HEALTH_CACHE.clear()


REFUSED_MESSAGE = "Azure Resource Manager unreachable at https://127.0.0.1:{port}: connection refused"


def call(stack: LocalStack, route: str, *, key: bool = True) -> tuple[int, dict[str, Any], float]:
    assert stack.host is not None
    headers = {"x-functions-key": stack.host.master_key} if key else {}
    request = urllib.request.Request(stack.host.http_url(route), headers=headers)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, body = response.status, json.load(response)
    except urllib.error.HTTPError as error:
        status, body = error.code, json.load(error)
    return status, body, time.monotonic() - started


@pytest.fixture
def silent_arm() -> Iterator[str]:
    """A TCP endpoint that accepts every connection and never sends a byte."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    for connection in held:
        connection.close()
    server.close()


def test_a_refused_connection_is_named_and_fails_fast_over_http(tmp_path: Path) -> None:
    with refused_port() as port, LocalStack(
            state_dir=tmp_path / "state", extra_settings={"POOLSYNC_ARM_ENDPOINT": f"https://127.0.0.1:{port}"}
    ) as stack:
        status, body, pools_seconds = call(stack, "pools")
        assert status == 503, body
        assert body["error"]["code"] == "AzureUnreachable"
        assert body["error"]["message"] == REFUSED_MESSAGE.format(port=port)
        assert "busy or throttling" not in json.dumps(body)

        status, health, health_seconds = call(stack, "health", key=False)
        assert status == 503
        assert (health["configLoaded"], health["azureReachable"], health["detail"]) == (
            True, False, "azure:unreachable")
    print(f"\nrefused: /api/pools {pools_seconds:.2f} s, /api/health {health_seconds:.2f} s")


def test_the_cli_names_a_refused_connection(tmp_path: Path) -> None:
    rules = SAMPLE_RULES
    env = {key: value for key, value in os.environ.items() if not key.startswith("POOLSYNC_")}
    with refused_port() as port:
        env.update(POOLSYNC_ARM_ENDPOINT=f"https://127.0.0.1:{port}", POOLSYNC_ARM_STATIC_TOKEN="local",
                   POOLSYNC_RULES_FILE=str(rules), POOLSYNC_RETRY_BASE_BACKOFF="0.1")
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "cli", "pools"], cwd=REPO, env=env, capture_output=True,
                              text=True, timeout=120)
    seconds = time.monotonic() - started
    assert done.returncode != 0
    assert REFUSED_MESSAGE.format(port=port) in done.stderr + done.stdout
    assert "busy or throttling" not in done.stderr + done.stdout
    retries = re.findall(r"poolsync\.retry ", done.stderr)
    assert len(retries) <= 4 * 2, done.stderr  # a few attempts per call, not dozens
    print(f"\nrefused: poolsync pools {seconds:.2f} s, {len(retries)} retry lines")


def test_health_answers_while_arm_hangs(tmp_path: Path, silent_arm: str) -> None:
    hanging = {"POOLSYNC_ARM_ENDPOINT": silent_arm}
    with LocalStack(state_dir=tmp_path / "state", extra_settings=hanging) as stack:
        status, health, first = call(stack, "health", key=False)
        assert status == 503
        assert (health["azureReachable"], health["detail"]) == (False, "azure:timeout")
        # Probes meanwhile share that answer (cached) instead of queueing behind ARM.
        status, again, second = call(stack, "health", key=False)
        assert (status, again["detail"]) == (503, "azure:timeout")
    print(f"\nhanging: /api/health {first:.2f} s, then {second:.2f} s")
