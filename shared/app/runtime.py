"""The composition root: app settings in, ready-to-use objects out, once per process.

Triggers call `get_runtime()`; tests install their own with `set_runtime()`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError

from shared import settings
from shared.app.pool_memory import PoolMemory
from shared.app.reconciler import Reconciler
from shared.azure.clients import ArmSettings, AzureClients
from shared.azure.inventory import InventoryReader
from shared.azure.pool_writer import PoolWriter
from shared.azure.retry import RETRY_STATS, RetrySettings, RetryStats, unreachable
from shared.core.guard import GuardSettings
from shared.core.rules import ERROR, RuleProblem, RulesError, RuleSet, load_rules
from shared.storage.account import StorageSettings
from shared.storage.intents import FlushLocks, IntentStore
from shared.storage.member_index import MemberIndex
from shared.storage.reconcile_log import ReconcileLog

log = logging.getLogger("poolsync.runtime")


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
        env = dict(settings.app_settings(env))
        rules = load_rules(env)
        retry = RetrySettings.from_env(env)
        stats = retry_stats or RETRY_STATS
        clients = AzureClients(ArmSettings.from_env(env), credential)
        inventory = InventoryReader(clients, retry, stats)
        storage = StorageSettings.from_env(env)
        locks, index, memory, intents = None, None, None, None
        guard = GuardSettings.from_env(env)
        if storage.configured:
            lease_seconds = int(settings.FLUSH_LEASE_SECONDS.or_default(env))
            locks = FlushLocks.from_settings(storage, env, lease_seconds)
            index = MemberIndex.from_settings(storage, env)
            memory = PoolMemory.from_settings(storage, env, guard.window)
            intents = IntentStore.from_settings(storage, env)
        else:  # the Functions host always has storage; this is a read-only tool or a unit test
            log.warning("no storage configured: writes take no load-balancer lease and keep no member index")
        writer = PoolWriter(clients, guard, retry, stats, locks=locks)
        reconciler = Reconciler(rules, inventory, writer, ReconcileLog.from_env(storage, env), index, memory,
                                due_owners=intents.due_subjects if intents is not None else None)
        return cls(rules, clients, inventory, writer, reconciler, stats, storage, env)


    def check_rules_against_azure(self) -> list[RuleProblem]:
        """Start-up check of what only Azure can tell (VNet address spaces, pool SKU and members).

        Errors make the rules unusable (RulesError, naming rule and field); notes are logged. When ARM
        cannot be reached the check is skipped with a warning rather than taking the app down: the
        next cold start checks again, and the audit reports the same problems daily."""
        try:
            problems = self.reconciler.validate_against_azure()
        except AzureError as error:
            down = unreachable(error)
            log.warning("rules not checked against Azure (unreachable): %s",
                        down.message() if down is not None else str(error).splitlines()[0])
            return []
        errors = [problem for problem in problems if problem.severity == ERROR]
        for problem in problems:
            if problem.severity != ERROR:
                log.warning("rules: %s", problem)
        if errors:
            raise RulesError(errors, f"{self.rules.source}, checked against Azure")
        return problems


_runtime: Runtime | None = None
_lock = threading.Lock()


def get_runtime() -> Runtime:
    global _runtime
    with _lock:
        if _runtime is None:
            runtime = Runtime.from_env()
            runtime.check_rules_against_azure()
            _runtime = runtime
        return _runtime


def set_runtime(runtime: Runtime | None) -> None:
    """Install (or with None, forget) the process runtime - for tests and the local host."""
    global _runtime
    with _lock:
        _runtime = runtime
