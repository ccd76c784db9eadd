"""Event intake and the coalescing flusher: many events for one load balancer -> few pool writes.

Intake (per event): classify it, find the load balancers it can affect with the fewest reads, record one
durable intent per load balancer, then try to become that load balancer's flusher. A handler that does
not get the lock just returns: its intent is durable and the holder will see it.

Flusher (per load balancer, one at a time through a blob lease): wait for the burst to settle, take the
pending intents, run ONE full reconcile of the load balancer's managed pools against one list-based read
of what Azure holds now, delete exactly the intents taken, repeat while more are pending; release, and
look once more (an intent may have landed between the last look and the release). Crashed holders are
covered by the lease expiring: the next event or the timer's `sweep()` takes over.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shared import telemetry
from shared.events import (
    Ignored,
    ResourceHint,
    affected_lbs,
    parse_event,
)
from shared.intents import FlushLocks, Intent, IntentStore
from shared.reconciler import PoolOutcome, Reconciler
from shared.runtime import Runtime, get_runtime

log = logging.getLogger("poolsync.flusher")

_STRAGGLER_MARGIN = timedelta(seconds=2)


@dataclass(frozen=True)
class CoalesceSettings:
    quiet_seconds: float = 1.0  # no new intent for this long = the burst settled (~ one ARM operation)
    max_wait_seconds: float = 5.0  # a continuous stream still flushes at least this often
    poll_seconds: float = 0.1  # how often a waiting flusher looks for new intents (a cheap query)
    lease_seconds: int = 30  # blob lease (15-60 s), renewed while working
    budget_seconds: float = 20.0  # no new round after this: stay well inside Event Grid's 30 s delivery

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CoalesceSettings:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            quiet_seconds=float(env.get("POOLSYNC_COALESCE_QUIET", defaults.quiet_seconds)),
            max_wait_seconds=float(env.get("POOLSYNC_COALESCE_MAX_WAIT", defaults.max_wait_seconds)),
            poll_seconds=float(env.get("POOLSYNC_COALESCE_POLL", defaults.poll_seconds)),
            lease_seconds=int(env.get("POOLSYNC_FLUSH_LEASE_SECONDS", defaults.lease_seconds)),
            budget_seconds=float(env.get("POOLSYNC_FLUSH_BUDGET", defaults.budget_seconds)),
        )


class FlushFailed(RuntimeError):
    """A pool could not be reconciled (an Azure error outlived the retries); the intents stay pending."""

    def __init__(self, lb_id: str, outcomes: list[PoolOutcome]) -> None:
        failed = [f"{o.pool_id}: {o.detail}" for o in outcomes if o.status == "failed"]
        super().__init__(f"flush of {lb_id} failed: {'; '.join(failed)}")
        self.lb_id = lb_id
        self.outcomes = outcomes


# statuses of a FlushReport
FLUSHED = "flushed"  # held the lock and reconciled at least once
IDLE = "idle"  # held the lock, nothing was pending
BUSY = "busy"  # another flusher holds the lock: it will see our intents
DEFERRED = "deferred"  # out of budget with intents still pending: the next event or the sweep goes on


@dataclass
class FlushReport:
    lb_id: str
    status: str = IDLE
    rounds: int = 0
    intents: int = 0
    outcomes: list[PoolOutcome] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lb": self.lb_id,
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
    ) -> None:
        self.reconciler = reconciler
        self.intents = intents
        self.locks = locks
        self.settings = settings or CoalesceSettings()
        self._clock = clock
        self._sleep = sleep

    def flush(self, lb_id: str) -> FlushReport:
        """Apply everything pending for this load balancer if we can hold its lock; see the module doc."""
        report = FlushReport(lb_id)
        started = self._clock()
        while True:
            lease = self.locks.try_acquire(lb_id)
            if lease is None:
                if report.rounds == 0:
                    report.status = BUSY
                return report
            try:
                while not lease.lost:
                    if self._clock() - started > self.settings.budget_seconds:
                        report.status = DEFERRED
                        break
                    if not self._round(lb_id, report):
                        break
            finally:
                lease.release()
            if report.status == DEFERRED or lease.lost:
                log.warning("flush of %s stopped with intents pending (%s)", lb_id,
                            "budget spent" if report.status == DEFERRED else "lock lost", extra={"lb": lb_id})
                return report
            # An intent recorded after our last look found the lock still held and left it to us.
            if not self.intents.has_pending(lb_id):
                return report

    def _round(self, lb_id: str, report: FlushReport) -> bool:
        """Settle, take, reconcile, consume. False when nothing was pending."""
        if not self.intents.has_pending(lb_id):
            return False
        began = self._clock()
        self._settle(lb_id)
        settled = self._clock()
        taken = self.intents.pending(lb_id)
        if not taken:
            return False
        pools = self.reconciler.pools_of_lb(lb_id)
        outcomes: list[PoolOutcome] = []
        if pools:  # none when the rules stopped managing this load balancer since the intents were recorded
            # Read after taking: every change whose intent we took is already visible in this read.
            inventory = self.reconciler.read_inventory()
            log.debug("flush of %s: settled in %.2fs, took %d intents, read inventory in %.2fs", lb_id,
                      settled - began, len(taken), self._clock() - settled)
            outcomes = self.reconciler.reconcile(pools, inventory=inventory, source="events")
        report.rounds += 1
        report.outcomes = outcomes
        if any(outcome.status == "failed" for outcome in outcomes):
            raise FlushFailed(lb_id, outcomes)
        # A guard refusal consumes too: the refusal is logged with its plan, and retrying cannot change the
        # answer (an operator forces it through the HTTP API, or the rules change).
        consumed = self.intents.consume(taken)
        report.intents += len(consumed)
        report.status = FLUSHED
        _report_applied(lb_id, consumed, outcomes)
        return True

    def _settle(self, lb_id: str) -> None:
        """Wait until no new intent arrived for `quiet_seconds`, or `max_wait_seconds` passed."""
        settings = self.settings
        start = last_change = self._clock()
        seen, newest = self.intents.recent_keys(lb_id, None)
        while True:
            now = self._clock()
            remaining = min(settings.quiet_seconds - (now - last_change),
                            settings.max_wait_seconds - (now - start))
            if remaining <= 0:
                return
            self._sleep(min(settings.poll_seconds, remaining))
            # Look a little before the newest write seen: concurrent writes may commit out of order.
            since = newest - _STRAGGLER_MARGIN if newest is not None else None
            keys, latest = self.intents.recent_keys(lb_id, since)
            if not keys <= seen:
                seen |= keys
                last_change = self._clock()
            if latest is not None and (newest is None or latest > newest):
                newest = latest

    def sweep(self) -> list[FlushReport]:
        """Flush every load balancer with pending intents (left by a crashed or out-of-budget holder)."""
        return self.flush_each(self.intents.load_balancers_with_pending())

    def flush_each(self, lb_ids: list[str]) -> list[FlushReport]:
        """Flush each load balancer; one that fails does not keep the others' intents waiting. The first
        failure is raised after all were tried (the others are logged)."""
        reports: list[FlushReport] = []
        failure: Exception | None = None
        for lb_id in lb_ids:
            try:
                reports.append(self.flush(lb_id))
            except Exception as error:
                log.error("flush of %s failed: %s", lb_id, error, extra={"lb": lb_id})
                failure = failure or error
        if failure is not None:
            raise failure
        return reports


def _report_applied(lb_id: str, consumed: list[Intent], outcomes: list[PoolOutcome]) -> None:
    """One `event_applied` per event whose changes are now in place; `event_ignored` when nothing had to
    change or the guard refused. Coalesced events share their round's figures (`adds`/`removes` totals)."""
    written = [o.pool_id for o in outcomes if o.status == "written"]
    refused = [o.pool_id for o in outcomes if o.status == "refused"]
    plans = [o.plan for o in outcomes if o.plan is not None and o.status == "written"]
    adds, removes = sum(len(p.adds) for p in plans), sum(len(p.removes) for p in plans)
    now = datetime.now(UTC)
    for intent in consumed:
        if refused or not written:
            reason = f"guard_refused: {', '.join(refused)}" if refused else "pools already match"
            telemetry.emit("event_ignored", logging.WARNING if refused else logging.INFO,
                           event_id=intent.row_key, lb=lb_id, reason=reason, coalesced=len(consumed))
            continue
        latency = (now - intent.event_time).total_seconds() * 1000 if intent.event_time else None
        telemetry.emit("event_applied", event_id=intent.row_key, lb=lb_id, pools=written, adds=adds,
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
    load_balancers: list[str] = field(default_factory=list)
    flushes: list[FlushReport] = field(default_factory=list)

    def log_fields(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "subject": self.subject,
            "decision": self.decision,
            "reason": self.reason,
            "load_balancers": self.load_balancers,
            "flushes": [{"lb": f.lb_id, "status": f.status, "rounds": f.rounds, "intents": f.intents}
                        for f in self.flushes],
        }


class EventService:
    """Intake and flushing for one Runtime (built once per process, see `event_service`)."""

    def __init__(self, runtime: Runtime, intents: IntentStore, flusher: Flusher) -> None:
        self.runtime = runtime
        self.intents = intents
        self.flusher = flusher

    @classmethod
    def from_runtime(cls, runtime: Runtime) -> EventService:
        settings = CoalesceSettings.from_env(runtime.settings)
        intents = IntentStore.from_settings(runtime.storage, runtime.settings)
        locks = FlushLocks.from_settings(runtime.storage, runtime.settings, settings.lease_seconds)
        return cls(runtime, intents, Flusher(runtime.reconciler, intents, locks, settings))

    def affected_lbs(self, hint: ResourceHint) -> tuple[list[str], str]:
        """(load balancers, why) - a write reads the owner (VM + NICs, or NIC + VM) and nothing else."""
        if hint.is_write:
            owner = self.runtime.inventory.owner(hint.resource_id)
            if owner.nics:
                return affected_lbs(self.runtime.rules, owner), "owner's virtual networks"
            if owner.vms:  # a VM without NICs (cannot be created, but be safe): nothing can match
                return [], "owner has no network interfaces"
            # Gone by now (a write delivered after the delete): whatever it left behind must go.
        return self.runtime.rules.managed_lb_ids(), f"{hint.action} of a {hint.kind}: every managed LB"

    def handle(self, payload: Any) -> EventResult:
        """Classify, decide, record, flush. MalformedEvent and Azure/storage errors propagate."""
        decision = parse_event(payload, self.runtime.reconciler.watched_subscriptions())
        if isinstance(decision, Ignored):
            return EventResult(decision.event_id, "ignored", decision.reason, decision.subject)
        hint = decision
        lb_ids, why = self.affected_lbs(hint)
        if not lb_ids:
            return EventResult(hint.event_id, "ignored", "in no rule's virtual network", hint.resource_id)
        for lb_id in lb_ids:
            self.intents.record(lb_id, hint)
        result = EventResult(hint.event_id, "recorded", why, hint.resource_id, lb_ids)
        result.flushes = self.flusher.flush_each(lb_ids)
        return result

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
    """Flush every load balancer that has pending intents: for the audit timer and the HTTP API."""
    return event_service(runtime).sweep()


def pending_intents(runtime: Runtime | None = None) -> dict[str, list[Intent]]:
    """Pending intents by load balancer (diagnostics for the HTTP API)."""
    intents = event_service(runtime).intents
    return {lb_id: intents.pending(lb_id) for lb_id in intents.load_balancers_with_pending()}
