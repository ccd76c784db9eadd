"""The Function app's own storage account (Azurite locally): tables for intents, blobs for leases and reports,
the queue of audit requests.

Connection comes from the same settings the Functions host uses: `AzureWebJobsStorage`
as a connection string, or identity-based `AzureWebJobsStorage__accountName`
(+ `__credential=managedidentity`, `__clientId`) as deployed by infra/.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import ResourceExistsError
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient, LinearRetry
from azure.storage.queue import QueueServiceClient

from shared import settings
from shared.errors import ConfigurationError

DEVELOPMENT_STORAGE = "UseDevelopmentStorage=true"
_AZURITE_DEFAULT = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


# Explicit client behaviour: the SDKs' defaults wait 15-24 s between blob/queue retries (a lease call once
# held an Event Grid delivery for 20 s) and let a read hang for minutes. Storage calls here are small, so
# a short connect/read timeout and three quick retries keep one call within a few seconds.
CONNECTION_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 15
RETRIES = 3


def _blob_queue_options() -> dict[str, Any]:
    """Retry and timeouts of blob and queue clients (their own storage retry policy: waits of 0-2 s)."""
    return {"retry_policy": LinearRetry(backoff=1, random_jitter_range=1, retry_total=RETRIES),
            "connection_timeout": CONNECTION_TIMEOUT_SECONDS, "read_timeout": READ_TIMEOUT_SECONDS}


def _table_options() -> dict[str, Any]:
    """Retry and timeouts of table clients (azure-core's retry keywords: waits 0.3, 0.6, 1.2 s)."""
    return {"retry_total": RETRIES, "retry_backoff_factor": 0.3, "retry_backoff_max": 2,
            "connection_timeout": CONNECTION_TIMEOUT_SECONDS, "read_timeout": READ_TIMEOUT_SECONDS}


class StorageNotConfigured(ConfigurationError, RuntimeError):
    pass


@dataclass(frozen=True)
class StorageSettings:
    connection_string: str | None = None
    account_name: str | None = None
    client_id: str | None = None  # user-assigned managed identity

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> StorageSettings:
        env = settings.app_settings(env)
        connection = settings.STORAGE_CONNECTION.raw(env) or None
        if connection == DEVELOPMENT_STORAGE:
            connection = _AZURITE_DEFAULT
        return cls(
            connection_string=connection,
            account_name=settings.STORAGE_ACCOUNT_NAME.raw(env) or None,
            client_id=settings.STORAGE_CLIENT_ID.raw(env) or None,
        )

    @property
    def configured(self) -> bool:
        return bool(self.connection_string or self.account_name)

    def _credential(self):  # type: ignore[no-untyped-def]
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential(managed_identity_client_id=self.client_id)

    def blob_service(self) -> BlobServiceClient:
        if self.connection_string:
            return BlobServiceClient.from_connection_string(self.connection_string, **_blob_queue_options())
        if self.account_name:
            return BlobServiceClient(f"https://{self.account_name}.blob.core.windows.net", self._credential(),
                                     **_blob_queue_options())
        raise StorageNotConfigured("set AzureWebJobsStorage or AzureWebJobsStorage__accountName")

    def queue_service(self) -> QueueServiceClient:
        if self.connection_string:
            return QueueServiceClient.from_connection_string(self.connection_string, **_blob_queue_options())
        if self.account_name:
            return QueueServiceClient(f"https://{self.account_name}.queue.core.windows.net",
                                      credential=self._credential(), **_blob_queue_options())
        raise StorageNotConfigured("set AzureWebJobsStorage or AzureWebJobsStorage__accountName")

    def table_service(self) -> TableServiceClient:
        if self.connection_string:
            return TableServiceClient.from_connection_string(self.connection_string, **_table_options())
        if self.account_name:
            return TableServiceClient(f"https://{self.account_name}.table.core.windows.net",
                                      credential=self._credential(), **_table_options())
        raise StorageNotConfigured("set AzureWebJobsStorage or AzureWebJobsStorage__accountName")


class CreatedOnce:
    """Creates a table (or container) the first time a caller needs it; later calls cost nothing."""

    def __init__(self, create: Callable[[], object]) -> None:
        self._create = create
        self._done = False
        self._lock = threading.Lock()

    def __call__(self) -> None:
        if self._done:
            return
        with self._lock:
            if not self._done:
                with contextlib.suppress(ResourceExistsError):
                    self._create()
                self._done = True
