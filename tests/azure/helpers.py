"""Building poolsync's I/O objects against the test emulator."""

from __future__ import annotations

import ipaddress
from typing import Any

from shared.azure.clients import ArmSettings, AzureClients
from shared.azure.pool_writer import PoolWriter
from shared.azure.retry import RetrySettings, RetryStats
from shared.core.models import DesiredAddress, PoolSnapshot
from shared.core.naming import address_name
from shared.core.plan import GuardSettings, PoolPlan, plan
from tests.fixtures.arm import ids

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
