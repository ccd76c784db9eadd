"""README's CLI session runs as written against the local stack `make run` starts (in a scratch folder, with
that run's settings file), every command exiting 0."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from devstack.stack import LocalStack
from tests.cli.conftest import REPO

SETTINGS = ".devstack/local.settings.json"
POOLSYNC = ".venv/bin/poolsync"


def readme_session() -> str:
    readme = (REPO / "README.md").read_text()
    found = re.search(r"```bash\n(S=\"--settings \.devstack/local\.settings\.json\"\n.*?)```", readme, re.S)
    assert found, "README has no CLI session block"
    return found.group(1)


def test_the_readme_cli_session_runs_as_written(tmp_path: Path) -> None:
    session = readme_session()
    with LocalStack(state_dir=tmp_path / "state", host_port=0) as stack:
        script = session.replace(SETTINGS, str(stack.settings_file)).replace(POOLSYNC, str(REPO / POOLSYNC))
        env = {**{key: value for key, value in os.environ.items()
                  if not key.startswith(("POOLSYNC_", "AzureWebJobs", "AZURE_"))}, "BROWSER": "true"}
        done = subprocess.run(["bash", "-e", "-x", "-c", script], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "legacy-api-3\t10.10.9.42" in done.stdout  # added from the file; legacy-api-2 removed again
    assert "legacy-api-2\t" not in done.stdout
    assert re.search(r"lb-sample/pool-web: (written|unchanged)", done.stdout)
    assert list((tmp_path / "reports").glob("*.html"))
    assert "opened " in done.stdout
