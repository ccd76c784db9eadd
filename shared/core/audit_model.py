"""The compliance audit's vocabulary: finding codes and severities, what it reads (inputs) and what it
decides (findings, per-pool summaries). Pure data; `shared.core.audit_findings` fills it in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.core.ids import id_key
from shared.core.models import (
    Inventory,
    PoolSnapshot,
)
from shared.core.plan import PoolPlan
from shared.core.rules import RuleSet
from shared.core.scale_sets import ScaleSetProfile

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)

DRIFT = "drift"
PLATFORM = "platform"
UNMANAGED = "unmanaged"
RULES = "rules"

# code -> (category, severity). The codes are part of the report schema: add, never rename.
CATALOGUE: dict[str, tuple[str, str]] = {
    "stale_address": (DRIFT, WARNING),
    "missing_address": (DRIFT, WARNING),
    "duplicate_address": (DRIFT, ERROR),
    "owner_changed": (DRIFT, ERROR),
    "not_selected": (DRIFT, WARNING),
    "basic_sku": (PLATFORM, ERROR),
    "mixed_members": (PLATFORM, ERROR),
    "address_outside_vnet": (PLATFORM, ERROR),
    "non_vm_backend": (PLATFORM, ERROR),
    "nat_rule_on_ip_pool": (PLATFORM, ERROR),
    "drain_overdue": (PLATFORM, WARNING),
    "sync_mode_automatic": (PLATFORM, ERROR),
    "pool_provisioning_failed": (PLATFORM, ERROR),
    "pool_size_limit": (PLATFORM, ERROR),
    "write_rejected": (PLATFORM, ERROR),
    "unmanaged_orphan": (UNMANAGED, WARNING),
    "rule_pool_missing": (RULES, ERROR),
    "rule_vnet_missing": (RULES, ERROR),
    "rule_cidr_outside_vnet": (RULES, ERROR),
    "rules_cidr_overlap": (RULES, INFO),
    "scale_set_references_managed_pool": (PLATFORM, ERROR),
}

# "Backend pool size: supports up to 5000 instances" for a Standard load balancer (Azure Load Balancer
# SKU comparison; the IP-based preview's limit of 100 addresses per pool is gone from the docs).
POOL_SIZE_LIMIT = 5000

DRAIN_OBSERVED = "observed"  # first seen Down by an audit: the real start is at or before it
DRAIN_POOLSYNC = "poolsync"  # drained through poolsync, which recorded the time


# --- inputs ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubnetFacts:
    id: str
    prefixes: tuple[str, ...]
    delegations: tuple[str, ...] = ()  # service names, e.g. Microsoft.ContainerInstance/containerGroups
    application_gateway: bool = False  # the subnet holds an application gateway's IP configurations


@dataclass(frozen=True, slots=True)
class VnetFacts:
    id: str
    address_prefixes: tuple[str, ...]
    subnets: tuple[SubnetFacts, ...] = ()


@dataclass(frozen=True, slots=True)
class FrontendIp:
    lb_id: str
    name: str
    private_ip: str
    vnet_id: str | None


@dataclass(frozen=True)
class LoadBalancerFacts:
    id: str
    sku: str | None
    pools: tuple[PoolSnapshot, ...]
    frontends: tuple[FrontendIp, ...] = ()
    nat_rules_by_pool: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # pool key -> rule ids

    @property
    def vnet_ids(self) -> tuple[str, ...]:
        """Virtual networks of its internal frontends (an internal LB lives in one)."""
        return tuple(dict.fromkeys(fe.vnet_id for fe in self.frontends if fe.vnet_id))


@dataclass(frozen=True, slots=True)
class DrainRecord:
    pool_id: str
    name: str
    since: datetime
    source: str = DRAIN_OBSERVED

    @property
    def key(self) -> tuple[str, str]:
        return drain_key(self.pool_id, self.name)


def drain_key(pool_id: str, name: str) -> tuple[str, str]:
    return id_key(pool_id), name.lower()


@dataclass(frozen=True)
class AuditInputs:
    rules: RuleSet
    inventory: Inventory
    load_balancers: Sequence[LoadBalancerFacts]
    vnets: Mapping[str, VnetFacts]  # keyed by id_key
    now: datetime
    drain_max_age: timedelta
    drains: Mapping[tuple[str, str], DrainRecord] = field(default_factory=dict)  # keyed by drain_key
    # pool key -> why Azure refused poolsync's last write of that pool (from the reconcile log)
    rejected_writes: Mapping[str, str] = field(default_factory=dict)
    scale_sets: Sequence[ScaleSetProfile] = ()  # the network profiles of the watched subscriptions' sets


# --- outputs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    code: str
    pool: str | None
    message: str
    fix: str
    address: str | None = None  # the backend address name
    ip: str | None = None
    rule: str | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict)
    remediable: bool = False  # a remediating run's plan fixes it

    @property
    def category(self) -> str:
        return CATALOGUE[self.code][0]

    @property
    def severity(self) -> str:
        return CATALOGUE[self.code][1]

    def sort_key(self) -> tuple[Any, ...]:
        severity = SEVERITIES.index(self.severity)
        return (severity, self.pool or "", self.code, self.address or "", self.rule or "")


@dataclass(frozen=True, slots=True)
class MemberFacts:
    """One entry of a pool as the report shows it: who holds its IP and its admin state."""

    name: str
    ip: str | None
    admin_state: str | None
    managed: bool
    owner_kind: str
    vm_id: str | None


@dataclass(frozen=True)
class PoolAudit:
    pool_id: str
    lb_id: str
    exists: bool
    sku: str | None = None
    addresses: int = 0
    managed: int = 0
    unmanaged: int = 0
    nic_members: int = 0
    selected: int = 0  # addresses the rules select for it
    blocked: bool = False  # a platform problem keeps poolsync from writing it
    plan: PoolPlan | None = None
    sync_mode: str | None = None
    provisioning_state: str | None = None
    provisioning_failed: bool = False  # Azure refuses writes until the pool is PUT again
    members: tuple[MemberFacts, ...] = ()

    @property
    def needs_remediation(self) -> bool:
        """A drifted pool, or a Failed one: the writer re-PUTs a Failed pool even with an empty plan."""
        if not self.exists or self.blocked or self.plan is None:
            return False
        return self.provisioning_failed or not self.plan.is_empty


@dataclass(frozen=True)
class DrainChanges:
    """How the first-seen-Down table must change after this audit."""

    upserts: tuple[DrainRecord, ...] = ()
    deletes: tuple[DrainRecord, ...] = ()


@dataclass(frozen=True)
class AuditResult:
    findings: tuple[Finding, ...]
    pools: tuple[PoolAudit, ...]
    drains: DrainChanges

    def remediable_pool_ids(self) -> list[str]:
        return [pool.pool_id for pool in self.pools if pool.needs_remediation]

