"""Event intake and the coalescing flusher: many events -> few pool writes, each costing O(change).

Intake (per event): classify it and record one durable intent in its subscription's partition - no Azure
call, so a burst of deliveries costs storage writes only - then ask for a flush (a queue message that turns
visible after the quiet period, see shared/storage/flush_requests.py) and return: no delivery waits for a
pool write. The flush runs in the `flush_requests` queue trigger; an invocation that does not get the
flush lock just returns: the holder will see the intents.

Flusher (per subscription, one at a time through a blob lease): wait for the burst to settle, take the due
intents, and work from the change: read the owners the intents name (GETs of each, or one list read when
that is cheaper), look up in the member index which entries poolsync wrote for them, plan only those
entries, and write the affected load balancers in parallel, each under its write lease. A resource-group
delete or move names no owners: it gets a full reconcile of the subscription's pools. Intents whose work
is done are deleted; work the guard held back or Azure refused stays pending with a back-off. Repeat while
more are due (past the invocation's budget, hand the rest to a fresh invocation); release, and look once
more. Crashed holders are covered by the lease expiring: the next request or the timer's `sweep()` takes
over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import settings, telemetry
from shared.app.outcomes import DONE, PoolOutcome
from shared.app.reconciler import Reconciler
from shared.app.runtime import Runtime, get_runtime
from shared.core.changes import Owner
from shared.core.events import ACTION_WRITE, KIND_RESOURCE_GROUP, Ignored, parse_event
from shared.core.ids import id_key
from shared.core.scale_sets import OWNER_KINDS
from shared.errors import AzureFailure
from shared.storage.flush_requests import FlushRequests
from shared.storage.intents import FlushLocks, HeldLease, Intent, IntentStore

log = logging.getLogger("poolsync.flusher")

_STRAGGLER_MARGIN = timedelta(seconds=2)


@dataclass(frozen=True)
class CoalesceSettings:
    # no new intent for this long = the burst settled (~ one ARM operation)
    quiet_seconds: float = settings.COALESCE_QUIET.default
    # a continuous stream still flushes at least this often
    max_wait_seconds: float = settings.COALESCE_MAX_WAIT.default
    # how often a waiting flusher looks for new intents (a cheap query)
    poll_seconds: float = settings.COALESCE_POLL.default
    lease_seconds: int = settings.FLUSH_LEASE_SECONDS.default  # blob lease (15-60 s), renewed while working
    # no new round after this: the rest goes to a fresh invocation (well inside functionTimeout)
    budget_seconds: float = settings.FLUSH_BUDGET.default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CoalesceSettings:
        env = settings.app_settings(env)
        return cls(
            quiet_seconds=float(settings.COALESCE_QUIET.get(env)),
            max_wait_seconds=float(settings.COALESCE_MAX_WAIT.get(env)),
            poll_seconds=float(settings.COALESCE_POLL.get(env)),
            lease_seconds=int(settings.FLUSH_LEASE_SECONDS.get(env)),
            budget_seconds=float(settings.FLUSH_BUDGET.get(env)),
        )


class FlushFailed(AzureFailure, RuntimeError):
    """A pool could not be reconciled (an Azure error outlived the retries); the intents stay pending."""

    def __init__(self, scope: str, outcomes: list[PoolOutcome]) -> None:
        failed = [f"{o.pool_id}: {o.detail}" for o in outcomes if o.status == "failed"]
        super().__init__(f"flush of subscription {scope} failed: {'; '.join(failed)}")
        self.scope = scope
        self.outcomes = outcomes


# statuses of a FlushReport
FLUSHED = "flushed"  # held the lock and reconciled at least once
IDLE = "idle"  # held the lock, nothing was pending
BUSY = "busy"  # another flusher holds the lock: it will see our intents
DEFERRED = "deferred"  # out of budget with intents still pending: the next event or the sweep goes on


@dataclass
class FlushReport:
    scope: str  # the subscription
    status: str = IDLE
    rounds: int = 0
    intents: int = 0
    deferred: int = 0
    outcomes: list[PoolOutcome] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "subscription": self.scope,
            "deferred": self.deferred,
            "status": self.status,
            "rounds": self.rounds,
            "intents": self.intents,
            "pools": [outcome.as_dict() for outcome in self.outcomes],
        }


class Flusher:
    def __init__(
        self,
        reconciler: Reconciler,
        intents: IntentStore,
        locks: FlushLocks,
        settings: CoalesceSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        handoff: Callable[[str], None] | None = None,
    ) -> None:
        self.reconciler = reconciler
        self.intents = intents
        self.locks = locks
        self.settings = settings or CoalesceSettings()
        self.handoff = handoff  # starts a fresh flush of a subscription (a queue message); None: the sweep
        self._clock = clock
        self._sleep = sleep

    def flush(self, scope: str) -> FlushReport:
        """Apply everything due for this subscription if we can hold its flush lock; see the module doc."""
        report = FlushReport(scope)
        started = self._clock()
        failure: FlushFailed | None = None
        while True:
            lease = self.locks.try_acquire_scope(scope)
            if lease is None:
                if report.rounds == 0:
                    report.status = BUSY
                return report
            try:
                failure = self._rounds(scope, report, lease, started)
            finally:
                lease.release()
            if failure is not None:
                raise failure
            if report.status == DEFERRED or lease.lost:
                log.warning("flush of %s stopped with intents pending (%s)", scope,
                            "budget spent" if report.status == DEFERRED else "lock lost",
                            extra={"subscription": scope})
                if report.status == DEFERRED and self.handoff is not None:
                    self.handoff(scope)
                return report
            # An intent recorded after our last look found the lock still held and left it to us.
            if not self.intents.has_pending(scope):
                return report

    def _deadline(self, started: float) -> float:
        """When writes of this invocation must be done: the budget, as time.monotonic()."""
        return time.monotonic() + max(1.0, self.settings.budget_seconds - (self._clock() - started))

    def _rounds(self, scope: str, report: FlushReport, lease: HeldLease,
                started: float) -> FlushFailed | None:
        """Rounds while work is due, pipelined: once a round has read Azure and written its index rows (it
        only waits for its pool writes), the next one gathers its intents and starts reading. At most two
        run at once; a round that reconciles everything runs alone. After a failure no new round starts
        (its intents are deferred; what is left stays pending for the next request or the sweep)."""
        running: list[_Running] = []
        failure: FlushFailed | None = None
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="poolsync-round") as pool:
            while not lease.lost and failure is None:
                if self._clock() - started > self.settings.budget_seconds:
                    report.status = DEFERRED
                    break
                while len(running) > 1 or (running and running[-1].alone):
                    failure = self._collect(running.pop(0), report) or failure
                if failure is not None:
                    break
                if running:
                    running[-1].wait_for_reads()
                taken = self._gather(scope, {key for r in running for key in r.row_keys})
                if not taken:
                    if not running:
                        break
                    failure = self._collect(running.pop(0), report) or failure
                    continue
                alone = not self.reconciler.index_ready() or any(i.kind == KIND_RESOURCE_GROUP for i in taken)
                while alone and running:
                    failure = self._collect(running.pop(0), report) or failure
                if failure is not None:
                    break  # the taken intents stay pending
                current = _Running(FlushReport(scope), {i.row_key for i in taken}, alone)
                current.future = pool.submit(self._round, scope, current.report, lease, taken,
                                             self._deadline(started), current.reads_done.set)
                running.append(current)
            for left in running:
                failure = self._collect(left, report) or failure
        return failure

    @staticmethod
    def _collect(done: _Running, report: FlushReport) -> FlushFailed | None:
        """Wait for a round and add its figures to the invocation's report; its failure, if any."""
        assert done.future is not None
        try:
            done.future.result()
            failure = None
        except FlushFailed as failed:
            failure = failed
        finished = done.report
        report.rounds += finished.rounds
        report.intents += finished.intents
        report.deferred += finished.deferred
        if finished.rounds:
            report.status, report.outcomes = finished.status, finished.outcomes
        return failure

    def _gather(self, scope: str, running: set[str]) -> list[Intent]:
        """Settle and take the due intents no running round has taken; [] when none are due."""
        due = self.intents.has_pending(scope) if not running else \
            any(i.row_key not in running for i in self.intents.pending(scope))
        if not due:
            return []
        self._settle(scope)
        return [i for i in self.intents.pending(scope) if i.row_key not in running]

    def _round(self, scope: str, report: FlushReport, lease: HeldLease, taken: list[Intent], deadline: float,
               reads_done: Callable[[], None]) -> None:
        """Work, consume: one round on the intents taken. `reads_done` is called once the round only
        waits for its pool writes."""
        index_ready = self.reconciler.index_ready()
        if not index_ready or any(intent.kind == KIND_RESOURCE_GROUP for intent in taken):
            # Right after an upgrade the member index is empty: one full reconcile of every pool fills it.
            # A deleted or moved resource group names no owners: reconcile everything it may have held.
            pools = self.reconciler.pools_of_subscription(scope) if index_ready else None
            outcomes = self.reconciler.reconcile(pools, source="events", deadline=deadline)
            blocked = set() if all(o.status in DONE for o in outcomes) else {i.row_key for i in taken}
            unread: list[str] = []
        else:
            outcomes, blocked, unread = self._owner_round(taken, deadline, lease, reads_done)
            self._repair_index(deadline)
        report.rounds += 1
        report.outcomes = outcomes
        done = [intent for intent in taken if intent.row_key not in blocked]
        waiting = [intent for intent in taken if intent.row_key in blocked]
        consumed = self.intents.consume(done)
        report.intents += len(consumed)
        report.status = FLUSHED
        if waiting:
            not_done = [f"{o.pool_id}: {o.detail}" for o in outcomes if o.status not in DONE]
            reasons = "; ".join(not_done + unread)
            self.intents.defer(waiting, reasons)
            report.deferred += len(waiting)
            telemetry.emit("intents_deferred", logging.WARNING, subscription=scope, intents=len(waiting),
                           reason=reasons[:500])
        _report_applied(scope, consumed, outcomes)
        if any(outcome.status == "failed" for outcome in outcomes):
            raise FlushFailed(scope, outcomes)

    def _owner_round(self, taken: list[Intent], deadline: float, lease: HeldLease,
                     reads_done: Callable[[], None] | None = None,
                     ) -> tuple[list[PoolOutcome], set[str], list[str]]:
        """Work from the owners the intents name; the row keys of intents that must stay pending (a pool
        they touch is not done, or nothing could be decided for an owner that has entries), and why nothing
        was decided for those owners."""
        owners = {id_key(i.subject): Owner(i.kind, i.subject) for i in taken if i.kind in OWNER_KINDS}
        # Read after taking: every change whose intent we took is visible in the reconciler's read.
        # The flush lock fences the writes too: once lost, a successor may be working from a newer read.
        written = {id_key(i.subject) for i in taken if i.action == ACTION_WRITE}
        result = self.reconciler.reconcile_owners(list(owners.values()), deadline=deadline, fence=lease,
                                                  expect_present=written, reads_done=reads_done)
        waiting = result.owners_waiting()
        blocked = {i.row_key for i in taken if id_key(i.subject) in waiting}
        unread = [f"{key}: {reason}" for key, reason in result.undecided.items() if key in result.waiting]
        return result.outcomes, blocked, unread

    def _repair_index(self, deadline: float) -> None:
        """Pools a full reconcile could not build the index for are retried here, on their back-off; their
        failure is an alert, not a failed delivery (the round's own work is done)."""
        try:
            for outcome in self.reconciler.rebuild_unbuilt(deadline=deadline):
                if outcome.status == "failed":
                    log.warning("index repair of %s failed: %s", outcome.pool_id, outcome.detail)
        except Exception as error:  # never let the repair fail the events it was not asked for
            log.warning("index repair failed: %s", str(error).splitlines()[0] if str(error) else error)

    def _settle(self, scope: str) -> None:
        """Wait until no new intent arrived for `quiet_seconds`, or `max_wait_seconds` passed."""
        settings = self.settings
        start = last_change = self._clock()
        seen, newest = self.intents.recent_keys(scope, None)
        if newest is not None:
            # The flush request was hidden for the quiet period already: count the quiet time since the
            # newest intent's write (storage's clock; a skew only moves the start of the round).
            age = (datetime.now(UTC) - newest).total_seconds()
            last_change -= min(settings.quiet_seconds, max(0.0, age))
        while True:
            now = self._clock()
            remaining = min(settings.quiet_seconds - (now - last_change),
                            settings.max_wait_seconds - (now - start))
            if remaining <= 0:
                return
            self._sleep(min(settings.poll_seconds, remaining))
            # Look a little before the newest write seen: concurrent writes may commit out of order.
            since = newest - _STRAGGLER_MARGIN if newest is not None else None
            keys, latest = self.intents.recent_keys(scope, since)
            if not keys <= seen:
                seen |= keys
                last_change = self._clock()
            if latest is not None and (newest is None or latest > newest):
                newest = latest

    def sweep(self) -> list[FlushReport]:
        """Flush every subscription with due intents (left by a crashed or out-of-budget holder; deferred)."""
        return self.flush_each(self.intents.scopes_with_pending())

    def flush_each(self, scopes: list[str]) -> list[FlushReport]:
        """Flush each subscription; one that fails does not keep the others' intents waiting. The first
        failure is raised after all were tried (the others are logged)."""
        reports: list[FlushReport] = []
        failure: Exception | None = None
        for scope in scopes:
            try:
                reports.append(self.flush(scope))
            except Exception as error:
                log.error("flush of %s failed: %s", scope, error, extra={"subscription": scope})
                failure = failure or error
        if failure is not None:
            raise failure
        return reports



