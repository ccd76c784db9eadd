"""Durable intents, per-scope flush locks and per-load-balancer write leases in the app's storage account.

An intent row says "something in subscription S changed because of event E": which VM, NIC or resource
group (the event's subject), nothing about what to do. Rows live in one Table partition per watched
subscription (RowKey = event id, so duplicate deliveries collapse) and are deleted only by the flusher that
took them, after the work they asked for was done: no intent is ever lost. Work that must wait (a refused
removal, a busy or failing load balancer) stays pending with a back-off (`Attempts`, `NotBefore`).

Two kinds of blob lease live in `poolsync-locks`:
- `sub-<key>`: the flush lock of a subscription, for coalescing (one flusher drains a burst);
- `lb-<key>`: the write lease of a load balancer. Every writer (flusher, HTTP API, audit, full
  reconcile) holds it while it reads and writes that load balancer's pools. Just before each PUT the
  holder renews it synchronously and records the pool in the blob's metadata (`writing`), with its lease
  (`HeldLease.begin_write`); once the PUT was answered so that no earlier PUT of ours can still match
  the pool's ETag, it clears the entry (`HeldLease.put_answered`). A lease-conditioned write fails once
  another holder has the lease, and each holder reads the metadata right after acquiring it: a pool
  still listed there (`HeldLease.unfinished`) may get a PUT from a writer that paused or died after its
  proof, so the new holder fences it (pool_writer) before it writes anything on that load balancer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

from shared import settings
from shared.core.events import ResourceHint, intent_row_key
from shared.core.ids import id_key
from shared.errors import LeaseError
from shared.storage.account import CreatedOnce, StorageSettings

log = logging.getLogger("poolsync.intents")

DEFAULT_INTENTS_TABLE = settings.INTENTS_TABLE.default
DEFAULT_LOCKS_CONTAINER = settings.LOCKS_CONTAINER.default
_TRANSACTION_LIMIT = 100  # Table batch limit
BACKOFF_BASE_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 900.0
# Metadata of an `lb-` lease blob: the pools (JSON list of ids) whose PUT a holder may still have in flight.
WRITING_METADATA = "writing"


def _key(prefix: str, text: str) -> str:
    return prefix + hashlib.sha256(text.lower().encode()).hexdigest()[:40]


def lb_partition_key(lb_id: str) -> str:
    """A Table- and blob-safe key for a load balancer (ids hold `/`, which Table keys may not)."""
    return _key("lb-", id_key(lb_id))


def scope_partition_key(subscription: str) -> str:
    """The intents partition and flush-lock blob of one watched subscription."""
    return _key("sub-", subscription)


def backoff_seconds(attempts: int) -> float:
    """Exponential back-off for deferred intents: 10 s, 20 s, 40 s, ... at most 15 minutes."""
    return float(min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** max(0, attempts - 1)))


@dataclass(frozen=True, slots=True)
class Intent:
    scope: str  # the watched subscription (lower-case)
    row_key: str
    etag: str | None  # the row as taken: a redelivery that rewrote it since keeps it pending
    event_type: str = ""
    subject: str = ""  # the hint's resource id: a VM, a NIC or a resource group
    kind: str = ""
    action: str = ""
    event_time: datetime | None = None  # when Azure emitted the event: end-to-end latency is measured from it
    attempts: int = 0  # times this intent was deferred

    @classmethod
    def from_row(cls, row: Any) -> Intent:
        return cls(row.get("Scope", ""), row["RowKey"], row.metadata.get("etag"), row.get("EventType", ""),
                   row.get("Subject", ""), row.get("Kind", ""), row.get("Action", ""), row.get("EventTime"),
                   int(row.get("Attempts") or 0))


_INTENT_FIELDS = ["RowKey", "Scope", "EventType", "Subject", "Kind", "Action", "EventTime", "Attempts",
                  "NotBefore"]


class IntentStore:
    def __init__(self, table: TableClient, clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.table = table
        self._clock = clock
        self._ensure_table = CreatedOnce(table.create_table)

    @classmethod
    def from_settings(cls, storage: StorageSettings, env: Mapping[str, str]) -> IntentStore:
        name = settings.INTENTS_TABLE.or_default(env)
        return cls(storage.table_service().get_table_client(name))

    def record(self, hint: ResourceHint) -> None:
        """Durably note the hint in its subscription's partition (a redelivery replaces the row: due now)."""
        self._ensure_table()
        self.table.upsert_entity(
            {
                "PartitionKey": scope_partition_key(hint.subscription),
                "RowKey": intent_row_key(hint.event_id),
                "Scope": hint.subscription,
                "EventType": hint.event_type,
                "Subject": hint.resource_id,
                "Kind": hint.kind,
                "Action": hint.action,
                "RecordedAt": self._clock(),
                **({"EventTime": hint.event_time} if hint.event_time is not None else {}),
            },
            mode=UpdateMode.REPLACE,
        )

    def _rows(self, scope: str, select: list[str] | None = None) -> Any:
        self._ensure_table()
        return self.table.query_entities(
            "PartitionKey eq @pk", parameters={"pk": scope_partition_key(scope)}, select=select)

    def _due(self, row: Any, now: datetime) -> bool:
        not_before = row.get("NotBefore")
        return not_before is None or not_before <= now

    def pending(self, scope: str, *, due_only: bool = True) -> list[Intent]:
        now = self._clock()
        return [Intent.from_row(row) for row in self._rows(scope, _INTENT_FIELDS)
                if not due_only or self._due(row, now)]

    def has_pending(self, scope: str) -> bool:
        now = self._clock()
        return any(self._due(row, now) for row in self._rows(scope, ["RowKey", "NotBefore"]))

    def recent_keys(self, scope: str, since: datetime | None) -> tuple[set[str], datetime | None]:
        """RowKeys of intents written at or after `since` (all when None), and the newest write time seen.

        A cheap "did anything arrive?" probe for a waiting flusher: it reads the last moments only."""
        self._ensure_table()
        query, parameters = "PartitionKey eq @pk", {"pk": scope_partition_key(scope)}
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

    def consume(self, intents: Iterable[Intent]) -> list[Intent]:
        """Delete exactly these rows, as taken; returns those that went. A row rewritten since it was taken
        (a redelivery of the same event) stays pending, and so does anything recorded meanwhile."""
        by_partition: dict[str, list[Intent]] = {}
        for intent in intents:
            by_partition.setdefault(scope_partition_key(intent.scope), []).append(intent)
        deleted: list[Intent] = []
        for partition, rows in by_partition.items():
            for start in range(0, len(rows), _TRANSACTION_LIMIT):
                deleted += self._delete_batch(partition, rows[start:start + _TRANSACTION_LIMIT])
        return deleted

    def defer(self, intents: Iterable[Intent], reason: str) -> datetime | None:
        """Keep these intents pending but not due before a back-off; returns the latest NotBefore set.

        A row rewritten since it was taken (redelivered) is left as it is: it is due again anyway."""
        latest: datetime | None = None
        for intent in intents:
            attempts = intent.attempts + 1
            not_before = self._clock() + timedelta(seconds=backoff_seconds(attempts))
            entity = {"PartitionKey": scope_partition_key(intent.scope), "RowKey": intent.row_key,
                      "Attempts": attempts, "NotBefore": not_before, "DeferredBecause": reason[:1000]}
            try:
                self.table.update_entity(entity, mode=UpdateMode.MERGE, etag=intent.etag,
                                         match_condition=MatchConditions.IfNotModified)
            except ResourceNotFoundError:
                continue
            except HttpResponseError as error:
                if error.status_code != 412:
                    raise
                continue
            latest = not_before if latest is None or not_before > latest else latest
        return latest

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

    def due_subjects(self) -> set[str]:
        """Id keys of the resources the due intents name, every subscription: those a round may be working
        on now. A deferred intent's next round reads Azure afresh and writes rows of its own."""
        try:
            now = self._clock()
            rows = self.table.list_entities(select=["Subject", "NotBefore"])
            return {id_key(row["Subject"]) for row in rows if row.get("Subject") and self._due(row, now)}
        except ResourceNotFoundError:
            return set()

    def scopes_with_pending(self, *, due_only: bool = True) -> list[str]:
        """Every subscription that has intents waiting (for the sweep)."""
        self._ensure_table()
        now = self._clock()
        found: dict[str, str] = {}
        for row in self.table.list_entities(select=["PartitionKey", "Scope", "NotBefore"]):
            if not due_only or self._due(row, now):
                found.setdefault(row["PartitionKey"], row.get("Scope", ""))
        return [scope for scope in found.values() if scope]


