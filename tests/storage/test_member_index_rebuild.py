"""The member index's anti-entropy rebuild (Azurite): rows of entries missing from the pool go, unless an
event round may still be about to add their entry."""

from __future__ import annotations

from datetime import UTC, datetime

from azure.data.tables import TableServiceClient

from shared.core.member_record import MemberRecord
from shared.storage.member_index import IN_FLIGHT, MemberIndex
from tests.core.unit_factories import pool_id
from tests.fixtures.arm import ids


def test_a_rebuild_keeps_a_young_row_of_a_missing_entry_and_drops_it_once_old(
        storage_connection_string: str, unique_name: str):
    table = TableServiceClient.from_connection_string(storage_connection_string).get_table_client(unique_name)
    index = MemberIndex(table)
    pool = pool_id()
    row = MemberRecord(pool, pool.rsplit("/backendAddressPools/", 1)[0], "psync-web-9-nic-ipconfig1-abc",
                       ids.nic("web-9-nic"), "ipconfig1", ids.vm("web-9"), "g", "10.0.0.9")
    index.remember([row])

    assert index.rebuild([pool], []) == (0, 0)  # just written: an event round may not have PUT it yet
    assert index.all_records() == [row]
    assert index.rebuild([pool], [], now=datetime.now(UTC) + IN_FLIGHT * 2) == (0, 1)
    assert index.all_records() == []
