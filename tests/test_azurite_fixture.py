"""The Azurite fixture serves real blob and table endpoints the storage SDKs can use."""

from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient


def test_blob_round_trip(storage_connection_string: str, unique_name: str) -> None:
    service = BlobServiceClient.from_connection_string(storage_connection_string)
    container = service.create_container(unique_name)
    container.upload_blob("hello.txt", b"pool sync")
    assert container.download_blob("hello.txt").readall() == b"pool sync"
    # A lease excludes a second holder: the mechanism flush coordination depends on.
    lease = container.get_blob_client("hello.txt").acquire_lease(lease_duration=15)
    other = container.get_blob_client("hello.txt")
    try:
        other.acquire_lease(lease_duration=15)
        raised = False
    except Exception as exc:  # HttpResponseError 409 LeaseAlreadyPresent
        raised = "LeaseAlreadyPresent" in str(exc)
    assert raised
    lease.release()


def test_table_round_trip(storage_connection_string: str, unique_name: str) -> None:
    service = TableServiceClient.from_connection_string(storage_connection_string)
    table = service.create_table(unique_name)
    table.upsert_entity({"PartitionKey": "lb1", "RowKey": "event-1", "owner": "vm-1"})
    rows = list(table.query_entities("PartitionKey eq 'lb1'"))
    assert [(r["RowKey"], r["owner"]) for r in rows] == [("event-1", "vm-1")]