class LeaseLost(LeaseError, RuntimeError):
    """The lease is no longer ours (or we cannot prove it is): do not write."""


class HeldLease:
    """A blob lease being held; renewed from a background thread until released.

    `lost` turns true when the lease was taken over, or when no renewal succeeded for long enough that it
    may have expired (storage errors do not extend a lease). `check()` renews synchronously: a writer calls
    it just before each PUT, so a holder that paused past its lease does not write.

    A load balancer's write lease also keeps, on its blob, the pools whose PUT may be in flight (see the
    module doc): `unfinished` are those an earlier holder left, `begin_write` / `put_answered` / `fenced`
    keep the record current. Without a blob (flush locks) nothing is recorded."""

    def __init__(self, name: str, lease: BlobLeaseClient, duration: int,
                 clock: Callable[[], float] = time.monotonic, *, blob: BlobClient | None = None,
                 writing: Iterable[str] = ()) -> None:
        self.name = name
        self._lease = lease
        self._duration = duration
        self._clock = clock
        self._renewed_at = clock()
        self._renew_lock = threading.Lock()
        self._stop = threading.Event()
        self._taken_over = False
        self._blob = blob
        self._record_lock = threading.Lock()
        self._unfinished = {pool_id.lower(): pool_id for pool_id in writing}
        self._writing = dict(self._unfinished)  # lower-case id -> id, as last written to the blob
        self._uncertain: set[str] = set()  # pools with a PUT of ours that got no definite answer
        self._thread = threading.Thread(target=self._renew_loop, args=(max(1.0, duration / 3),),
                                        name="poolsync-lease-renew", daemon=True)
        self._thread.start()

    @property
    def lost(self) -> bool:
        # A margin of a third of the duration: a renewal in flight at expiry does not count.
        return self._taken_over or self._clock() - self._renewed_at > self._duration * 2 / 3

    @property
    def unfinished(self) -> tuple[str, ...]:
        """Pools an earlier holder recorded as being written and never cleared: fence them before writing."""
        with self._record_lock:
            return tuple(sorted(self._unfinished.values()))

    def _renew_once(self) -> None:
        with self._renew_lock:
            started = self._clock()
            try:
                self._lease.renew()
            except HttpResponseError as error:
                if error.status_code is not None and error.status_code >= 500:
                    raise
                self._taken_over = True  # 409/412: another holder has it now
                raise
            self._renewed_at = started

    def _renew_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self._renew_once()
            except Exception as error:  # busy storage or a network blip: `lost` turns true if it lasts
                log.warning("could not renew the lease %s: %s", self.name, str(error).splitlines()[0])
                if self._taken_over:
                    log.warning("lost the lease %s", self.name, extra={"lease": self.name})
                    return

    def check(self) -> None:
        """Prove the lease is still ours right now (a synchronous renewal), else raise LeaseLost."""
        if self._taken_over:
            raise LeaseLost(f"lease {self.name} was taken over")
        try:
            self._renew_once()
        except Exception as error:
            raise LeaseLost(f"lease {self.name} could not be renewed: {_first_line(error)}") from error

    def begin_write(self, pool_id: str) -> None:
        """The proof just before a PUT of `pool_id`: renew, then record the pool on the blob with our lease.

        LeaseLost (do not PUT) when either fails: once another holder has the lease, our record cannot be
        written, and a record written before that is what the new holder reads first."""
        self.check()
        with self._record_lock:
            self._write_record({**self._writing, pool_id.lower(): pool_id})

    def put_answered(self, pool_id: str, status: int | None) -> None:
        """The PUT of `pool_id` was answered with HTTP `status` (None: no answer - connection error or
        timeout). Clears the pool's record once no PUT we sent for it can still land: after an accepted
        PUT (2xx: a new ETag) or a 412 (the ETag moved past every If-Match we sent); after another 4xx only
        when no earlier PUT of ours is in doubt (a 409/429 leaves the ETag where it was). No answer or a 5xx
        keeps the record: that PUT may still land, and the next holder fences the pool."""
        key = pool_id.lower()
        with self._record_lock:
            if status is None or status >= 500:
                self._uncertain.add(key)
                return
            if not (status < 300 or status == 412) and key in self._uncertain:
                return
            self._uncertain.discard(key)
            self._clear(key)

    def fenced(self, pool_id: str) -> None:
        """An earlier holder's unfinished PUT of `pool_id` can no longer land: forget it (LeaseLost if the
        record cannot be updated - then the next holder fences it again)."""
        with self._record_lock:
            self._unfinished.pop(pool_id.lower(), None)
            self._clear(pool_id.lower(), strict=True)

    def _clear(self, key: str, *, strict: bool = False) -> None:
        if key not in self._writing:
            return
        try:
            self._write_record({k: v for k, v in self._writing.items() if k != key})
        except LeaseLost as error:
            if strict:
                raise
            # The entry stays on the blob: whoever holds the lease next fences the pool (harmless).
            log.warning("could not clear %s from the write record of %s: %s", key, self.name, error)

    def _write_record(self, writing: dict[str, str]) -> None:
        """Replace the blob's record with `writing`, conditioned on our lease (LeaseLost if that fails)."""
        if self._blob is None:
            return
        try:
            self._blob.set_blob_metadata(writing_metadata(writing.values()), lease=self._lease)
        except Exception as error:
            if isinstance(error, HttpResponseError) and error.status_code in (409, 412):
                self._taken_over = True  # the lease is someone else's (or nobody's) now
            self._writing = {**self._writing, **writing}  # unknown whether it landed: keep every entry
            raise LeaseLost(f"lease {self.name}: could not record the pools being written: "
                            f"{_first_line(error)}") from error
        self._writing = dict(writing)

    def release(self) -> None:
        if self._stop.is_set():
            return  # released already
        self._stop.set()
        self._thread.join(timeout=10)
        if self._taken_over:
            return
        try:
            self._lease.release()
        except HttpResponseError as error:  # expired or taken over: nothing to release
            log.info("lease %s was already gone at release: %s", self.name, error)


