"""`make run` writes the settings it started with and prints the one command that points the CLI at them."""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

from devstack.stack import LocalStack
from tests.cli.conftest import REPO


def test_the_printed_command_reaches_the_local_stack(tmp_path: Path) -> None:
    with LocalStack(state_dir=tmp_path / "state", host_port=0) as stack:
        command = stack.cli_command()
        assert command in stack.banner()
        assert (tmp_path / "state" / "local.settings.json").exists()
        env = {key: value for key, value in os.environ.items()
               if not key.startswith(("POOLSYNC_", "AzureWebJobs", "AZURE_"))}
        done = subprocess.run(shlex.split(command), cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].split()[:3] == ["POOL", "SOURCE", "EXISTS"]
    assert "yes" in done.stdout.splitlines()[1]  # the sample topology's pools exist
    assert "no storage" not in done.stderr