@dataclass
class _Running:
    """A round started by `Flusher._rounds`."""

    report: FlushReport
    row_keys: set[str]  # the intents it took: the next round must not take them again
    alone: bool  # a full reconcile: no other round beside it
    reads_done: threading.Event = field(default_factory=threading.Event)
    future: Future[None] | None = None

    def wait_for_reads(self) -> None:
        """Until the round only waits for its pool writes (or ended)."""
        assert self.future is not None
        while not self.reads_done.wait(0.05) and not self.future.done():
            pass


def _report_applied(scope: str, consumed: list[Intent], outcomes: list[PoolOutcome]) -> None:
    """One `event_applied` per event whose changes are now in place; `event_ignored` when nothing had to
    change. Coalesced events share their round's figures (`adds`/`removes` totals)."""
    written = [o.pool_id for o in outcomes if o.status == "written"]
    plans = [o.plan for o in outcomes if o.plan is not None and o.status == "written"]
    adds, removes = sum(len(p.adds) for p in plans), sum(len(p.removes) for p in plans)
    now = datetime.now(UTC)
    for intent in consumed:
        if not written:
            telemetry.emit("event_ignored", event_id=intent.row_key, subscription=scope,
                           reason="pools already match", coalesced=len(consumed))
            continue
        latency = (now - intent.event_time).total_seconds() * 1000 if intent.event_time else None
        telemetry.emit("event_applied", event_id=intent.row_key, subscription=scope, pools=written, adds=adds,
                       removes=removes, coalesced=len(consumed),
                       latency_ms=round(latency) if latency is not None else None)


