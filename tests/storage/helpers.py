"""Reading a load balancer's lease blob as another instance would."""

from __future__ import annotations

from azure.storage.blob import BlobLeaseClient, BlobServiceClient, ContainerClient

from shared.storage.intents import lb_partition_key, pools_being_written


def locks_container(storage_connection_string: str, name: str) -> ContainerClient:
    return BlobServiceClient.from_connection_string(storage_connection_string).get_container_client(name)


def recorded(container: ContainerClient, lb_id: str) -> list[str]:
    """The pools the lease blob of `lb_id` records as being written."""
    blob = container.get_blob_client(lb_partition_key(lb_id))
    return pools_being_written(blob.get_blob_properties().metadata)


def expire(container: ContainerClient, lb_id: str) -> None:
    """End the load balancer's lease now: what the clock does to a holder that stopped renewing."""
    BlobLeaseClient(container.get_blob_client(lb_partition_key(lb_id))).break_lease(lease_break_period=0)
