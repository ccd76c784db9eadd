"""The first full reconcile of a new deployment, run as soon as the app starts.

Until a full reconcile has filled the member index, the event path cannot tell which entries are poolsync's
and the pools stay as they were - on a first deployment, empty until the hourly anti-entropy timer. A
start-up timer (`first_build_timer`, runOnStartup) therefore calls `build_member_index_once`: when the index
was never built, one instance takes the `startup-full-reconcile` blob lease and runs the full reconcile;
every other instance (scale-out, a restart while it runs) sees the lease taken, or the index built, and
does nothing. Once built, the check is one cached flag per process.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from shared import telemetry
from shared.app.outcomes import PoolOutcome
from shared.app.reconciler import Reconciler
from shared.storage.intents import FlushLocks

log = logging.getLogger("poolsync.first_build")

FIRST_BUILD_LEASE = "startup-full-reconcile"


@dataclass(frozen=True)
class FirstBuild:
    ran: bool  # this call ran the full reconcile
    reason: str  # built already | no member index | another instance is building | built now
    outcomes: tuple[PoolOutcome, ...] = ()


def build_member_index_once(reconciler: Reconciler, locks: FlushLocks | None) -> FirstBuild:
    """Run the full reconcile when the member index was never built, under the first-build lease."""
    index = reconciler.index
    if index is None or locks is None:
        return FirstBuild(False, "no member index")
    if index.is_built():
        return FirstBuild(False, "built already")
    lease = locks.try_acquire_named(FIRST_BUILD_LEASE)
    if lease is None:
        return FirstBuild(False, "another instance is building")
    try:
        if index.is_built():  # the holder before us finished between our check and our lease
            return FirstBuild(False, "built already")
        outcomes = reconciler.reconcile(source="first-build")
    finally:
        lease.release()
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status] = counts.get(outcome.status, 0) + 1
    telemetry.emit("first_build", logging.WARNING if counts.get("failed") or counts.get("refused")
                   else logging.INFO, pools=len(outcomes), **counts)
    return FirstBuild(True, "built now", tuple(outcomes))
