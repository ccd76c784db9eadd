"""Fixtures for the CLI tests: the emulator seeded with the HTTP API's topology, a local.settings.json
aimed at it and at Azurite, and `poolsync` run as a separate process (`python -m cli`, what the console
script calls)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator
from tests.api.helpers import http_topology, runtime_env

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


Poolsync = Callable[..., Run]


@pytest.fixture
def settings_file(
    arm: Emulator, storage_connection_string: str, unique_name: str, tmp_path: Path
) -> Path:
    arm.reset(http_topology())
    values = runtime_env(arm.url, arm.ca_path, storage_connection_string,
                         POOLSYNC_RECONCILE_TABLE=unique_name, POOLSYNC_DRAIN_TABLE=unique_name + "drains",
                         POOLSYNC_REMOVALS_TABLE=unique_name + "removals")
    path = tmp_path / "local.settings.json"
    path.write_text(json.dumps({"IsEncrypted": False, "Values": values}))
    return path


@pytest.fixture
def poolsync(settings_file: Path) -> Poolsync:
    """Run `poolsync --settings <file> ARGS...` in a clean environment (no POOLSYNC_* from the test run)."""

    def run(*args: str, settings: Path | None = settings_file, timeout: float = 120,
            env: dict[str, str] | None = None) -> Run:
        env = {**{key: value for key, value in os.environ.items()
                  if not key.startswith(("POOLSYNC_", "AzureWebJobs", "AZURE_"))}, **(env or {})}
        command = [sys.executable, "-m", "cli", *(["--settings", str(settings)] if settings else []), *args]
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        return Run(done.returncode, done.stdout, done.stderr)

    return run
