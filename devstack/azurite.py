"""Start and stop Azurite (the npm package pinned in package.json) on free ports.

Used by the test fixture and by `make run`. Azurite's well-known development
account and key are public constants, not secrets.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from devstack.ports import free_port, wait_for_port
from devstack.process import die_with_parent, stop_process
from shared.settings import child_environment

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_ACCOUNT = "devstoreaccount1"
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


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

    def start(self, attempts: int = 3) -> Azurite:
        self.location.mkdir(parents=True, exist_ok=True)
        for _ in range(attempts):  # a free port can be taken between probing and binding
            self.blob_port, self.queue_port, self.table_port = free_port(), free_port(), free_port()
            log = open(self.location / "azurite.log", "ab")  # noqa: SIM115 - owned by the child process
            self.process = subprocess.Popen(
                [
                    azurite_binary(),
                    "--silent",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--loose",
                    "--location", str(self.location),
                    "--blobHost", "127.0.0.1", "--blobPort", str(self.blob_port),
                    "--queueHost", "127.0.0.1", "--queuePort", str(self.queue_port),
                    "--tableHost", "127.0.0.1", "--tablePort", str(self.table_port),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent,  # no orphaned Azurite when `make run` is killed
                env=child_environment(AZURITE_ACCOUNTS=""),  # its dev account, whatever the shell set
            )
            ready = all(wait_for_port(p, 30) for p in (self.blob_port, self.queue_port, self.table_port))
            if ready and self.process.poll() is None:
                return self
            self.stop()
        raise RuntimeError(f"Azurite did not start; see {self.location / 'azurite.log'}")

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
