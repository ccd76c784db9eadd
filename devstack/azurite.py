"""Start and stop Azurite (the npm package pinned in package.json) on free ports.

Used by the test fixture and by `make run`. Azurite's well-known development
account and key are public constants, not secrets.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devstack.process import die_with_parent, stop_process, wait_for_line
from shared.settings import child_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def listening(service: str) -> re.Pattern[str]:
    """Azurite's start-up line naming the port a service listens on (printed even with --silent)."""
    return re.compile(rf"Azurite {service} service is successfully listening at http://127\.0\.0\.1:(\d+)")


class AzuriteNotInstalled(RuntimeError):
    pass


def azurite_binary() -> str:
    local = REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if local.exists():
        return str(local)
    found = shutil.which("azurite")
    if found:
        return found
    raise AzuriteNotInstalled("azurite not found: run `npm ci` in the repository root (make test does)")


@dataclass
class Azurite:
    location: Path
    blob_port: int = 0
    queue_port: int = 0
    table_port: int = 0
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout: float = 60.0) -> Azurite:
        """Start on ports the kernel picks (no probing, so parallel test workers never race for one) and
        read them from Azurite's start-up lines."""
        self.location.mkdir(parents=True, exist_ok=True)
        log_path = self.location / "azurite.log"
        with open(log_path, "wb") as log:  # this run's lines only: the ports are read from it
            self.process = subprocess.Popen(
                [
                    azurite_binary(),
                    "--silent",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--location", str(self.location),
                    "--blobHost", "127.0.0.1", "--blobPort", "0",
                    "--queueHost", "127.0.0.1", "--queuePort", "0",
                    "--tableHost", "127.0.0.1", "--tablePort", "0",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # no orphaned Azurite when `make run` is killed
                env=child_environment(AZURITE_ACCOUNTS=""),  # its dev account, whatever the shell set
            )
        try:
            self.blob_port, self.queue_port, self.table_port = (
                int(wait_for_line(log_path, self.process, listening(service), timeout)[1])
                for service in ("Blob", "Queue", "Table"))
        except RuntimeError:
            self.stop()
            raise
        return self

    @property
    def connection_string(self) -> str:
        host = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={DEV_ACCOUNT};AccountKey={DEV_KEY};"
            f"BlobEndpoint={host}:{self.blob_port}/{DEV_ACCOUNT};"
            f"QueueEndpoint={host}:{self.queue_port}/{DEV_ACCOUNT};"
            f"TableEndpoint={host}:{self.table_port}/{DEV_ACCOUNT};"
        )

    def stop(self) -> None:
        if self.process is None:
            return
        stop_process(self.process)
        self.process = None
