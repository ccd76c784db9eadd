"""Durable intents and per-load-balancer flush locks in the app's storage account (Azurite locally).

An intent row says "load balancer X needs a reconcile because of event E". Rows live in one Table
partition per load balancer (RowKey = event id, so duplicate deliveries collapse) and are deleted only by
the flusher that took them, after the reconcile they asked for succeeded: no intent is ever lost.

The flush lock is a blob lease on `poolsync-locks/<lb key>`. It is there for coalescing, not safety:
if two flushers ever overlap (a holder paused past its lease), the pool writer's If-Match keeps both
correct; only a write is wasted.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode
from azure.storage.blob import BlobLeaseClient, ContainerClient

from shared.events import ResourceHint, intent_row_key
from shared.ids import id_key
from shared.storage import StorageSettings

log = logging.getLogger("poolsync.intents")

DEFAULT_INTENTS_TABLE = "poolsyncintents"
DEFAULT_LOCKS_CONTAINER = "poolsync-locks"
_TRANSACTION_LIMIT = 100  # Table batch limit


def lb_partition_key(lb_id: str) -> str:
    """A Table- and blob-safe key for a load balancer (ids hold `/`, which Table keys may not)."""
    return "lb-" + hashlib.sha256(id_key(lb_id).encode()).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class Intent:
    lb_id: str
    row_key: str
    etag: str | None  # the row as taken: a redelivery that rewrote it since keeps it pending
    event_type: str = ""
    subject: str = ""
    event_time: datetime | None = None  # when Azure emitted the event: end-to-end latency is measured from it


class IntentStore:
    def __init__(self, table: TableClient) -> None:
        self.table = table
        self._ready = False
        self._ready_lock = threading.Lock()

    @classmethod
    def from_settings(cls, storage: StorageSettings, env: Mapping[str, str]) -> IntentStore:
        name = env.get("POOLSYNC_INTENTS_TABLE") or DEFAULT_INTENTS_TABLE
        return cls(storage.table_service().get_table_client(name))

    def _ensure_table(self) -> None:
        if self._ready:
            return
        with self._ready_lock:
            if not self._ready:
                with contextlib.suppress(ResourceExistsError):
                    self.table.create_table()
                self._ready = True

    def record(self, lb_id: str, hint: ResourceHint) -> None:
        self._ensure_table()
        self.table.upsert_entity(
            {
                "PartitionKey": lb_partition_key(lb_id),
                "RowKey": intent_row_key(hint.event_id),
                "LoadBalancerId": lb_id,
                "EventType": hint.event_type,
                "Subject": hint.resource_id,
                "Action": hint.action,
                "RecordedAt": datetime.now(UTC),
                **({"EventTime": hint.event_time} if hint.event_time is not None else {}),
            },
            mode=UpdateMode.REPLACE,
        )

    def _query(self, lb_id: str, select: list[str] | None = None, page_size: int | None = None) -> Any:
        self._ensure_table()
        return self.table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": lb_partition_key(lb_id)}, select=select,
            results_per_page=page_size,
        )

    def pending(self, lb_id: str) -> list[Intent]:
        return [
            Intent(lb_id, row["RowKey"], row.metadata.get("etag"), row.get("EventType", ""),
                   row.get("Subject", ""), row.get("EventTime"))
            for row in self._query(lb_id, ["RowKey", "EventType", "Subject", "EventTime"])
        ]

    def recent_keys(self, lb_id: str, since: datetime | None) -> tuple[set[str], datetime | None]:
        """RowKeys of intents written at or after `since` (all when None), and the newest write time seen.

        A cheap "did anything arrive?" probe for a waiting flusher: it reads the last moments only."""
        self._ensure_table()
        query, parameters = "PartitionKey eq @pk", {"pk": lb_partition_key(lb_id)}
        if since is not None:
            query += " and Timestamp ge @since"
            parameters["since"] = since  # type: ignore[assignment]
        keys, newest = set(), None
        for row in self.table.query_entities(query, parameters=parameters, select=["RowKey", "Timestamp"]):
            keys.add(row["RowKey"])
            stamp = row.metadata.get("timestamp")
            if stamp is not None and (newest is None or stamp > newest):
                newest = stamp
        return keys, newest

    def has_pending(self, lb_id: str) -> bool:
        for _ in self._query(lb_id, ["RowKey"], page_size=1):
            return True
        return False

    def consume(self, intents: Iterable[Intent]) -> list[Intent]:
        """Delete exactly these rows, as taken; returns those that went. A row rewritten since it was taken
        (a redelivery of the same event) stays pending, and so does anything recorded meanwhile."""
        by_partition: dict[str, list[Intent]] = {}
        for intent in intents:
            by_partition.setdefault(lb_partition_key(intent.lb_id), []).append(intent)
        deleted: list[Intent] = []
        for partition, rows in by_partition.items():
            for start in range(0, len(rows), _TRANSACTION_LIMIT):
                deleted += self._delete_batch(partition, rows[start:start + _TRANSACTION_LIMIT])
        return deleted

    def _delete_batch(self, partition: str, rows: list[Intent]) -> list[Intent]:
        operations: list[Any] = [
            ("delete", {"PartitionKey": partition, "RowKey": row.row_key},
             {"etag": row.etag, "match_condition": MatchConditions.IfNotModified})
            for row in rows
        ]
        try:
            self.table.submit_transaction(operations)
            return rows
        except TableTransactionError:
            pass  # one row changed or vanished: fall back to row by row, skipping those
        deleted = []
        for row in rows:
            try:
                self.table.delete_entity(partition, row.row_key, etag=row.etag,
                                         match_condition=MatchConditions.IfNotModified)
                deleted.append(row)
            except ResourceNotFoundError:
                pass
            except HttpResponseError as error:
                if error.status_code != 412:
                    raise
        return deleted

    def load_balancers_with_pending(self) -> list[str]:
        """Every load balancer that has intents waiting (for the sweep)."""
        self._ensure_table()
        found: dict[str, str] = {}
        for row in self.table.list_entities(select=["PartitionKey", "LoadBalancerId"]):
            found.setdefault(row["PartitionKey"], row["LoadBalancerId"])
        return list(found.values())


class HeldLease:
    """A flush lock being held; renewed from a background thread until released."""

    def __init__(self, lb_id: str, lease: BlobLeaseClient, duration: int) -> None:
        self.lb_id = lb_id
        self._lease = lease
        self._stop = threading.Event()
        self.lost = False
        self._thread = threading.Thread(target=self._renew, args=(max(1.0, duration / 3),),
                                        name="poolsync-lease-renew", daemon=True)
        self._thread.start()

    def _renew(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._lease.renew()
            except HttpResponseError as error:
                if error.status_code is not None and error.status_code >= 500:  # storage busy: still ours
                    log.warning("could not renew the flush lock of %s: %s", self.lb_id, error)
                    continue
                # Another flusher holds it now (we paused too long): finish nothing new, see `lost`.
                log.warning("lost the flush lock of %s: %s", self.lb_id, error, extra={"lb": self.lb_id})
                self.lost = True
                return
            except Exception as error:  # network blip: try again next interval, the lease still runs
                log.warning("could not renew the flush lock of %s: %s", self.lb_id, error)

    def release(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self.lost:
            return
        try:
            self._lease.release()
        except HttpResponseError as error:  # expired or taken over: nothing to release
            log.info("flush lock of %s was already gone at release: %s", self.lb_id, error)


class FlushLocks:
    def __init__(self, container: ContainerClient, lease_seconds: int = 30) -> None:
        if not 15 <= lease_seconds <= 60:
            raise ValueError("a blob lease lasts 15 to 60 seconds")
        self.container = container
        self.lease_seconds = lease_seconds
        self._ready = False

    @classmethod
    def from_settings(
        cls, storage: StorageSettings, env: Mapping[str, str], lease_seconds: int
    ) -> FlushLocks:
        name = env.get("POOLSYNC_LOCKS_CONTAINER") or DEFAULT_LOCKS_CONTAINER
        return cls(storage.blob_service().get_container_client(name), lease_seconds)

    def try_acquire(self, lb_id: str) -> HeldLease | None:
        """The lock of this load balancer, or None when another flusher holds it."""
        blob = self.container.get_blob_client(lb_partition_key(lb_id))
        for first_attempt in (True, False):
            try:
                lease = blob.acquire_lease(lease_duration=self.lease_seconds)
                return HeldLease(lb_id, lease, self.lease_seconds)
            except ResourceNotFoundError:
                if not first_attempt:
                    raise
                self._create(blob)
            except HttpResponseError as error:
                if error.status_code == 409:  # LeaseAlreadyPresent
                    return None
                raise
        return None

    def _create(self, blob: Any) -> None:
        if not self._ready:
            with contextlib.suppress(ResourceExistsError):
                self.container.create_container()
            self._ready = True
        try:
            blob.upload_blob(b"", overwrite=False)
        except (ResourceExistsError, HttpResponseError) as error:
            if getattr(error, "status_code", None) not in (409, 412):
                raise
