"""A writer frozen between its lease proof and its PUT must not land a stale write (issue 17, case 3).

Instance 1 applies a VM's create event and freezes (GC pause, VM freeze) right after proving its write
lease, its lease renewals frozen with it. The VM is deleted; instance 2 gets the delete events, waits out
instance 1's leases, and finds nothing to write (the entry never landed), so without fencing the pool's
ETag would never change and instance 1's If-Match PUT would bring the deleted VM back when it wakes."""

from __future__ import annotations

import time

import pytest
from azure.functions.timer import TimerRequest

from handlers.events import intents_sweep_timer
from shared.app.flusher import FlushFailed
from tests.app.events.conftest import ALL_POOL, Stack, create_vm, facts, pool_key
from tests.azure.helpers import InThread, PauseBeforePut
from tests.fixtures.arm import POOL, RESOURCE_GROUP, ids

pytestmark = pytest.mark.timeout(240)

SWEEP = intents_sweep_timer.build().get_user_function()


def test_a_writer_frozen_after_its_proof_cannot_bring_a_deleted_vm_back(
        stack: Stack, network, compute, monkeypatch, caplog):
    caplog.set_level("INFO", logger="poolsync")
    create_vm(network, compute, "web-8")
    created = stack.emitted()
    pause = PauseBeforePut(stack.runtime.writer, monkeypatch, freeze_renewals=True)
    first = InThread(lambda: stack.deliver(created[-1]))  # instance 1: the VM's write event
    assert pause.paused.wait(60)  # proved its lease (and its flush lock), about to PUT: frozen

    compute.virtual_machines.begin_delete(RESOURCE_GROUP, "web-8").result()
    second = Stack(stack.arm, stack.env)  # instance 2: same app settings, same storage
    second.deliver(*second.emitted())  # the delete events; instance 1's flush lock is still held
    deadline = time.monotonic() + 90
    while second.pending_intents() and time.monotonic() < deadline:
        SWEEP(TimerRequest(past_due=False))  # takes over once instance 1's leases expired
        time.sleep(0.5)
    assert second.pending_intents() == 0  # the delete (and the create) were consumed
    assert pool_key("web-8-nic") not in second.pool(POOL)
    assert [fact["pool"] for fact in facts(caplog, "pool_fenced")] == [ids.pool(POOL)]

    pause.resume.set()  # instance 1 wakes and sends the PUT it prepared
    first.join()

    assert pool_key("web-8-nic") not in second.pool(POOL)
    assert pool_key("web-8-nic") not in second.pool(ALL_POOL)
    assert isinstance(first.error, FlushFailed)  # its delivery fails; Event Grid redelivers it
    outcomes = {outcome.pool_id: outcome for outcome in first.error.outcomes}
    assert outcomes[ids.pool(POOL)].status == "failed"
    assert "LeaseLost" in (outcomes[ids.pool(POOL)].detail or "")
    assert all(outcome.status == "failed" for outcome in outcomes.values())