# -- event intake ----------------------------------------------------------------------------------------


@dataclass
class EventResult:
    """What happened to one event, for the trigger's log line."""

    event_id: str
    decision: str  # ignored | recorded
    reason: str = ""
    subject: str | None = None
    flush_requested: bool = False  # False: a flush request this process sent earlier covers the event

    def log_fields(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "subject": self.subject,
            "decision": self.decision,
            "reason": self.reason,
            "flush_requested": self.flush_requested,
        }


class EventService:
    """Intake and flushing for one Runtime (built once per process, see `event_service`)."""

    def __init__(self, runtime: Runtime, intents: IntentStore, flusher: Flusher,
                 requests: FlushRequests) -> None:
        self.runtime = runtime
        self.intents = intents
        self.flusher = flusher
        self.requests = requests

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> EventService:
        settings = CoalesceSettings.from_env(runtime.settings)
        intents = IntentStore.from_settings(runtime.storage, runtime.settings)
        locks = FlushLocks.from_settings(runtime.storage, runtime.settings, settings.lease_seconds)
        requests = FlushRequests.from_settings(runtime.storage, settings.quiet_seconds)
        flusher = Flusher(runtime.reconciler, intents, locks, settings, handoff=requests.request_now)
        return cls(runtime, intents, flusher, requests)

    def handle(self, payload: Any) -> EventResult:
        """Classify, record, ask for a flush - no Azure call, no pool write: the delivery returns at once.
        MalformedEvent and storage errors propagate (Event Grid redelivers)."""
        decision = parse_event(payload, self.runtime.reconciler.watched_subscriptions())
        if isinstance(decision, Ignored):
            return EventResult(decision.event_id, "ignored", decision.reason, decision.subject)
        hint = decision
        self.intents.record(hint)
        requested = self.requests.request(hint.subscription)  # after the record: its flush will see it
        return EventResult(hint.event_id, "recorded", f"{hint.action} of a {hint.kind}", hint.resource_id,
                           flush_requested=requested)

    def flush(self, scope: str) -> FlushReport:
        """The flush a queued request asked for (the `flush_requests` trigger)."""
        return self.flusher.flush(scope)

    def sweep(self) -> list[FlushReport]:
        return self.flusher.sweep()


_service: tuple[Runtime, EventService] | None = None
_service_lock = threading.Lock()


def event_service(runtime: Runtime | None = None) -> EventService:
    """The EventService of the process runtime (rebuilt when a test installs another runtime)."""
    global _service
    runtime = runtime or get_runtime()
    with _service_lock:
        if _service is None or _service[0] is not runtime:
            _service = (runtime, EventService.from_runtime(runtime))
        return _service[1]


def sweep(runtime: Runtime | None = None) -> list[FlushReport]:
    """Flush every subscription that has due intents: for the sweep timer and the HTTP API."""
    return event_service(runtime).sweep()


def pending_intents(runtime: Runtime | None = None) -> dict[str, list[Intent]]:
    """Pending intents (due or deferred) by subscription (diagnostics for the HTTP API)."""
    intents = event_service(runtime).intents
    return {scope: intents.pending(scope, due_only=False)
            for scope in intents.scopes_with_pending(due_only=False)}