def _first_line(error: BaseException) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def writing_metadata(pool_ids: Iterable[str]) -> dict[str, str]:
    """Blob metadata recording these pools as being written (none: empty metadata). Metadata travels in
    HTTP headers, so the JSON is ASCII-only."""
    ids = sorted(set(pool_ids))
    return {WRITING_METADATA: json.dumps(ids, ensure_ascii=True)} if ids else {}


def pools_being_written(metadata: Mapping[str, str] | None) -> list[str]:
    """The pools an lb- lease blob's metadata records as being written."""
    raw = (metadata or {}).get(WRITING_METADATA)
    if not raw:
        return []
    value = json.loads(raw)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"the {WRITING_METADATA} metadata is not a list of pool ids: {raw[:200]}")
    return value


class FlushLocks:
    """Blob leases by name: `sub-...` flush locks and `lb-...` write leases."""

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
        name = settings.LOCKS_CONTAINER.or_default(env)
        return cls(storage.blob_service().get_container_client(name), lease_seconds)

    def try_acquire_scope(self, scope: str) -> HeldLease | None:
        return self._try_acquire(scope_partition_key(scope), scope)

    def try_acquire_named(self, name: str) -> HeldLease | None:
        """A lease of poolsync's own (one job across instances, e.g. the first full reconcile)."""
        return self._try_acquire(name, name)

    def try_acquire_lb(self, lb_id: str) -> HeldLease | None:
        """The write lease of a load balancer, with what earlier holders left unfinished (one more read)."""
        return self._try_acquire(lb_partition_key(lb_id), lb_id, records_writes=True)

    def acquire_lb(self, lb_id: str, timeout: float, poll: float = 0.5) -> HeldLease | None:
        """The write lease of a load balancer, waiting up to `timeout` seconds for its holder."""
        deadline = time.monotonic() + timeout
        while True:
            lease = self.try_acquire_lb(lb_id)
            if lease is not None or time.monotonic() >= deadline:
                return lease
            time.sleep(poll)

    def _try_acquire(self, blob_name: str, label: str, *, records_writes: bool = False) -> HeldLease | None:
        blob = self.container.get_blob_client(blob_name)
        for first_attempt in (True, False):
            try:
                lease = blob.acquire_lease(lease_duration=self.lease_seconds)
            except ResourceNotFoundError:
                if not first_attempt:
                    raise
                self._create(blob)
                continue
            except HttpResponseError as error:
                if error.status_code == 409:  # LeaseAlreadyPresent
                    return None
                raise
            if not records_writes:
                return HeldLease(label, lease, self.lease_seconds)
            try:  # read after acquiring: no earlier holder can add to the record any more
                writing = pools_being_written(blob.get_blob_properties(lease=lease).metadata)
            except Exception:
                with contextlib.suppress(HttpResponseError):
                    lease.release()
                raise
            return HeldLease(label, lease, self.lease_seconds, blob=blob, writing=writing)
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
