"""The last reconcile of each pool (for `GET /api/pools`), kept in a table by the Reconciler."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from azure.core.exceptions import ResourceNotFoundError

from shared import settings
from shared.core.ids import id_key
from shared.core.plan import PoolPlan
from shared.storage.account import StorageSettings

log = logging.getLogger("poolsync.reconcile_log")
JSON = Any

RECONCILE_TABLE = settings.RECONCILE_TABLE.default
RECONCILE_TABLE_ENV = settings.RECONCILE_TABLE.name
_RECONCILE_PARTITION = "pool"


class ReconciledPool(Protocol):
    """What the log keeps of a reconcile's outcome (the Reconciler's PoolOutcome has these)."""

    @property
    def pool_id(self) -> str: ...

    @property
    def status(self) -> str: ...

    @property
    def plan(self) -> PoolPlan | None: ...

    @property
    def detail(self) -> str: ...


def _pool_row_key(pool_id: str) -> str:
    return hashlib.sha256(id_key(pool_id).encode()).hexdigest()[:40]  # ids hold "/", not allowed in keys


class ReconcileLog:
    """The last reconcile of each pool, for `GET /api/pools`. Whoever reconciles may call `record`.

    Best effort by design: a storage outage must not fail a reconcile, so errors are logged, and a
    pool without a row simply shows `lastReconcile: null`.
    """

    def __init__(self, storage: StorageSettings, table_name: str = RECONCILE_TABLE) -> None:
        self.storage = storage
        self.table_name = table_name

    @classmethod
    def from_env(cls, storage: StorageSettings, env: Mapping[str, str]) -> ReconcileLog:
        return cls(storage, settings.RECONCILE_TABLE.or_default(env))

    def record(self, outcomes: Iterable[ReconciledPool], source: str, by: str | None = None) -> None:
        """One row per pool; `by` names who asked (an operator's reconcile), None for poolsync's own runs."""
        try:
            table = self.storage.table_service().create_table_if_not_exists(self.table_name)
            for outcome in outcomes:
                table.upsert_entity(
                    {
                        "PartitionKey": _RECONCILE_PARTITION,
                        "RowKey": _pool_row_key(outcome.pool_id),
                        "poolId": outcome.pool_id,
                        "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                        "status": outcome.status,
                        "source": source,
                        "by": by or "",  # written every time: upsert merges, an old name must not stay
                        "summary": json.dumps(outcome.plan.summary() if outcome.plan else None),
                        "detail": (outcome.detail or "")[:2000],
                    }
                )
        except Exception as error:  # the reconcile itself succeeded; only the bookkeeping failed
            log.warning("could not record reconcile outcome: %s", error)

    def last(self) -> dict[str, dict[str, JSON]]:
        """Pool key -> {at, status, source, by, summary}."""
        try:
            table = self.storage.table_service().get_table_client(self.table_name)
            rows = list(table.query_entities(f"PartitionKey eq '{_RECONCILE_PARTITION}'"))
        except ResourceNotFoundError:
            return {}
        except Exception as error:
            log.warning("could not read reconcile records: %s", error)
            return {}
        return {
            id_key(row["poolId"]): {
                "at": row.get("at"),
                "status": row.get("status"),
                "source": row.get("source"),
                "by": row.get("by") or None,
                "summary": json.loads(row["summary"]) if row.get("summary") else None,
                "detail": row.get("detail") or "",
            }
            for row in rows
            if row.get("poolId")
        }


