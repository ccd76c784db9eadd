"""The member index: which pool entries poolsync wrote for which NIC and VM (Table storage).

A delete event names only the VM or NIC that is gone; the index answers "which pools hold its entries"
without listing the subscription or reading every pool. Rows live in 256 bucket partitions per kind, so a
burst or a rebuild writes up to 100 rows per transaction, and one owner is a RowKey range in one bucket:

- `nic-<bucket>`, RowKey `<nic hash>-<pool hash>-<entry name>`: PoolId, LbId, Name, NicId, NicGuid,
  IpConfiguration, VmId, Ip - what poolsync knew when it wrote the entry;
- `vm-<bucket>`, RowKey `<vm hash>-<nic hash>`: NicId - the NICs the VM had when an entry was written;
- `ss-<bucket>`, RowKey `<scale set hash>-<nic hash>`: NicId - the NICs of a scale set's instances.

The index may hold more than the pools do (rows are written before the PUT, so a crash between the two
leaves a row too many, never one too few); the full reconcile rebuilds it from pools + inventory.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceResponseError
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared import settings
from shared.core.ids import id_key
from shared.core.member_record import MemberRecord, bucketed, scale_set_link, vm_link
from shared.storage.account import CreatedOnce, StorageSettings
from shared.storage.intents import backoff_seconds

DEFAULT_MEMBERS_TABLE = settings.MEMBERS_TABLE.default
_BATCH = 100
_PARALLEL = 16  # partitions are one owner each: a burst touches hundreds, so do them side by side
_TRANSACTION_ATTEMPTS = 3
_SCAN_ABOVE = 200  # more owners than this: one scan of the NIC rows beats two queries per owner


_META = ("meta", "built")  # written once a full reconcile of every managed pool filled the index


class MemberIndex:
    def __init__(self, table: TableClient) -> None:
        self.table = table
        self._ensure_table = CreatedOnce(table.create_table)
        self._built = False

    def is_built(self) -> bool:
        """Whether a full reconcile has filled the index (before that, e.g. right after an upgrade, a delete
        hint cannot learn from it which pools hold the owner's entries)."""
        if not self._built:
            self._ensure_table()
            try:
                self.table.get_entity(*_META)
                self._built = True
            except ResourceNotFoundError:
                pass
        return self._built

    def mark_built(self) -> None:
        self.record_build([], [], everything=True)

    def _meta(self) -> dict[str, Any] | None:
        self._ensure_table()
        try:
            return dict(self.table.get_entity(*_META))
        except ResourceNotFoundError:
            return None

    def record_build(self, succeeded: Iterable[str], failed: Iterable[str], *, everything: bool,
                     now: datetime | None = None) -> None:
        """After a full reconcile: the index is built once every managed pool was tried (`everything`);
        pools that failed stay listed as unbuilt, retried with a back-off (`unbuilt_due`), never by every
        event. A reconcile of some pools before the index is built changes nothing here."""
        meta = self._meta()
        if meta is None and not everything:
            return
        now = now or datetime.now(UTC)
        unbuilt: dict[str, dict[str, Any]] = json.loads((meta or {}).get("Unbuilt") or "{}")
        for pool_id in succeeded:
            unbuilt.pop(id_key(pool_id), None)
        for pool_id in failed:
            attempts = int(unbuilt.get(id_key(pool_id), {}).get("attempts", 0)) + 1
            due = now + timedelta(seconds=backoff_seconds(attempts))
            unbuilt[id_key(pool_id)] = {"pool": pool_id, "attempts": attempts, "due": due.isoformat()}
        self.table.upsert_entity({"PartitionKey": _META[0], "RowKey": _META[1],
                                  "Unbuilt": json.dumps(unbuilt)})
        self._built = True

    def unbuilt_due(self, now: datetime | None = None) -> list[str]:
        """Pools whose rows a failed full reconcile could not build, due for another try."""
        meta = self._meta()
        unbuilt: dict[str, dict[str, Any]] = json.loads((meta or {}).get("Unbuilt") or "{}")
        now = now or datetime.now(UTC)
        return [entry["pool"] for entry in unbuilt.values() if datetime.fromisoformat(entry["due"]) <= now]

    def records_named(self, pool_id: str, names: Iterable[str]) -> list[MemberRecord]:
        """The records of these entries of one pool, by entry name: a scan of the NIC rows, for the rare
        entry whose IP blocks another owner's change (its owner is pulled into the round)."""
        self._ensure_table()
        found: list[MemberRecord] = []
        for name in set(names):
            query = "PartitionKey ge 'nic-' and PartitionKey lt 'nic.' and Name eq @name"
            rows = self.table.query_entities(query, parameters={"name": name})
            found += [r for r in map(MemberRecord.from_entity, rows) if r.pool_key == id_key(pool_id)]
        return found

    @classmethod
    def from_settings(cls, storage: StorageSettings, env: Mapping[str, str]) -> MemberIndex:
        name = settings.MEMBERS_TABLE.or_default(env)
        return cls(storage.table_service().get_table_client(name))

    def _owner_rows(self, kind: str, owner_id: str) -> list[Any]:
        """The rows of one owner: a RowKey range inside its bucket."""
        self._ensure_table()
        partition, prefix = bucketed(kind, owner_id)
        return list(self.table.query_entities(
            "PartitionKey eq @pk and RowKey gt @low and RowKey lt @high",
            parameters={"pk": partition, "low": prefix + "-", "high": prefix + "."}))

    def for_owners(self, vm_ids: Iterable[str] = (), nic_ids: Iterable[str] = ()) -> list[MemberRecord]:
        """Every entry recorded for these NICs, and for every NIC these VMs had (one query per owner)."""
        nics = {id_key(nic_id): nic_id for nic_id in nic_ids}
        vms = {id_key(v): v for v in vm_ids}
        if len(nics) + len(vms) > _SCAN_ABOVE:
            return self._scan_for(set(vms), nics)
        for rows in _parallel(lambda vm_id: self._owner_rows("vm", vm_id), list(vms.values())):
            for row in rows:
                nics.setdefault(id_key(row["NicId"]), row["NicId"])
        found = _parallel(lambda nic_id: self._owner_rows("nic", nic_id), list(nics.values()))
        return [MemberRecord.from_entity(row) for rows in found for row in rows]

    def for_scale_sets(self, scale_set_ids: Iterable[str]) -> list[MemberRecord]:
        """Every entry recorded for an instance of these scale sets (one query per set, then per NIC)."""
        nics: dict[str, str] = {}
        for rows in _parallel(lambda set_id: self._owner_rows("ss", set_id), list(set(scale_set_ids))):
            for row in rows:
                nics.setdefault(id_key(row["NicId"]), row["NicId"])
        if len(nics) > _SCAN_ABOVE:
            return self._scan_for(set(), nics)
        found = _parallel(lambda nic_id: self._owner_rows("nic", nic_id), list(nics.values()))
        return [MemberRecord.from_entity(row) for rows in found for row in rows]

    def _scan_for(self, vm_keys: set[str], nics: dict[str, str]) -> list[MemberRecord]:
        return [r for r in self.all_records() if id_key(r.nic_id) in nics or id_key(r.vm_id) in vm_keys]

    def remember(self, records: Iterable[MemberRecord]) -> None:
        """Upsert these records (and the VM -> NIC links) - called before the PUT that adds them."""
        entities: dict[tuple[str, str], dict[str, Any]] = {}
        for record in records:
            entity = record.entity()
            entities[(entity["PartitionKey"], entity["RowKey"])] = entity
            for link in (vm_link(record), scale_set_link(record)):
                if link is not None:
                    entities[(link["PartitionKey"], link["RowKey"])] = link
        if entities:
            self._ensure_table()
            self._submit("upsert", entities.values())

    def forget(self, records: Iterable[MemberRecord]) -> None:
        """Delete these entry rows - called after the PUT that removed them succeeded. A row read with an
        ETag is deleted only as read: one another writer rewrote since (the entry is back) stays."""
        rows = {r.key: {"PartitionKey": r.key[0], "RowKey": r.key[1], **({"etag": r.etag} if r.etag else {})}
                for r in records}
        if rows:
            self._ensure_table()
            self._submit("delete", rows.values())

    def all_records(self) -> list[MemberRecord]:
        self._ensure_table()
        return [MemberRecord.from_entity(row)
                for row in self.table.query_entities("PartitionKey ge 'nic-' and PartitionKey lt 'nic.'")]

    def rebuild(self, pool_ids: Iterable[str], records: Iterable[MemberRecord],
                existing: Iterable[MemberRecord] | None = None) -> tuple[int, int]:
        """Make the rows of these pools exactly `records` (anti-entropy); returns (written, deleted).

        `existing` is the index as the caller already read it (else it is read here). Rows already right
        are left alone, so an hourly rebuild of a steady world writes nothing."""
        pools = {id_key(pool_id) for pool_id in pool_ids}
        wanted = {r.key: r for r in records if r.pool_key in pools}
        current = {r.key: r for r in (self.all_records() if existing is None else existing)
                   if r.pool_key in pools}
        stale = [r for key, r in current.items() if key not in wanted]
        changed = [r for key, r in wanted.items() if current.get(key) != r]
        self.forget(stale)
        self.remember(changed)
        return len(changed), len(stale)

    def _submit(self, kind: str, entities: Iterable[Mapping[str, Any]]) -> None:
        by_partition: dict[str, list[Mapping[str, Any]]] = {}
        for entity in entities:
            by_partition.setdefault(entity["PartitionKey"], []).append(entity)
        batches = [rows[start:start + _BATCH] for rows in by_partition.values()
                   for start in range(0, len(rows), _BATCH)]

        def submit(batch: list[Mapping[str, Any]]) -> None:
            if kind == "upsert":
                self._transact([("upsert", dict(r), {"mode": UpdateMode.REPLACE}) for r in batch])
                return
            try:
                self._transact([("delete", _key_of(r), _as_read(r)) for r in batch])
                return
            except TableTransactionError:
                pass  # a delete batch fails whole on one missing or rewritten row: go row by row
            for row in batch:
                try:
                    self.table.delete_entity(row["PartitionKey"], row["RowKey"], **_as_read(row))
                except ResourceNotFoundError:
                    pass
                except HttpResponseError as error:
                    if error.status_code != 412:
                        raise

        _parallel(submit, batches)

    def _transact(self, operations: list[Any]) -> None:
        """One batch; sent again when the connection broke (the SDK does not retry a POST). Both kinds are
        safe to repeat: upserts replace, and a delete batch that already went fails on the missing rows
        and falls back to row by row."""
        for attempt in range(1, _TRANSACTION_ATTEMPTS + 1):
            try:
                self.table.submit_transaction(operations)
                return
            except ServiceResponseError:
                if attempt == _TRANSACTION_ATTEMPTS:
                    raise


def _key_of(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"]}


def _as_read(row: Mapping[str, Any]) -> dict[str, Any]:
    """Delete options: only the row as read, when its ETag is known."""
    return {"etag": row["etag"], "match_condition": MatchConditions.IfNotModified} if row.get("etag") else {}


def _parallel(work: Callable[[Any], Any], items: list[Any]) -> list[Any]:
    if len(items) <= 1:
        return [work(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(_PARALLEL, len(items))) as executor:
        return list(executor.map(work, items))
