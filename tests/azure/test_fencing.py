"""Fencing writers that paused between their lease proof and their PUT (emulator over HTTPS + Azurite).

A writer records the pool on the lease's blob as it proves its lease; the next holder writes every pool
still recorded back unchanged, so a PUT prepared under the older lease carries a stale If-Match."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from shared.azure.clients import ArmSettings, AzureClients
from shared.azure.pool_writer import PoolNotFenced, PoolWriter
from shared.azure.retry import RetrySettings, RetryStats
from shared.core.guard import GuardSettings
from shared.storage.intents import FlushLocks, LeaseLost
from tests.azure.helpers import TEST_RETRY, InThread, PauseBeforePut, add_one, desired_address
from tests.fixtures.arm import ids, topology
from tests.storage import helpers

pytestmark = pytest.mark.timeout(240)

LB_ID = ids.lb()
POOL_ID = ids.pool()


@pytest.fixture
def container(storage_connection_string: str, unique_name: str) -> ContainerClient:
    return helpers.locks_container(storage_connection_string, unique_name)


@pytest.fixture
def new_writer(arm: Any, arm_settings: ArmSettings, container: ContainerClient) -> Callable[..., PoolWriter]:
    """A writer as on another instance: its own ARM clients, the shared lease container."""
    arm.reset(topology())

    def make(retry: RetrySettings = TEST_RETRY) -> PoolWriter:
        return PoolWriter(AzureClients(arm_settings), GuardSettings(), retry, RetryStats(),
                          locks=FlushLocks(container, lease_seconds=15))

    return make


def fenced_lines(caplog: pytest.LogCaptureFixture, event: str = "pool_fenced") -> list[dict[str, Any]]:
    return [json.loads(r.getMessage().split(" ", 1)[1]) for r in caplog.records
            if getattr(r, "poolsync_event", None) == event]


def pool_ips(arm: Any) -> set[str]:
    return set(arm.world.pool_address_ips(POOL_ID))


def test_a_paused_writer_put_fails_after_a_takeover_chain(arm, new_writer, container, monkeypatch, caplog):
    """P1 proves its lease and freezes; P2 takes the lease over and fences; P3 takes it over cleanly, at no
    ARM cost; P1 wakes: its PUT meets a stale ETag, its retry fails the proof. Nothing of P1's lands."""
    caplog.set_level("INFO", logger="poolsync")
    first = new_writer()
    pause = PauseBeforePut(first, monkeypatch)  # its renewals go on: the lease is ended below
    late = desired_address(1)
    p1 = InThread(lambda: first.apply(POOL_ID, add_one(late)))
    assert pause.paused.wait(60)
    assert helpers.recorded(container, LB_ID) == [POOL_ID]  # the proof recorded the write it is about to make
    helpers.expire(container, LB_ID)

    before_fence = arm.stats.requests()
    with new_writer().lb_lease(LB_ID):  # P2: finds P1's write unfinished, writes the pool back unchanged
        pass
    assert arm.stats.pool_writes(POOL_ID) == 1
    assert [line["pool"] for line in fenced_lines(caplog)] == [POOL_ID]
    assert helpers.recorded(container, LB_ID) == []
    after_fence = arm.stats.requests()
    with new_writer().lb_lease(LB_ID):  # P3: a clean hand-over
        pass
    assert arm.stats.requests() == after_fence > before_fence

    pause.resume.set()
    p1.join()
    assert isinstance(p1.error, LeaseLost)
    assert late.ip_address not in pool_ips(arm)
    assert arm.stats.rejections(412, "PreconditionFailed") >= 1  # P1's PUT, prepared before the fence
    assert arm.stats.pool_writes(POOL_ID) == 1  # only the fence's


def test_a_pool_that_cannot_be_fenced_is_not_written_and_stays_recorded(arm, new_writer, container, caplog):
    caplog.set_level("INFO", logger="poolsync")
    crashed = new_writer().locks.try_acquire_lb(LB_ID)  # type: ignore[union-attr]
    assert crashed is not None
    crashed.begin_write(POOL_ID)  # proved and recorded; then the process died before any answer
    helpers.expire(container, LB_ID)
    crashed.release()
    impatient = RetrySettings(deadline_seconds=2, max_attempts=5, base_backoff=0.02, max_backoff=0.2,
                              retry_after_cap=0.2)
    arm.faults.add("500", method="PUT", resource_type="backendAddressPools")

    with pytest.raises(PoolNotFenced):
        new_writer(impatient).apply(POOL_ID, add_one(desired_address(2)))

    assert arm.stats.pool_writes(POOL_ID) == 0
    assert helpers.recorded(container, LB_ID) == [POOL_ID]  # the next holder fences it
    assert [line["pool"] for line in fenced_lines(caplog, "pool_fence_failed")] == [POOL_ID]

    arm.faults.clear()
    new_writer().apply(POOL_ID, add_one(desired_address(2)))
    assert desired_address(2).ip_address in pool_ips(arm)
    assert arm.stats.pool_writes(POOL_ID) == 2  # the fence, then the write
    assert helpers.recorded(container, LB_ID) == []


def test_a_clean_write_leaves_nothing_to_fence_and_costs_no_extra_arm_call(arm, new_writer, container):
    writer = new_writer()
    writer.apply(POOL_ID, add_one(desired_address(3)))
    assert helpers.recorded(container, LB_ID) == []
    requests = arm.stats.requests()
    with writer.lb_lease(LB_ID) as lease:
        assert lease is not None and lease.unfinished == ()
    assert arm.stats.requests() == requests
