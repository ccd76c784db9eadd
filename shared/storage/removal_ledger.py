"""The guard's memory: unconfirmed removals poolsync applied to each pool, for `POOLSYNC_GUARD_WINDOW`.

The blast-radius guard judges one plan; without memory, a mass removal cut into one-owner rounds passes
round by round. One Table partition per pool (a digest of its id), one row per removed entry name
(`RemovedAt`): a pool's write reads its partition once (dropping rows older than the window) and the
pure guard counts what is left (`shared.core.guard.guard_refusal`). Rows are written before the PUT that
removes the entries, so a crash between the two leaves a row too many (the guard ignores rows whose entry
is still in the pool), never one too few.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from shared import settings
from shared.core.ids import id_key
from shared.storage.account import CreatedOnce, StorageSettings

DEFAULT_REMOVALS_TABLE = settings.REMOVALS_TABLE.default
_BATCH = 100  # most rows Table storage takes in one transaction


def _partition(pool_id: str) -> str:
    return hashlib.sha256(id_key(pool_id).encode()).hexdigest()[:40]  # ids hold "/", not allowed in keys


class RemovalLedger:
    def __init__(self, table: TableClient) -> None:
        self.table = table
        self._ensure_table = CreatedOnce(table.create_table)

    @classmethod
    def from_settings(cls, storage: StorageSettings, env: Mapping[str, str]) -> RemovalLedger:
        return cls(storage.table_service().get_table_client(settings.REMOVALS_TABLE.or_default(env)))

    def recent(self, pool_id: str, window: timedelta, now: datetime | None = None) -> frozenset[str]:
        """Lower-cased names of the entries removed unconfirmed from `pool_id` within `window` of `now`;
        older rows are deleted on the way."""
        self._ensure_table()
        cutoff = (now or datetime.now(UTC)) - window
        recent: set[str] = set()
        for row in self.table.query_entities("PartitionKey eq @pk", parameters={"pk": _partition(pool_id)}):
            removed_at = row["RemovedAt"]
            if removed_at.tzinfo is None:
                removed_at = removed_at.replace(tzinfo=UTC)
            if removed_at >= cutoff:
                recent.add(row["RowKey"])
                continue
            with contextlib.suppress(ResourceNotFoundError):
                self.table.delete_entity(row["PartitionKey"], row["RowKey"])
        return frozenset(recent)

    def record(self, pool_id: str, names: Iterable[str], when: datetime | None = None) -> None:
        """Note that poolsync removes these entries of `pool_id` with no read confirming their owner gone."""
        rows = {name.lower() for name in names}
        if not rows:
            return
        self._ensure_table()
        removed_at = when or datetime.now(UTC)
        entities = [{"PartitionKey": _partition(pool_id), "RowKey": name, "PoolId": pool_id,
                     "RemovedAt": removed_at} for name in sorted(rows)]  # names are valid RowKeys
        for start in range(0, len(entities), _BATCH):  # one partition: up to 100 rows per transaction
            self.table.submit_transaction([("upsert", entity, {"mode": UpdateMode.REPLACE})
                                           for entity in entities[start:start + _BATCH]])
