"""kill -9 of a worker while it holds a load balancer's flush lease: the intents it took stay durable,
another worker finishes them once the lease has expired, and the pools end as the rules say. And the one
scenario of the suite with Azure-long (6 s) operations: a burst over two workers, by events + sweep."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from emulator import Emulator
from shared.app.runtime import Runtime
from shared.azure.clients import ArmSettings
from tests.reliability.helpers import (
    AZURE_OPERATION_SECONDS,
    GROUPS,
    HAND_ADDED,
    SWEEP_FUNCTION,
    EventFeed,
    PoolWriteLog,
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
    sweep_until_nothing_due,
    topology,
    use_azure_profile,
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


def assert_pools_follow_the_rules(arm: Emulator, runtime: Runtime) -> None:
    wanted = rules_answer(runtime)
    for group in GROUPS:
        contents = pool_contents(arm, pool_id(group))
        assert managed_part(contents) == wanted[pool_id(group).lower()], f"pool-{group}"
        for name, ip in HAND_ADDED[pool_id(group)].items():
            assert contents.get(name) == ip, f"hand-added {name} lost from pool-{group}"


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
    # Acknowledged at once: the intents are recorded and a flush request queued; worker-a's flush_requests
    # invocation then takes the lease and writes.
    assert first.deliver(burst) == 202
    locks = settings["POOLSYNC_LOCKS_CONTAINER"]
    wait_until(lambda: bool(leased_blobs(storage_connection_string, locks)), 120, "worker-a to take a lease")
    wait_until(lambda: arm.stats.requests("PUT", "backendAddressPools") > puts_before, 120,
               "worker-a to start a pool write")
    first.kill()
    assert leased_blobs(storage_connection_string, locks), "the dead worker's lease outlives it"
    assert pending_intent_count(storage_connection_string, settings["POOLSYNC_INTENTS_TABLE"]) > 0
    arm.operation_seconds = 0.05

    second = Worker(settings, tmp_path / "logs", name="worker-b").start()
    workers.append(second)
    # The dead invocation's flush request stays hidden (its host died holding it): the intents wait for
    # the lease to expire and the next flush.
    wait_until(lambda: not leased_blobs(storage_connection_string, locks), 60,
               "the dead worker's lease to expire")
    if takeover == "next event":  # the next change after the lease expired flushes everything pending
        fleet.create_vm("b-new-2", subnet_id("b"), {"role": "b"})
        deliver_until_acknowledged(lambda: [second], feed.take())
    else:  # nothing else happens: the periodic sweep finds the orphaned intents
        assert second.fire(SWEEP_FUNCTION) == 202
    intents = settings["POOLSYNC_INTENTS_TABLE"]
    wait_until(lambda: pending_intent_count(storage_connection_string, intents) == 0, 120,
               "worker-b to apply every pending intent")
    wait_until(lambda: not leased_blobs(storage_connection_string, locks), 60, "worker-b to finish")

    assert_pools_follow_the_rules(arm, runtime)
    ips_in_a = set(pool_contents(arm, pool_id("a")).values())
    assert fleet.vm_ip("a-new-1") in ips_in_a and fleet.vm_ip("a-new-2") in ips_in_a


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_burst_with_azure_long_operations_converges_by_events_and_sweep(
    arm: Emulator, arm_settings: ArmSettings, settings: dict[str, str], workers: list[Worker],
    storage_connection_string: str, tmp_path: Path,
) -> None:
    """6 s operations (Retry-After 2 s), two workers taking the deliveries side by side; the burst deletes
    two of pool-b's three VMs: removals a read confirms, so the guard must let them through."""
    runtime = reading_runtime(settings)
    runtime.reconciler.reconcile()  # in sync (and the member index built) before the burst
    workers += [Worker(settings, tmp_path / "logs", name=f"worker-{n}").start() for n in (1, 2)]
    use_azure_profile(arm, operation_seconds=AZURE_OPERATION_SECONDS, lro_retry_after=2)
    fleet = fleet_for(arm_settings)
    feed = EventFeed(arm)
    feed.reset()
    write_log = PoolWriteLog(arm)
    try:
        changes = [(fleet.create_vm, f"a-long-{n}", subnet_id("a"), {"role": "a"}) for n in (1, 2, 3)]
        changes += [(fleet.create_vm, "b-long-1", subnet_id("b"), {"role": "b"}),
                    (fleet.delete_vm, "a-2"), (fleet.delete_vm, "b-1"), (fleet.delete_vm, "b-2")]
        deliveries: list[threading.Thread] = []
        unacknowledged: list[AssertionError] = []

        def deliver(target: Worker, event: dict[str, Any]) -> None:
            try:
                deliver_until_acknowledged(lambda: [target], [event])
            except AssertionError as never:
                unacknowledged.append(never)

        def push_new_events() -> None:
            """Event Grid pushes each event as it is published, to either instance; deliveries overlap."""
            for event in feed.take():
                target = workers[len(deliveries) % 2]
                thread = threading.Thread(target=deliver, args=(target, event), daemon=True)
                thread.start()
                deliveries.append(thread)

        with ThreadPoolExecutor(len(changes)) as executor:
            running = [executor.submit(*change) for change in changes]
            while not all(future.done() for future in running):
                push_new_events()
                time.sleep(0.2)
            for future in running:
                future.result()
        push_new_events()
        for thread in deliveries:
            thread.join(timeout=300)
        assert deliveries and not any(thread.is_alive() for thread in deliveries) and not unacknowledged

        left = sweep_until_nothing_due(lambda: workers, arm, storage_connection_string, settings)
        assert left == [], f"intents still pending: {[dict(row) for row in left]}"
        assert_pools_follow_the_rules(arm, runtime)
        assert len(managed_part(pool_contents(arm, pool_id("b")))) == 2  # b-3 and b-long-1
        assert write_log.guard_violations() == []
        print("pool writes:", len(write_log.writes), "conflicts:", arm.stats.conflicts(),
              "throttled:", arm.stats.throttled_count())
    finally:
        write_log.close()
