"""checkov in its own virtualenv, created on first use.

checkov pins packaging<24 while pytest 9 needs packaging>=24, so it cannot live in the project venv. The
tool venv is keyed by the hash of tests/infra/checkov-requirements.txt (bumping the pin rebuilds it) and
lives under the user cache directory, outside the repository. POOLSYNC_CHECKOV=/path/to/checkov uses an
existing binary instead.

    python -m tests.infra.checkov_tool            # create if needed, print the checkov path
    python -m tests.infra.checkov_tool --run      # and scan infra/ (human-readable output)
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

from tests.infra.bicep_tree import INFRA_DIR

REQUIREMENTS = Path(__file__).with_name("checkov-requirements.txt")
INSTALL_TIMEOUT_S = 1200  # a cold install on a loaded 2-core machine


def tool_dir() -> Path:
    cache_root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    return cache_root / "poolsync-tools" / f"checkov-{digest}"


def ensure_checkov() -> Path:
    """Path of a working checkov executable, installing it into the tool venv if needed."""
    override = os.environ.get("POOLSYNC_CHECKOV")
    if override:
        return Path(override)
    target = tool_dir()
    executable = target / "bin" / "checkov"
    ready_marker = target / "poolsync-ready"  # written last: a half-built venv never looks ready
    if ready_marker.exists():
        return executable
    target.parent.mkdir(parents=True, exist_ok=True)
    # Two test runs may race to build it: one builds under the lock, the other then finds it ready.
    with open(target.parent / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready_marker.exists():
            return executable
        venv.EnvBuilder(with_pip=True, clear=True).create(target)
        subprocess.run(
            [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "-r", str(REQUIREMENTS)],
            check=True,
            timeout=INSTALL_TIMEOUT_S,
        )
        ready_marker.write_text(REQUIREMENTS.read_text())
    return executable


def extension_files(directory: Path = INFRA_DIR) -> list[Path]:
    """Bicep files that declare an `extension` (Microsoft Graph): checkov's Bicep parser predates the keyword
    and fails on them, and it has no checks for Microsoft.Graph types, so they are left out of the scan."""
    return sorted(p for p in directory.rglob("*.bicep")
                  if any(line.startswith("extension ") for line in p.read_text().splitlines()))


def scan_infra(checkov: Path, directory: Path = INFRA_DIR) -> dict[str, Any]:
    """checkov's JSON report for the Bicep files under `directory` (offline: no policy download)."""
    skipped = [arg for path in extension_files(directory) for arg in ("--skip-path", path.name)]
    completed = subprocess.run(
        [
            str(checkov),
            "--directory",
            str(directory),
            "--framework",
            "bicep",
            "--output",
            "json",
            "--skip-download",
            "--compact",
            *skipped,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    # Exit code 1 only means "some check failed"; the report says which, so the JSON is the verdict.
    if completed.returncode not in (0, 1):
        raise RuntimeError(f"checkov exited {completed.returncode}: {completed.stderr[-2000:]}")
    report = json.loads(completed.stdout)
    return report[0] if isinstance(report, list) else report


if __name__ == "__main__":
    checkov_path = ensure_checkov()
    print(checkov_path)
    if "--run" in sys.argv[1:]:
        command = [str(checkov_path), "-d", str(INFRA_DIR), "--framework", "bicep", "--skip-download"]
        sys.exit(subprocess.call(command))
