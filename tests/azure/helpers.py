"""Building poolsync's I/O objects against the test emulator."""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import BlobLeaseClient

from shared.azure.clients import ArmSettings, AzureClients
from shared.azure.pool_writer import PoolWriter
from shared.azure.retry import RetrySettings, RetryStats
from shared.core.guard import GuardSettings
from shared.core.models import DesiredAddress, PoolSnapshot
from shared.core.naming import address_name
from shared.core.plan import PoolPlan, plan
from tests.fixtures.arm import SUBSCRIPTION, ids

# Fast but patient: tests inject many faults, and a loaded CI machine is slow.
TEST_RETRY = RetrySettings(deadline_seconds=600, max_attempts=1000, base_backoff=0.02, max_backoff=0.5,
                           retry_after_cap=0.2)


def make_writer(settings: ArmSettings, stats: RetryStats | None = None, **guard: Any) -> PoolWriter:
    return PoolWriter(AzureClients(settings), GuardSettings(**guard), TEST_RETRY, stats or RetryStats())


def desired_address(index: int, pool_vnet: str | None = None) -> DesiredAddress:
    """A managed address for a made-up NIC number `index` in 10.0.0.0/16."""
    nic_id = ids.nic(f"nic-{index}")
    ip = str(ipaddress.ip_address("10.0.1.0") + index)
    return DesiredAddress(address_name(nic_id, "ipconfig1"), ip, pool_vnet or ids.vnet(), nic_id, "ipconfig1",
                          ids.vm(f"vm-{index}"))


def add_one(address: DesiredAddress):  # type: ignore[no-untyped-def]
    """A plan maker that adds one managed address and leaves everything else alone."""

    def make(snapshot: PoolSnapshot) -> PoolPlan:
        return plan(snapshot, {address.name: address}, scope=lambda name: name == address.name.lower())

    return make


class PauseBeforePut:
    """Freezes a writer right before its first pool PUT (after its lease proof) until `resume`: a GC pause
    or a VM freeze. With `freeze_renewals` the lease renewals running at that moment stop too (the whole
    process is frozen), so its leases expire as they would."""

    def __init__(self, writer: PoolWriter, monkeypatch: pytest.MonkeyPatch, *, freeze_renewals: bool = False,
                 ) -> None:
        self.paused, self.resume = threading.Event(), threading.Event()
        frozen: set[threading.Thread] = set()
        operations = writer.clients.network(SUBSCRIPTION).load_balancer_backend_address_pools
        put = operations.begin_create_or_update

        def frozen_once(*args: Any, **kwargs: Any) -> Any:
            if not self.paused.is_set():
                if freeze_renewals:
                    frozen.update(t for t in threading.enumerate() if t.name == "poolsync-lease-renew")
                self.paused.set()
                assert self.resume.wait(120)
            return put(*args, **kwargs)

        monkeypatch.setattr(operations, "begin_create_or_update", frozen_once)
        if freeze_renewals:
            renew = BlobLeaseClient.renew

            def renew_unless_frozen(lease: BlobLeaseClient, *args: Any, **kwargs: Any) -> Any:
                if threading.current_thread() in frozen:
                    self.resume.wait(120)
                return renew(lease, *args, **kwargs)

            monkeypatch.setattr(BlobLeaseClient, "renew", renew_unless_frozen)


class InThread:
    """Run a call in a thread; keep what it returned or raised."""

    def __init__(self, call: Callable[[], Any]) -> None:
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = call()
            except BaseException as error:  # looked at by the test
                self.error = error

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def join(self, timeout: float = 120) -> None:
        self.thread.join(timeout)
        assert not self.thread.is_alive()
