"""The flusher's loop on a simulated clock: settling, coalescing, budget, failures (no storage, no ARM).

The store, lock and reconciler below are small in-memory stand-ins for poolsync's own classes; the
Azure-facing behaviour of the real ones is covered end to end in test_event_flow / test_burst."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from shared.app.flusher import DEFERRED, FLUSHED, CoalesceSettings, Flusher, FlushFailed
from shared.app.outcomes import OwnerRound, PoolOutcome
from shared.core.changes import ChangeSet
from shared.storage.intents import Intent

SUB = "00000000-0000-0000-0000-000000000000"
LB = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/lb"
POOL = f"{LB}/backendAddressPools/pool"
VM = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm"
SETTINGS = CoalesceSettings(quiet_seconds=1.0, max_wait_seconds=5.0, poll_seconds=0.1, lease_seconds=30,
                            budget_seconds=60.0)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.on_sleep: Callable[[float], None] = lambda now: None

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.on_sleep(self.now)


@dataclass
class MemoryIntents:
    rows: dict[str, Intent] = field(default_factory=dict)
    deferred: dict[str, Intent] = field(default_factory=dict)

    def add(self, key: str) -> None:
        self.rows[key] = Intent(SUB, key, etag="1", subject=f"{VM}-{key}", kind="vm", action="write")

    def has_pending(self, scope: str) -> bool:
        return bool(self.rows)

    def pending(self, scope: str) -> list[Intent]:
        return list(self.rows.values())

    def recent_keys(self, scope, since):
        return set(self.rows), None

    def consume(self, intents):
        return [i for i in intents if self.rows.pop(i.row_key, None) is not None]

    def defer(self, intents, reason):
        for intent in intents:  # not due any more: out of `rows` until its back-off ends
            self.deferred[intent.row_key] = self.rows.pop(intent.row_key)


class Lease:
    lost = False

    def __init__(self, locks: Locks) -> None:
        self.locks = locks

    def release(self) -> None:
        self.locks.held = False


@dataclass
class Locks:
    held: bool = False
    acquisitions: int = 0

    def try_acquire_scope(self, scope: str):
        if self.held:
            return None
        self.held = True
        self.acquisitions += 1
        return Lease(self)


@dataclass
class Reconciler:
    clock: Clock
    status: str = "written"
    rounds: list[tuple[float, int]] = field(default_factory=list)  # (time, intents pending at the read)
    intents: MemoryIntents | None = None
    owners_seen: list[int] = field(default_factory=list)

    def index_ready(self) -> bool:
        return True

    def reconcile_owners(self, owners, *, deadline, fence, expect_present=(), reads_done=None):  # never says
        # reads are done: the next round waits for this one to end, so the simulated clock has one thread
        self.rounds.append((self.clock.now, len(self.intents.rows) if self.intents else 0))
        self.owners_seen.append(len(owners))
        self.clock.sleep(1.0)  # one ARM write; events keep arriving meanwhile
        result = OwnerRound()
        result.add(ChangeSet(pools_by_owner={o.key: {POOL.lower()} for o in owners}),
                   [PoolOutcome(POOL, self.status)])
        return result

    def rebuild_unbuilt(self, *, deadline):
        return []


def _flusher(clock: Clock, intents: MemoryIntents, reconciler: Reconciler, settings=SETTINGS):
    reconciler.intents = intents
    return Flusher(reconciler, intents, Locks(), settings, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]


def test_a_settled_burst_is_applied_in_one_round_after_the_quiet_period():
    clock, intents = Clock(), MemoryIntents()
    for key in ("a", "b", "c"):
        intents.add(key)
    reconciler = Reconciler(clock)

    report = _flusher(clock, intents, reconciler).flush(SUB)

    assert report.status == FLUSHED
    assert (report.rounds, report.intents) == (1, 3)
    assert reconciler.rounds[0][0] == pytest.approx(SETTINGS.quiet_seconds)
    assert reconciler.owners_seen == [3]  # one round works on every owner the burst named
    assert intents.rows == {}


def test_a_continuous_stream_still_flushes_every_max_wait_and_loses_nothing():
    clock, intents = Clock(), MemoryIntents()
    intents.add("first")
    arrivals = iter(range(10_000))

    def stream_for_twelve_seconds(now: float) -> None:
        if now < 12.0:
            intents.add(f"e{next(arrivals)}")

    clock.on_sleep = stream_for_twelve_seconds
    reconciler = Reconciler(clock)

    report = _flusher(clock, intents, reconciler).flush(SUB)

    times = [at for at, _ in reconciler.rounds]
    assert times[0] == pytest.approx(SETTINGS.max_wait_seconds)  # not later: the stream never went quiet
    assert len(times) <= 3
    assert intents.rows == {}
    assert report.intents == 1 + next(arrivals)  # every arrival was consumed by some round


def test_out_of_budget_the_flusher_hands_the_rest_to_a_fresh_invocation():
    clock, intents = Clock(), MemoryIntents()
    intents.add("first")
    counter = iter(range(10_000))
    clock.on_sleep = lambda now: intents.add(f"e{next(counter)}")  # never ends
    settings = CoalesceSettings(quiet_seconds=1.0, max_wait_seconds=5.0, poll_seconds=0.1,
                                budget_seconds=20.0)

    flusher = _flusher(clock, intents, Reconciler(clock), settings)
    handed_off: list[str] = []
    flusher.handoff = handed_off.append

    report = flusher.flush(SUB)

    assert report.status == DEFERRED
    assert report.rounds >= 1
    assert intents.rows  # left for a fresh invocation...
    assert handed_off == [SUB]  # ...which the flusher asked for before returning


def test_a_failed_reconcile_raises_and_keeps_every_intent_deferred():
    clock, intents = Clock(), MemoryIntents()
    intents.add("a")
    flusher = _flusher(clock, intents, Reconciler(clock, status="failed"))

    with pytest.raises(FlushFailed):
        flusher.flush(SUB)

    assert set(intents.deferred) == {"a"}  # kept, due again after its back-off
    assert not flusher.locks.held  # released for the redelivery


def test_a_refused_removal_keeps_the_intent_pending_with_a_back_off():
    clock, intents = Clock(), MemoryIntents()
    intents.add("a")

    report = _flusher(clock, intents, Reconciler(clock, status="refused")).flush(SUB)

    assert report.status == FLUSHED
    assert (report.intents, report.deferred) == (0, 1)
    assert set(intents.deferred) == {"a"}


def test_a_busy_lock_leaves_the_intent_to_its_holder():
    clock, intents = Clock(), MemoryIntents()
    intents.add("a")
    flusher = _flusher(clock, intents, Reconciler(clock))
    flusher.locks.held = True

    report = flusher.flush(SUB)

    assert (report.status, report.rounds) == ("busy", 0)
    assert set(intents.rows) == {"a"}


def test_the_next_round_reads_while_the_previous_one_still_writes_and_takes_only_new_intents():
    intents = MemoryIntents()
    intents.add("a")
    spans: list[tuple[str, float, float]] = []  # (owners, started, ended)
    first_writing = threading.Event()

    class Writing:
        def index_ready(self) -> bool:
            return True

        def rebuild_unbuilt(self, *, deadline):
            return []

        def reconcile_owners(self, owners, *, deadline, fence, expect_present=(), reads_done=None):
            began = time.monotonic()
            if not spans and not first_writing.is_set():
                intents.add("b")  # an event arrives while round one writes
                first_writing.set()
                reads_done()  # round one read Azure and wrote its index rows: only its PUTs are left
                time.sleep(1.0)
            spans.append((",".join(sorted(o.key.rsplit("-", 1)[1] for o in owners)), began, time.monotonic()))
            result = OwnerRound()
            result.add(ChangeSet(pools_by_owner={o.key: {POOL.lower()} for o in owners}),
                       [PoolOutcome(POOL, "written")])
            return result

    quick = CoalesceSettings(quiet_seconds=0.05, max_wait_seconds=0.5, poll_seconds=0.01, budget_seconds=60.0)
    report = Flusher(Writing(), intents, Locks(), quick).flush(SUB)  # type: ignore[arg-type]

    second, first = spans  # round two ended first: it did not wait for round one's writes
    assert (first[0], second[0]) == ("a", "b")  # each intent taken by one round only
    assert second[1] < first[2]
    assert (report.rounds, report.intents) == (2, 2)
    assert intents.rows == {}
