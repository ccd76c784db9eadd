"""Faults that must not strand the intents of other load balancers, or hold a lock nobody uses."""

from __future__ import annotations

import threading
import time

import pytest
from azure.core.exceptions import HttpResponseError

from shared.events import parse_event
from shared.flusher import FlushFailed
from shared.intents import HeldLease, lb_partition_key
from tests.events.conftest import RULES, Stack, create_vm, pool_key
from tests.events.helpers import WRITE, eventgrid_event, runtime_env
from tests.fixtures.arm import POOL, VNET, ids

pytestmark = pytest.mark.timeout(240)


def _gone_lb(before: bool) -> str:
    """A load balancer missing from Azure whose intents partition sorts before (or after) the real one's."""
    real = lb_partition_key(ids.lb())
    return next(ids.lb(f"lb-gone-{i}") for i in range(100)
                if (lb_partition_key(ids.lb(f"lb-gone-{i}")) < real) == before)


def _stack_with_a_broken_lb(stack: Stack, gone_lb: str) -> Stack:
    # A rule on the same virtual network whose pool cannot be written (its load balancer is gone): every
    # flush of that load balancer fails, for good.
    broken = {"name": "broken", "pool": f"{gone_lb}/backendAddressPools/pool",
              "virtualNetwork": ids.vnet(VNET), "cidrs": ["10.0.0.0/16"]}
    env = runtime_env(stack.arm.url, stack.arm.ca_path, stack.env["AzureWebJobsStorage"], [broken, *RULES])
    return Stack(stack.arm, env)


def test_an_event_for_two_lbs_still_flushes_the_second_when_the_first_fails(stack: Stack, network, compute):
    broken = _stack_with_a_broken_lb(stack, _gone_lb(before=True))
    create_vm(network, compute, "web-8")
    events = broken.emitted()

    with pytest.raises(FlushFailed):
        broken.deliver(events[-1])  # raised: Event Grid redelivers for the broken load balancer

    assert pool_key("web-8-nic") in broken.pool(POOL)
    assert broken.pending_intents() == 0


def test_the_sweep_goes_on_past_a_load_balancer_that_fails(stack: Stack, network, compute):
    gone = _gone_lb(before=True)
    broken = _stack_with_a_broken_lb(stack, gone)
    create_vm(network, compute, "web-8")
    hint = parse_event(eventgrid_event(WRITE, ids.vm("web-8")))
    broken.service.intents.record(gone, hint)
    broken.service.intents.record(ids.lb(), hint)  # its handler died after recording

    with pytest.raises(FlushFailed):
        broken.service.sweep()

    assert pool_key("web-8-nic") in broken.pool(POOL)
    assert broken.pending_intents() == 0
    assert len(broken.service.intents.pending(gone)) == 1  # still pending for the next sweep


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
        for _ in range(100):
            if lease.renewals >= 2 or held.lost:
                break
            time.sleep(0.1)
    finally:
        held.release()

    assert not held.lost  # still ours: a 503 says nothing about another holder
    assert lease.renewals >= 2
    assert lease.released.is_set()  # released, so the next handler can flush at once
