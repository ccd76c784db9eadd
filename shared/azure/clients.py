"""Construction of the Azure SDK clients poolsync uses.

Retries are NOT done by the SDK (retry_total=0): the single tenacity policy in
`shared.azure.retry` owns every retry decision, so attempts are counted and logged in
one place. The endpoint and CA bundle are settings so tests and the local stack
aim the real SDK at the ARM emulator over HTTPS.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core.credentials import AccessToken, TokenCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.core.polling.arm_polling import ARMPolling
from azure.mgmt.network import NetworkManagementClient

from shared import settings

PUBLIC_ARM_ENDPOINT = settings.ARM_ENDPOINT.default


class StaticTokenCredential:
    """A fixed bearer token, for the local ARM emulator only (it accepts any token)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self._token, int(time.time()) + 3600)


class CappedArmPolling(ARMPolling):
    """ARM polling that honours Retry-After only up to `cap` seconds."""

    def __init__(self, timeout: float, cap: float, **kwargs: Any) -> None:
        super().__init__(timeout, **kwargs)
        self._cap = cap

    def _extract_delay(self) -> float:  # the one hook azure-core offers for the wait between polls
        return min(super()._extract_delay(), self._cap)


@dataclass(frozen=True)
class ArmSettings:
    endpoint: str = PUBLIC_ARM_ENDPOINT
    ca_bundle: str | None = None  # PEM of the CA that signed the endpoint's certificate
    static_token: str | None = None  # only honoured for a non-public endpoint
    # used when Azure sends no Retry-After on an LRO
    polling_interval: float = settings.ARM_POLLING_INTERVAL.default
    timeout: float = settings.ARM_TIMEOUT.default  # seconds for one HTTP request
    # poll a long-running write at least this often, whatever Retry-After says (see lro_polling)
    lro_poll_cap: float = settings.LRO_POLL_CAP.default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ArmSettings:
        env = settings.app_settings(env)
        return cls(
            endpoint=settings.ARM_ENDPOINT.get(env).rstrip("/"),
            ca_bundle=settings.ARM_CA_BUNDLE.raw(env) or None,
            static_token=settings.ARM_STATIC_TOKEN.raw(env) or None,
            polling_interval=float(settings.ARM_POLLING_INTERVAL.get(env)),
            timeout=float(settings.ARM_TIMEOUT.get(env)),
            lro_poll_cap=float(settings.LRO_POLL_CAP.get(env)),
        )

    def lro_polling(self) -> ARMPolling:
        """Polling for a long-running write poolsync or its tooling waits on (a fresh one per call): Azure's
        Retry-After, but never more than `lro_poll_cap`, and `polling_interval` when Azure sends none.

        Network RP asks for 10 s between polls of a pool write, but the next write of the same load
        balancer (and the Event Grid delivery waiting on it) cannot start before this one is done. Compute
        RP asks for 10 s, then 50 s (create) or 30 s (delete), then nothing, where the SDK alone would wait
        its 30 s default. A poll every couple of seconds costs one read token each, well inside the read
        bucket's refill."""
        return CappedArmPolling(self.polling_interval, self.lro_poll_cap,
                                path_format_arguments={"endpoint": self.endpoint})

    def credential(self) -> TokenCredential:
        if self.static_token:
            if self.endpoint.rstrip("/") == PUBLIC_ARM_ENDPOINT:
                raise ValueError("POOLSYNC_ARM_STATIC_TOKEN is for the local emulator, not Azure")
            return StaticTokenCredential(self.static_token)
        from azure.identity import DefaultAzureCredential

        return DefaultAzureCredential()

    def client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "base_url": self.endpoint,
            "retry_total": 0,
            "polling_interval": self.polling_interval,
            "connection_timeout": min(self.timeout, 10.0),
            "read_timeout": self.timeout,
        }
        if self.ca_bundle:
            kwargs["connection_verify"] = self.ca_bundle
        return kwargs


def network_client(
    settings: ArmSettings, subscription_id: str, credential: TokenCredential | None = None, **options: Any
) -> NetworkManagementClient:
    """`options`: further azure-core client options (e.g. `transport`), over the settings' ones."""
    return NetworkManagementClient(
        credential or settings.credential(), subscription_id, **{**settings.client_kwargs(), **options}
    )


def compute_client(
    settings: ArmSettings, subscription_id: str, credential: TokenCredential | None = None, **options: Any
) -> ComputeManagementClient:
    """`options`: further azure-core client options (e.g. `transport`), over the settings' ones."""
    return ComputeManagementClient(
        credential or settings.credential(), subscription_id, **{**settings.client_kwargs(), **options}
    )


class AzureClients:
    """One credential and one SDK client per (service, subscription), shared by a process."""

    def __init__(self, settings: ArmSettings, credential: TokenCredential | None = None) -> None:
        self.settings = settings
        self._credential = credential
        self._network: dict[str, NetworkManagementClient] = {}
        self._compute: dict[str, ComputeManagementClient] = {}

    @property
    def credential(self) -> TokenCredential:
        if self._credential is None:
            self._credential = self.settings.credential()
        return self._credential

    def network(self, subscription_id: str) -> NetworkManagementClient:
        key = subscription_id.lower()
        if key not in self._network:
            self._network[key] = network_client(self.settings, subscription_id, self.credential)
        return self._network[key]

    def compute(self, subscription_id: str) -> ComputeManagementClient:
        key = subscription_id.lower()
        if key not in self._compute:
            self._compute[key] = compute_client(self.settings, subscription_id, self.credential)
        return self._compute[key]
