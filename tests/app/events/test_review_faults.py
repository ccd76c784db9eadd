"""Faults that must not strand the intents of other load balancers, or hold a lock nobody uses."""

from __future__ import annotations

import threading
import time

import pytest
from azure.core.exceptions import HttpResponseError

from shared.app.flusher import FlushFailed
from shared.core.events import parse_event
from shared.storage.intents import HeldLease, LeaseLost
from tests.app.events.conftest import RULES, Stack, create_vm, pool_key
from tests.app.events.helpers import WRITE, eventgrid_event, runtime_env
from tests.fixtures.arm import POOL, SUBSCRIPTION, VNET, ids

pytestmark = pytest.mark.timeout(240)


def _stack_with_a_broken_lb(stack: Stack) -> Stack:
    # A rule on the same virtual network whose pool cannot be written (its load balancer is gone): every
    # write of that load balancer fails, for good.
    broken = {"name": "broken", "pool": f"{ids.lb('lb-gone')}/backendAddressPools/pool",
              "virtualNetwork": ids.vnet(VNET), "cidrs": ["10.0.0.0/16"]}
    env = runtime_env(stack.arm.url, stack.arm.ca_path, stack.env["AzureWebJobsStorage"], [broken, *RULES])
    return Stack(stack.arm, env)


def test_an_event_for_two_lbs_still_writes_the_second_when_the_first_fails(stack: Stack, network, compute):
    broken = _stack_with_a_broken_lb(stack)
    create_vm(network, compute, "web-8")
    events = broken.emitted()

    with pytest.raises(FlushFailed):
        broken.deliver(events[-1])  # raised: Event Grid redelivers for the broken load balancer

    assert pool_key("web-8-nic") in broken.pool(POOL)
    (kept,) = broken.service.intents.pending(SUBSCRIPTION, due_only=False)
    assert kept.attempts == 1  # deferred with a back-off, not lost
    assert broken.service.intents.pending(SUBSCRIPTION) == []  # and not due again at once


def test_the_sweep_writes_what_it_can_and_keeps_the_intent_of_a_failing_lb(stack: Stack, network, compute):
    broken = _stack_with_a_broken_lb(stack)
    create_vm(network, compute, "web-8")
    broken.service.intents.record(parse_event(eventgrid_event(WRITE, ids.vm("web-8"))))  # handler died

    with pytest.raises(FlushFailed):
        broken.service.sweep()

    assert pool_key("web-8-nic") in broken.pool(POOL)
    assert len(broken.service.intents.pending(SUBSCRIPTION, due_only=False)) == 1  # for the next try


class _Lease:
    """A blob lease whose first renewal meets a transient storage error (503 Server Busy)."""

    def __init__(self) -> None:
        self.renewals = 0
        self.released = threading.Event()

    def renew(self) -> None:
        self.renewals += 1
        if self.renewals == 1:
            error = HttpResponseError(message="The server is busy.")
            error.status_code = 503
            raise error

    def release(self) -> None:
        self.released.set()


def test_a_transient_renewal_error_does_not_give_the_lock_up():
    lease = _Lease()
    held = HeldLease(ids.lb(), lease, duration=3)  # type: ignore[arg-type] # renews every second
    try:
        for _ in range(100):  # the background renewals: the first meets the 503, the next succeeds
            if lease.renewals >= 2:
                break
            time.sleep(0.1)
        assert lease.renewals >= 2
        held.check()  # still ours (a 503 says nothing about another holder): a proof succeeds
        assert not held.lost
    finally:
        held.release()

    assert lease.released.is_set()  # released, so the next handler can flush at once


class _FailingLease:
    """A blob lease storage no longer answers for (every renewal fails with a connection error)."""

    def renew(self) -> None:
        raise ConnectionError("storage unreachable")

    def release(self) -> None:
        pass


def test_a_lease_nobody_could_renew_for_most_of_its_duration_counts_as_lost():
    clock = [0.0]
    held = HeldLease(ids.lb(), _FailingLease(), duration=30, clock=lambda: clock[0])  # type: ignore[arg-type]
    try:
        clock[0] = 15.0
        assert not held.lost  # renewals failing for half the lease: it still runs
        clock[0] = 21.0
        assert held.lost  # it may have expired: another writer may hold it now
        with pytest.raises(LeaseLost):
            held.check()  # the proof a writer asks for just before its PUT
    finally:
        held.release()


def test_a_lease_taken_over_fails_the_check_before_a_write():
    class TakenOver:
        def renew(self) -> None:
            error = HttpResponseError(message="The lease ID specified did not match.")
            error.status_code = 409
            raise error

        def release(self) -> None:
            raise AssertionError("a lease that is not ours is not released")

    held = HeldLease(ids.lb(), TakenOver(), duration=30)  # type: ignore[arg-type]
    with pytest.raises(LeaseLost):
        held.check()
    assert held.lost
    held.release()
