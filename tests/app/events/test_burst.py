"""Coalescing under a scale-out burst, across processes; lock hand-over and crashed holders."""

from __future__ import annotations

import time

import pytest
from azure.functions.timer import TimerRequest

from bench.burst import POOL_ID, bench_env, burst_topology, run_burst
from handlers.events import intents_sweep_timer
from shared.app.flusher import BUSY, FLUSHED, sweep
from shared.core.events import parse_event
from shared.storage.intents import scope_partition_key
from tests.app.events.conftest import Stack, create_vm, pool_key
from tests.app.events.helpers import WRITE, eventgrid_event
from tests.fixtures.arm import POOL, SUBSCRIPTION, ids

BURST = 500


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_four_instances_coalesce_a_500_vm_burst_without_losing_one(arm, storage_connection_string):
    arm.reset(burst_topology())
    arm.operation_seconds = 1.0  # and one operation per load balancer at a time, as Network RP does

    result = run_burst(arm, bench_env(arm, storage_connection_string), BURST,
                       instances=4, duration=5.0, concurrency=8, settle_timeout=240)

    print(f"\n{BURST} events, 4 instances: {result.pool_writes} pool writes, rejections {result.rejections}, "
          f"converged {result.seconds_to_converge} s after the last event")
    assert result.lost == 0
    assert all(not report.get("gave_up") for report in result.instances), result.instances
    assert len(arm.world.pool_address_ips(POOL_ID)) == BURST
    assert result.pool_writes <= 25  # coalesced: the naive handler needs one write per event


def test_intent_arriving_while_the_holder_releases_is_flushed_by_it(stack: Stack, network, compute,
                                                                     monkeypatch):
    """A handler that found the lock held right before the holder released returns at once; the holder's
    look after releasing must pick its intent up."""
    locks = stack.service.flusher.locks
    acquire = locks.try_acquire_scope
    late_event: list[dict] = []

    def acquire_with_late_arrival(scope):
        lease = acquire(scope)
        if lease is not None and not late_event:
            release = lease.release

            def release_after_a_late_intent():
                create_vm(network, compute, "late-1")
                late_event.append(stack.emitted()[-1])
                stack.service.intents.record(parse_event(late_event[0]))  # its handler: lock busy
                release()

            lease.release = release_after_a_late_intent
        return lease

    monkeypatch.setattr(locks, "try_acquire_scope", acquire_with_late_arrival)
    stack.service.intents.record(parse_event(eventgrid_event(WRITE, ids.vm("web-1"))))

    report = stack.service.flusher.flush(SUBSCRIPTION)

    assert report.status == FLUSHED
    assert report.rounds == 2
    assert pool_key("late-1-nic") in stack.pool(POOL)
    assert stack.pending_intents() == 0


@pytest.mark.timeout(180)
def test_crashed_holder_lease_expires_and_the_sweep_finishes(stack: Stack, network, compute):
    # A holder that died mid-flush: its lease is neither renewed nor released.
    container = stack.service.flusher.locks.container  # exists: the fixture's reconcile took LB leases
    blob = container.get_blob_client(scope_partition_key(SUBSCRIPTION))
    blob.upload_blob(b"")
    blob.acquire_lease(lease_duration=15)
    create_vm(network, compute, "web-9")

    stack.deliver(*stack.emitted())  # intents recorded; the lock is held, so the handlers return

    name = pool_key("web-9-nic")
    assert name not in stack.pool(POOL)
    assert stack.pending_intents() == 2
    assert [r.status for r in sweep(stack.runtime)] == [BUSY]

    deadline = time.monotonic() + 120  # the lease runs out after 15 s
    reports = []
    while time.monotonic() < deadline:
        reports = sweep(stack.runtime)
        if reports and reports[0].status == FLUSHED:
            break
        time.sleep(1)

    assert [r.status for r in reports] == [FLUSHED]
    assert name in stack.pool(POOL)
    assert stack.pending_intents() == 0
    assert sweep(stack.runtime) == []


def test_the_sweep_timer_flushes_intents_nobody_is_flushing(stack: Stack, network, compute):
    """An intent recorded but never flushed (its handler died after recording) is applied by the timer."""
    create_vm(network, compute, "web-7")
    stack.service.intents.record(parse_event(eventgrid_event(WRITE, ids.vm("web-7"))))
    assert stack.pending_intents() == 1

    # The handler itself, not function_app.app: that app answers get_functions() only once per process.
    intents_sweep_timer.build().get_user_function()(TimerRequest(past_due=False))

    assert pool_key("web-7-nic") in stack.pool(POOL)
    assert stack.pending_intents() == 0
