"""`make run` (python -m devstack) as a user runs it: a separate process that starts Azurite, the ARM
emulator and the local Functions host, prints where they listen, serves until Ctrl-C, and takes its
children down with it. `--check` sends one request of each kind and reports through its exit code."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 180  # a cold start on a loaded 2-core machine imports the Azure SDK twice


def devstack(state_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "devstack", "--port", "0", "--state-dir", str(state_dir), *args],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def read_until(process: subprocess.Popen[str], marker: str, timeout: float) -> str:
    """Output up to and including the line containing `marker` (the banner is printed in one go)."""
    assert process.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    process.kill()
    raise AssertionError(f"no {marker!r} within {timeout}s; output so far:\n{''.join(seen)}")


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_check_mode_self_tests_every_kind_of_request(tmp_path: Path) -> None:
    process = devstack(tmp_path / "state", "--check")
    output, _ = process.communicate(timeout=START_TIMEOUT + 120)
    assert process.returncode == 0, output
    assert "self-check passed" in output
    for check in ("http", "event grid handshake", "emulator events", "timer"):
        assert re.search(rf"\[ok\] {check}", output), output
    assert "[FAIL]" not in output


@pytest.mark.slow
def test_run_prints_where_everything_listens_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process = devstack(tmp_path / "state")
    try:
        banner = read_until(process, "Ctrl-C stops everything", START_TIMEOUT)
        host_url = re.search(r"Functions host\s+(http://127\.0\.0\.1:\d+)", banner)[1]  # type: ignore[index]
        key = re.search(r"function key: (\S+)\)", banner)[1]  # type: ignore[index]
        arm_port = int(re.search(r"ARM emulator\s+https://127\.0\.0\.1:(\d+)", banner)[1])  # type: ignore[index]
        blob_port = int(re.search(r"blob :(\d+)", banner)[1])  # type: ignore[index]
        assert "/runtime/webhooks/eventgrid?functionName=" in banner
        assert re.search(r"curl .*x-functions-key: " + re.escape(key), banner)

        request = urllib.request.Request(f"{host_url}/admin/host/status", headers={"x-functions-key": key})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        assert accepts_connections(arm_port) and accepts_connections(blob_port)

        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
        assert process.returncode == 0
        assert not accepts_connections(arm_port)
        assert not accepts_connections(blob_port)
        assert not accepts_connections(int(host_url.rsplit(":", 1)[1]))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)


@pytest.mark.slow
def test_demo_tour_passes_every_step_and_leaves_an_html_report(tmp_path: Path) -> None:
    process = subprocess.run(
        [sys.executable, "-m", "devstack.demo", "--state-dir", str(tmp_path / "demo")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=START_TIMEOUT + 600,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    output = process.stdout + process.stderr
    assert process.returncode == 0, output
    assert "demo passed: 7/7 steps as expected" in output
    assert "FAILED" not in output
    report = Path(re.search(r"HTML report: (\S+\.html)", output)[1])  # type: ignore[index]
    assert report.is_file() and "<html" in report.read_text().lower()
    assert re.search(r"pool-web .*\[#+\] 100%\s+in sync", output), "the live table showed the pools in sync"


def test_help_says_the_whole_description() -> None:
    shown = subprocess.run([sys.executable, "-m", "devstack", "--help"], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    description = " ".join(shown.stdout.split("options:")[0].split("\n", 2)[-1].split())
    assert "serve until Ctrl-C." in description
    assert description.endswith("exits 0 only if all passed.")
