"""How long one VM create + delete takes through the real Compute SDK, by how the client polls (issue 20).

Prints figures (no pass/fail):

    python -m bench.vm_lro [--profile azure] [--operation-seconds 5]

The emulator runs in this process with the chosen profile (`azure`: Compute's Retry-After as Azure sends
it, see docs/emulator.md; 5 s operations). One VM is created (on a NIC made beforehand) and deleted, each
`.result()` waited on, for three clients:
  sdk-default   the SDK's own polling: Retry-After, else its 30 s default polling_interval;
  settings      poolsync's client (POOLSYNC_ARM_POLLING_INTERVAL, 5 s) with the SDK's polling;
  lro_polling   poolsync's client with `ArmSettings.lro_polling()` (Retry-After capped at
                POOLSYNC_LRO_POLL_CAP, 2 s): what the devstack fleet, demo and self-check use.
For each: wall time of the create and of the delete, and the waits the SDK chose between polls.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from typing import Any

from azure.core.pipeline.transport import RequestsTransport

from emulator.app import Emulator
from shared import settings as declared
from shared.azure.clients import ArmSettings, compute_client

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
GROUP = "rg-bench"
TOPOLOGY = {
    "defaults": {"subscription": SUBSCRIPTION, "resource_group": GROUP, "location": "westeurope"},
    "virtual_networks": [{"name": "vnet", "subnets": [{"name": "snet", "prefix": "10.0.0.0/24"}]}],
    "network_interfaces": [{"count": 3, "name": "vm-{i}-nic", "subnet": "vnet/snet"}],
}
SDK_DEFAULT_POLLING_INTERVAL = 30.0  # azure-mgmt-compute's configuration default


class WaitRecorder(RequestsTransport):
    """The SDK's own transport, noting every wait the poller asks of it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.waits: list[float] = []

    def sleep(self, duration: float) -> None:
        self.waits.append(duration)
        super().sleep(duration)


@dataclass
class Case:
    name: str
    polling_interval: float
    capped: bool


CASES = (
    Case("sdk-default", SDK_DEFAULT_POLLING_INTERVAL, capped=False),
    Case("settings", float(declared.ARM_POLLING_INTERVAL.default), capped=False),
    Case("lro_polling", float(declared.ARM_POLLING_INTERVAL.default), capped=True),
)


def run_case(arm: Emulator, case: Case, index: int) -> str:
    settings = ArmSettings(endpoint=arm.url, ca_bundle=arm.ca_path, static_token="bench",
                           polling_interval=case.polling_interval)
    recorder = WaitRecorder(connection_verify=arm.ca_path)
    compute = compute_client(settings, SUBSCRIPTION, transport=recorder)
    name = f"vm-{index}"
    nic = (f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{GROUP}/providers/Microsoft.Network"
           f"/networkInterfaces/{name}-nic")
    body: Any = {"location": "westeurope", "properties": {
        "hardwareProfile": {"vmSize": "Standard_B1s"},
        "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"primary": True}}]}}}
    polling: dict[str, Any] = {"polling": settings.lro_polling()} if case.capped else {}
    started = time.monotonic()
    compute.virtual_machines.begin_create_or_update(GROUP, name, body, **polling).result()
    created = time.monotonic()
    create_waits = list(recorder.waits)
    polling = {"polling": settings.lro_polling()} if case.capped else {}
    compute.virtual_machines.begin_delete(GROUP, name, **polling).result()
    deleted = time.monotonic()
    delete_waits = recorder.waits[len(create_waits):]
    return (f"| {case.name} | {created - started:.1f} s | {deleted - created:.1f} s | "
            f"{deleted - started:.1f} s | {_waits(create_waits)} | {_waits(delete_waits)} |")


def _waits(waits: list[float]) -> str:
    return ", ".join(f"{w:g}" for w in waits) or "none"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.vm_lro", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=["default", "azure"], default="azure")
    parser.add_argument("--operation-seconds", type=float, default=None,
                        help="duration of each long-running operation (profile default: azure 5 s)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-vm-lro-") as state, \
            Emulator(state_dir=state, profile=args.profile, topology=TOPOLOGY,
                     operation_seconds=args.operation_seconds) as arm:
        print(f"profile {args.profile}, {arm.operation_seconds:g} s operations, "
              f"Retry-After {arm.lro_retry_after.describe() or 'none'}")
        print("| client | create | delete | create + delete | waits while creating (s) | "
              "waits while deleting (s) |")
        print("| --- | --- | --- | --- | --- | --- |")
        for index, case in enumerate(CASES, start=1):
            print(run_case(arm, case, index), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
