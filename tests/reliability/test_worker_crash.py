"""kill -9 of a worker while it holds a load balancer's flush lease: the intents it took stay durable,
another worker finishes them once the lease has expired, and the pools end as the rules say."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator import Emulator
from shared.azure.clients import ArmSettings
from tests.reliability.helpers import (
    HAND_ADDED,
    SWEEP_FUNCTION,
    EventFeed,
    Worker,
    deliver_until_acknowledged,
    fleet_for,
    leased_blobs,
    managed_part,
    pending_intent_count,
    pool_contents,
    pool_id,
    reading_runtime,
    rules_answer,
    subnet_id,
    topology,
    wait_until,
    worker_settings,
    write_rules,
)


@pytest.fixture
def settings(arm: Emulator, storage_connection_string: str, tmp_path: Path) -> dict[str, str]:
    arm.reset(topology(vms_per_group=3))
    return worker_settings(arm, storage_connection_string, write_rules(tmp_path))


@pytest.fixture
def workers(settings: dict[str, str], tmp_path: Path) -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("takeover", ["next event", "sweep timer"])
def test_a_killed_lease_holder_loses_nothing(
    arm: Emulator, arm_settings: ArmSettings, settings: dict[str, str], workers: list[Worker],
    storage_connection_string: str, tmp_path: Path, takeover: str,
) -> None:
    runtime = reading_runtime(settings)
    runtime.reconciler.reconcile()  # start in sync, so everything after is the events' doing
    first = Worker(settings, tmp_path / "logs", name="worker-a").start()
    workers.append(first)
    fleet = fleet_for(arm_settings)
    feed = EventFeed(arm)
    feed.reset()

    for number in (1, 2):
        fleet.create_vm(f"a-new-{number}", subnet_id("a"), {"role": "a"})
    fleet.create_vm("b-new-1", subnet_id("b"), {"role": "b"})
    fleet.delete_vm("a-1")
    burst = feed.take()
    assert burst

    # Slow pool writes down so the flusher is caught holding its lease, mid-write.
    arm.operation_seconds = 8.0
    puts_before = arm.stats.requests("PUT", "backendAddressPools")
    answered: list[int] = []
    delivery = threading.Thread(target=lambda: answered.append(first.deliver(burst)), daemon=True)
    delivery.start()
    locks = settings["POOLSYNC_LOCKS_CONTAINER"]
    wait_until(lambda: bool(leased_blobs(storage_connection_string, locks)), 120, "worker-a to take a lease")
    wait_until(lambda: arm.stats.requests("PUT", "backendAddressPools") > puts_before, 120,
               "worker-a to start a pool write")
    first.kill()
    delivery.join(timeout=60)
    assert answered == [0], "the killed worker must not have acknowledged the burst"
    assert leased_blobs(storage_connection_string, locks), "the dead worker's lease outlives it"
    assert pending_intent_count(storage_connection_string, settings["POOLSYNC_INTENTS_TABLE"]) > 0
    arm.operation_seconds = 0.05

    second = Worker(settings, tmp_path / "logs", name="worker-b").start()
    workers.append(second)
    # Event Grid redelivers what worker-a never acknowledged; worker-b records it (the lease may still
    # be held by the dead worker, in which case it leaves the flush to whoever holds the lock next).
    deliver_until_acknowledged(lambda: [second], burst)
    wait_until(lambda: not leased_blobs(storage_connection_string, locks), 60,
               "the dead worker's lease to expire")
    if takeover == "next event":  # the next change after the lease expired flushes everything pending
        fleet.create_vm("b-new-2", subnet_id("b"), {"role": "b"})
        deliver_until_acknowledged(lambda: [second], feed.take())
    else:  # nothing else happens: the periodic sweep finds the orphaned intents
        assert second.fire(SWEEP_FUNCTION) == 202
    wait_until(lambda: not leased_blobs(storage_connection_string, locks), 60, "worker-b to finish")

    assert pending_intent_count(storage_connection_string, settings["POOLSYNC_INTENTS_TABLE"]) == 0
    wanted = rules_answer(runtime)
    for group in ("a", "b"):
        contents = pool_contents(arm, pool_id(group))
        assert managed_part(contents) == wanted[pool_id(group).lower()], f"pool-{group}"
        for name, ip in HAND_ADDED[pool_id(group)].items():
            assert contents.get(name) == ip, f"hand-added {name} lost from pool-{group}"
    ips_in_a = set(pool_contents(arm, pool_id("a")).values())
    assert fleet.vm_ip("a-new-1") in ips_in_a and fleet.vm_ip("a-new-2") in ips_in_a
