"""Where the audit keeps things: report blobs, and the small table of adminState Down times.

Reports go to `<container>/YYYY/MM/DD/<run-id>.json|.html` (container `audit-reports` by default).
Azure records no time for an adminState change, so `DrainLedger` keeps one row per drained address:
when poolsync drained it (`record_drain`, called by whoever sets adminState Down through poolsync), or
else when an audit first saw it Down. A row outlives its entry leaving the pool (the reconciler re-adds
the same identity Down, `shared.app.pool_memory`) until the drain is enabled or older than
POOLSYNC_DRAIN_MAX_AGE.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import ContentSettings

from shared import settings
from shared.core.audit_model import DRAIN_POOLSYNC, DrainRecord, drain_key
from shared.core.ids import id_key
from shared.storage.account import StorageSettings

DEFAULT_REPORT_CONTAINER = settings.AUDIT_CONTAINER.default
DEFAULT_DRAIN_TABLE = settings.DRAIN_TABLE.default
_PARTITION = "drain"


@dataclass(frozen=True)
class ReportLocation:
    container: str
    json_blob: str
    html_blob: str

    def as_dict(self) -> dict[str, str]:
        return {"container": self.container, "json": self.json_blob, "html": self.html_blob}


def report_location(
    run_id: str, started: datetime, container: str = DEFAULT_REPORT_CONTAINER
) -> ReportLocation:
    prefix = f"{started:%Y/%m/%d}/{run_id}"
    return ReportLocation(container, f"{prefix}.json", f"{prefix}.html")


class ReportStore:
    def __init__(self, storage: StorageSettings) -> None:
        self.storage = storage

    def write(self, location: ReportLocation, report: Mapping[str, Any], html: str) -> None:
        container = self.storage.blob_service().get_container_client(location.container)
        with contextlib.suppress(ResourceExistsError):
            container.create_container()
        container.upload_blob(
            location.json_blob, json.dumps(report, indent=2, sort_keys=False).encode(), overwrite=True,
            content_settings=ContentSettings(content_type="application/json"),
        )
        container.upload_blob(
            location.html_blob, html.encode(), overwrite=True,
            content_settings=ContentSettings(content_type="text/html; charset=utf-8"),
        )

    def read_json(self, location: ReportLocation) -> dict[str, Any]:
        blob = self.storage.blob_service().get_blob_client(location.container, location.json_blob)
        return json.loads(blob.download_blob().readall())

    def read_html(self, location: ReportLocation) -> str:
        blob = self.storage.blob_service().get_blob_client(location.container, location.html_blob)
        return blob.download_blob().readall().decode()


def _row_key(pool_id: str, name: str) -> str:
    # Table keys may not hold '/', so the row is named by a digest of the (case-insensitive) address.
    pool_key, name_key = drain_key(pool_id, name)
    return hashlib.sha256(f"{pool_key}|{name_key}".encode()).hexdigest()[:40]


class DrainLedger:
    def __init__(self, storage: StorageSettings, table_name: str = DEFAULT_DRAIN_TABLE) -> None:
        self.storage = storage
        self.table_name = table_name
        self._table: TableClient | None = None

    def _client(self) -> TableClient:
        if self._table is None:
            self._table = self.storage.table_service().create_table_if_not_exists(self.table_name)
        return self._table

    def read(self) -> dict[tuple[str, str], DrainRecord]:
        records = {}
        for entity in self._client().query_entities(f"PartitionKey eq '{_PARTITION}'"):
            since = entity["Since"]
            if since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            record = DrainRecord(entity["PoolId"], entity["Name"], since, entity.get("Source", "observed"))
            records[record.key] = record
        return records

    def of_pool(self, pool_id: str) -> dict[str, DrainRecord]:
        """The drains recorded for one pool, by lower-cased entry name (present in the pool or not)."""
        pool_key = id_key(pool_id)
        return {name: record for (key, name), record in self.read().items() if key == pool_key}

    def keep(self, records: Iterable[DrainRecord]) -> None:
        """Record these drains unless a row exists already (which keeps its older `since`)."""
        table = self._client()
        for record in records:
            with contextlib.suppress(ResourceExistsError):
                table.create_entity(self._entity(record))

    def upsert(self, records: Iterable[DrainRecord]) -> None:
        table = self._client()
        for record in records:
            table.upsert_entity(self._entity(record), mode=UpdateMode.REPLACE)

    @staticmethod
    def _entity(record: DrainRecord) -> dict[str, Any]:
        return {
            "PartitionKey": _PARTITION,
            "RowKey": _row_key(record.pool_id, record.name),
            "PoolId": record.pool_id,
            "Name": record.name,
            "Since": record.since,
            "Source": record.source,
        }

    def delete(self, records: Iterable[DrainRecord]) -> None:
        table = self._client()
        for record in records:
            with contextlib.suppress(ResourceNotFoundError):
                table.delete_entity(_PARTITION, _row_key(record.pool_id, record.name))

    def record_drain(self, pool_id: str, name: str, when: datetime | None = None) -> DrainRecord:
        """Note that poolsync set `name` Down in `pool_id` now (or at `when`), so the audit knows its age."""
        record = DrainRecord(pool_id, name, when or datetime.now(UTC), DRAIN_POOLSYNC)
        self.upsert([record])
        return record

    def forget(self, pool_id: str, name: str) -> None:
        """Note that `name` is no longer drained (poolsync set it back to None/Up, or removed it)."""
        self.delete([DrainRecord(pool_id, name, datetime.now(UTC))])
