"""What a pool write remembers beyond its own read: the guard's window and drains of entries that left.

Two facts Azure does not keep, read once per pool write and handed to the pure plan
(`shared.core.guard.guarded_plan`):

- the unconfirmed removals poolsync applied to the pool within `POOLSYNC_GUARD_WINDOW`
  (`shared.storage.removal_ledger`), which the guard counts together with the plan's own;
- the drains of the pool (`shared.storage.report_store.DrainLedger`): an entry that was Down and is
  re-added under the same name (same NIC incarnation: the name holds its resourceGuid) comes back Down,
  until an operator enables it or the drain is older than `POOLSYNC_DRAIN_MAX_AGE`.

Before a write removes entries, the unconfirmed removals are recorded (unless an operator forced the
change) and every Down entry it removes keeps (or gets) its drain row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from shared import settings
from shared.core.audit_model import DrainRecord
from shared.core.durations import parse_duration
from shared.core.models import ADMIN_DOWN
from shared.core.naming import is_managed_name
from shared.core.plan import PoolPlan
from shared.storage.account import StorageSettings
from shared.storage.removal_ledger import RemovalLedger
from shared.storage.report_store import DrainLedger


@dataclass(frozen=True)
class Recall:
    """What one pool write knows beyond its read (inputs of `guarded_plan`)."""

    recent_unconfirmed: frozenset[str] = frozenset()
    admin_of_new: Mapping[str, str] = field(default_factory=dict)


def drain_max_age(env: Mapping[str, str]) -> timedelta:
    text = settings.DRAIN_MAX_AGE.text(env)
    return parse_duration(text, settings.DRAIN_MAX_AGE.name) if text else settings.DRAIN_MAX_AGE.default


class PoolMemory:
    def __init__(self, removals: RemovalLedger, drains: DrainLedger, guard_window: timedelta,
                 drain_max_age: timedelta, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.removals = removals
        self.drains = drains
        self.guard_window = guard_window
        self.drain_max_age = drain_max_age
        self._clock = clock

    @classmethod
    def from_settings(cls, storage: StorageSettings, env: Mapping[str, str],
                      guard_window: timedelta) -> PoolMemory:
        drains = DrainLedger(storage, settings.DRAIN_TABLE.text(env) or settings.DRAIN_TABLE.default)
        return cls(RemovalLedger.from_settings(storage, env), drains, guard_window, drain_max_age(env))

    def recall(self, pool_id: str) -> Recall:
        now = self._clock()
        drained = {name: ADMIN_DOWN for name, record in self.drains.of_pool(pool_id).items()
                   if now - record.since <= self.drain_max_age}
        return Recall(self.removals.recent(pool_id, self.guard_window, now), drained)

    def window_count(self, pool_id: str, present: set[str]) -> int:
        """Unconfirmed removals counted against the pool's window now (entries back in the pool do not)."""
        return len({n for n in self.removals.recent(pool_id, self.guard_window, self._clock())
                    if is_managed_name(n)} - present)

    def before_write(self, pool_id: str, plan: PoolPlan, *, forced: bool) -> None:
        """Remember what this write removes; called before its PUT (a row too many is harmless)."""
        if not forced:  # an operator's forced change is theirs, not the window's
            unconfirmed = [entry.name for entry in plan.unconfirmed_removes() if is_managed_name(entry.name)]
            self.removals.record(pool_id, unconfirmed)
        now = self._clock()
        self.drains.keep(DrainRecord(pool_id, entry.name, now) for entry in plan.removes
                         if entry.admin_state == ADMIN_DOWN)
