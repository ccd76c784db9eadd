"""The composition root: app settings in, ready-to-use objects out, once per process.

Triggers call `get_runtime()`; tests install their own with `set_runtime()`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from azure.core.credentials import TokenCredential

from shared.azure_clients import ArmSettings, AzureClients
from shared.inventory import InventoryReader
from shared.plan import GuardSettings
from shared.pool_writer import PoolWriter
from shared.reconcile_log import ReconcileLog
from shared.reconciler import Reconciler
from shared.retry import RETRY_STATS, RetrySettings, RetryStats
from shared.rules import RuleSet, load_rules
from shared.storage import StorageSettings


@dataclass
class Runtime:
    rules: RuleSet
    clients: AzureClients
    inventory: InventoryReader
    writer: PoolWriter
    reconciler: Reconciler
    retry_stats: RetryStats
    storage: StorageSettings
    settings: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        *,
        credential: TokenCredential | None = None,
        retry_stats: RetryStats | None = None,
    ) -> Runtime:
        env = dict(os.environ if env is None else env)
        rules = load_rules(env)
        retry = RetrySettings.from_env(env)
        stats = retry_stats or RETRY_STATS
        clients = AzureClients(ArmSettings.from_env(env), credential)
        inventory = InventoryReader(clients, retry, stats)
        writer = PoolWriter(clients, GuardSettings.from_env(env), retry, stats)
        storage = StorageSettings.from_env(env)
        reconciler = Reconciler(rules, inventory, writer, ReconcileLog.from_env(storage, env))
        return cls(rules, clients, inventory, writer, reconciler, stats, storage, env)


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            _runtime = Runtime.from_env()
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or with None, forget) the process runtime - for tests and the local host."""
    global _runtime
    with _lock:
        _runtime = runtime
