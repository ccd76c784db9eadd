"""Child processes of the local stack: die with their parent, and tell when they are ready."""

from __future__ import annotations

import ctypes
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """`preexec_fn` for a child: Linux sends it SIGTERM when the parent dies, even by kill -9."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass  # not Linux: the normal shutdown path still stops the children


def wait_for_line(log_path: Path, process: subprocess.Popen[bytes], pattern: re.Pattern[str],
                  timeout: float) -> re.Match[str]:
    """The first match of `pattern` in a child's log, waiting for it to appear."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace") if log_path.exists() else ""
        found = pattern.search(text)
        if found:
            return found
        if process.poll() is not None:
            raise RuntimeError(
                f"{log_path.stem} process exited with {process.returncode}; see {log_path}:\n{text[-2000:]}")
        time.sleep(0.05)
    raise RuntimeError(f"no {pattern.pattern!r} in {log_path} after {timeout:.0f}s")


def stop_process(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
