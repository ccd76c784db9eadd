"""What a reconcile says it did: one `PoolOutcome` per pool, an event-path round's `OwnerRound`, and the
journal real runs are recorded in.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from shared.azure.pool_writer import WriteResult
from shared.core.changes import ChangeSet
from shared.core.ids import id_key
from shared.core.plan import PoolPlan


@dataclass(frozen=True)
class PoolOutcome:
    pool_id: str
    # unchanged | planned | written | refused (the guard held removals back) | failed (Azure error past the
    # retries) | rejected (Azure refused the plan: its removals were applied alone) | conflict (event path:
    # an add or move is blocked by another entry holding the IP)
    status: str
    plan: PoolPlan | None = None
    detail: str = ""
    result: WriteResult | None = field(default=None, repr=False)
    error: AzureError | None = field(default=None, repr=False, compare=False)  # why it `failed`

    def as_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool_id,
            "status": self.status,
            "plan": self.plan.summary() if self.plan is not None else None,
            "diff": self.plan.render() if self.plan is not None else "",
            "detail": self.detail,
        }


# The statuses of a pool brought to what Azure's state says; any other keeps the intents that touched it
# pending.
DONE = ("written", "unchanged")


@dataclass
class OwnerRound:
    """What one event-path round did: per-pool outcomes, the pools each owner touched, and the owners
    nothing could be decided for (their reads were refused)."""

    outcomes: list[PoolOutcome] = field(default_factory=list)
    # owner key -> the pools it touches that were not done, as of the last pass that planned this owner.
    # Per owner, not per pool: a later pass plans a pool again for some owners only (the conflict's and
    # the pulled-in blocker's), so its "done" says nothing about the owners it left out.
    not_done_by_owner: dict[str, set[str]] = field(default_factory=dict)
    undecided: dict[str, str] = field(default_factory=dict)  # owner key -> why
    waiting: set[str] = field(default_factory=set)  # undecided owners that have entries: their intents wait

    def add(self, changes: ChangeSet, outcomes: list[PoolOutcome]) -> None:
        """Merge one pass: a pool's latest outcome wins, but a write earlier in the round stays a write and
        a pool left not done (other than by a conflict, which is what later passes resolve) stays so."""
        by_pool = {id_key(o.pool_id): o for o in self.outcomes}
        for outcome in outcomes:
            earlier = by_pool.get(id_key(outcome.pool_id))
            if earlier is not None and earlier.status not in (*DONE, "conflict") and outcome.status in DONE:
                continue
            if earlier is not None and earlier.status == "written" and outcome.status == "unchanged":
                outcome = replace(outcome, status="written", plan=earlier.plan)
            by_pool[id_key(outcome.pool_id)] = outcome
        self.outcomes = list(by_pool.values())
        not_done = {id_key(o.pool_id) for o in outcomes if o.status not in DONE}
        for owner_key, pools in changes.pools_by_owner.items():
            self.not_done_by_owner[owner_key] = pools & not_done
        self.undecided.update(changes.undecided)
        self.waiting |= changes.undecided_with_entries

    def owners_waiting(self) -> set[str]:
        """Owner keys whose intents must stay pending: a pool they touch is not done, or a read was refused
        for an owner with entries."""
        return {key for key, pools in self.not_done_by_owner.items() if pools} | self.waiting


class Journal(Protocol):
    """Where outcomes of real (not dry-run) reconciles are recorded, e.g. shared.storage.reconcile_log."""

    def record(self, outcomes: Iterable[PoolOutcome], source: str, by: str | None = None) -> None: ...

    def last(self) -> dict[str, dict[str, Any]]: ...


class NoJournal:
    def record(self, outcomes: Iterable[PoolOutcome], source: str, by: str | None = None) -> None:
        pass

    def last(self) -> dict[str, dict[str, Any]]:
        return {}


def blocked_by_ip(outcome: PoolOutcome) -> bool:
    """Another managed entry holding the IP blocked an add or move in this pool. Also when the guard held
    a removal in the same plan (`refused`): the hold must not keep a replacement out."""
    return outcome.status in ("conflict", "refused") and outcome.plan is not None \
        and bool(outcome.plan.ip_blockers())
