"""Bring managed pools to what the rules say, through the plan/guard/writer path.

Every caller that changes pools - the event flusher, the HTTP API's reconcile,
the audit's remediation - goes through here, so the guard and the ownership rule
(never remove what poolsync did not add) hold everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from azure.core.exceptions import AzureError

from shared import telemetry
from shared.arm_json import pool_from_json
from shared.ids import ResourceId, id_key
from shared.inventory import InventoryReader
from shared.membership import compute_membership
from shared.models import DesiredAddress, Inventory, PoolSnapshot
from shared.plan import GuardRefused, PoolPlan, plan
from shared.pool_writer import PoolWriter, WriteResult
from shared.rules import AzureFacts, RuleProblem, RuleSet, validate_against_azure

Desired = Mapping[str, Mapping[str, DesiredAddress]]  # pool key -> address name -> address


MAX_PARALLEL_LBS = 8


class UnmanagedPool(PermissionError):
    """The pool is not named by the rules: poolsync must not touch it."""


@dataclass(frozen=True)
class PoolOutcome:
    pool_id: str
    status: str  # unchanged | planned | written | refused | failed
    plan: PoolPlan | None = None
    detail: str = ""
    result: WriteResult | None = field(default=None, repr=False)
    error: AzureError | None = field(default=None, repr=False, compare=False)  # why it `failed`

    def as_dict(self) -> dict[str, Any]:
        return {
            "pool": self.pool_id,
            "status": self.status,
            "plan": self.plan.summary() if self.plan is not None else None,
            "diff": self.plan.render() if self.plan is not None else "",
            "detail": self.detail,
        }


class Journal(Protocol):
    """Where outcomes of real (not dry-run) reconciles are recorded, e.g. shared.reconcile_log."""

    def record(self, outcomes: Iterable[PoolOutcome], source: str) -> None: ...

    def last(self) -> dict[str, dict[str, Any]]: ...


class NoJournal:
    def record(self, outcomes: Iterable[PoolOutcome], source: str) -> None:
        pass

    def last(self) -> dict[str, dict[str, Any]]:
        return {}


class Reconciler:
    def __init__(self, rules: RuleSet, inventory: InventoryReader, writer: PoolWriter,
                 journal: Journal | None = None) -> None:
        self.rules = rules
        self.inventory = inventory
        self.writer = writer
        self.journal: Journal = journal or NoJournal()
        self._managed = {id_key(pool_id): pool_id for pool_id in rules.managed_pool_ids()}

    # -- what is managed -----------------------------------------------------------------------
    def managed_pool_ids(self) -> list[str]:
        return list(self._managed.values())

    def require_managed(self, pool_id: str) -> str:
        """The canonical spelling of a managed pool id, or UnmanagedPool."""
        canonical = self._managed.get(id_key(pool_id))
        if canonical is None:
            raise UnmanagedPool(f"pool is not managed by poolsync: {pool_id}")
        return canonical

    def pools_of_lb(self, lb_id: str) -> list[str]:
        lb_key = id_key(lb_id)
        return [p for k, p in self._managed.items() if k.startswith(lb_key + "/backendaddresspools/")]

    def watched_subscriptions(self) -> set[str]:
        """Where the VMs and NICs live: the subscriptions of the rules' virtual networks."""
        return {ResourceId.parse(rule.virtual_network_id).subscription.lower() for rule in self.rules.rules}

    # -- deciding ------------------------------------------------------------------------------
    def desired(self, inventory: Inventory) -> Desired:
        return compute_membership(inventory, self.rules)

    def read_inventory(self) -> Inventory:
        return self.inventory.subscriptions(self.watched_subscriptions())

    # -- acting --------------------------------------------------------------------------------
    def reconcile(
        self,
        pool_ids: Iterable[str] | None = None,
        *,
        inventory: Inventory | None = None,
        dry_run: bool = False,
        force: bool = False,
        force_reason: str | None = None,
        wait: bool = True,
        source: str = "reconcile",
    ) -> list[PoolOutcome]:
        """Full reconcile of the given managed pools (all by default) against one inventory read.

        `source` (http, events, audit, ...) is recorded with the outcomes of a real run."""
        requested = self._managed.values() if pool_ids is None else pool_ids
        targets = [self.require_managed(pool_id) for pool_id in requested]
        if not targets:
            return []
        desired = self.desired(inventory if inventory is not None else self.read_inventory())
        options = {"dry_run": dry_run, "force": force, "force_reason": force_reason, "wait": wait}

        def reconcile_lb(pools: list[str]) -> list[PoolOutcome]:
            return [self._reconcile_pool(pool, desired.get(id_key(pool), {}), **options) for pool in pools]

        # Azure runs one operation at a time per load balancer: pools of one LB go in sequence,
        # different LBs in parallel.
        by_lb: dict[str, list[str]] = {}
        for pool_id in targets:
            by_lb.setdefault(id_key(str(ResourceId.parse(pool_id).parent)), []).append(pool_id)
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_LBS, len(by_lb))) as executor:
            batches = list(executor.map(reconcile_lb, by_lb.values()))
        results = {outcome.pool_id: outcome for batch in batches for outcome in batch}
        outcomes = [results[pool_id] for pool_id in targets]
        if not dry_run:
            self.journal.record(outcomes, source)
        return outcomes

    def _reconcile_pool(
        self, pool_id: str, wanted: Mapping[str, DesiredAddress], **options: Any
    ) -> PoolOutcome:
        return self.apply(pool_id, lambda snapshot: plan(snapshot, wanted), **options)

    def apply(
        self, pool_id: str, make_plan: Callable[[PoolSnapshot], PoolPlan], **options: Any
    ) -> PoolOutcome:
        """Run one plan through the writer and turn the result into an outcome (never raises for Azure errors
        that outlived the retries: the outcome says `failed`)."""
        pool_id = self.require_managed(pool_id)
        try:
            result = self.writer.apply(pool_id, make_plan, **options)
        except GuardRefused as refused:
            telemetry.emit("guard_refused", logging.WARNING, pool=pool_id, reason=refused.reason,
                           removes=len(refused.plan.removes), plan=refused.plan.summary())
            return PoolOutcome(pool_id, "refused", refused.plan, str(refused))
        except AzureError as error:
            telemetry.emit("pool_write", logging.ERROR, pool=pool_id, outcome="failed",
                           error=f"{type(error).__name__}: {error}".splitlines()[0])
            return PoolOutcome(pool_id, "failed", None, f"{type(error).__name__}: {error}".splitlines()[0],
                               error=error)
        if result.dry_run:
            status = "unchanged" if result.plan.is_empty else "planned"
        else:
            status = "written" if result.written else "unchanged"
        return PoolOutcome(pool_id, status, result.plan, result=result)

    # -- start-up validation ---------------------------------------------------------------------
    def read_facts(self) -> AzureFacts:
        """VNet address spaces and pool snapshots (with their LB's SKU) for the rules' checks."""
        spaces: dict[str, list[str]] = {}
        for vnet_id in {rule.virtual_network_id for rule in self.rules.rules}:
            vnet = self.inventory.virtual_network(vnet_id)
            if vnet is not None:
                address_space = (vnet.get("properties") or {}).get("addressSpace") or {}
                spaces[id_key(vnet_id)] = list(address_space.get("addressPrefixes") or [])
        pools: dict[str, PoolSnapshot] = {}
        for lb_id in self.rules.managed_lb_ids():
            lb = self.inventory.load_balancer(lb_id)
            if lb is None:
                continue
            sku = (lb.get("sku") or {}).get("name")
            for pool in (lb.get("properties") or {}).get("backendAddressPools") or []:
                pools[id_key(pool["id"])] = pool_from_json(pool, lb_sku=sku)
        return AzureFacts(vnet_address_spaces=spaces, pools=pools)

    def validate_against_azure(self) -> list[RuleProblem]:
        return validate_against_azure(self.rules, self.read_facts())
