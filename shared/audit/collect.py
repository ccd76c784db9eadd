"""Running the compliance audit: read the inputs list-based, decide (shared.core.audit_findings),
remediate, report.

Reads are paged list calls per subscription - NICs, VMs, load balancers (which carry their pools and
addresses) and virtual networks - never a GET per VM or per pool. Remediation, when enabled, goes
through `Reconciler.reconcile` (which re-reads under the write leases), so it uses the same plan, guard and
writer as every other change (one GET + PUT per pool that needs a change).

`run_audit` is the one entry point; the timer trigger and `POST /api/audit` both call it.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from azure.core.exceptions import AzureError

from shared import settings, telemetry
from shared.audit.report import RunFacts, build_report, log_summary, render_html
from shared.azure.retry import call_with_retry
from shared.core import durations
from shared.core.arm_json import as_json, pool_from_json
from shared.core.audit_findings import audit
from shared.core.audit_model import (
    AuditInputs,
    DrainRecord,
    FrontendIp,
    LoadBalancerFacts,
    SubnetFacts,
    VnetFacts,
)
from shared.core.ids import ResourceId, id_key, vnet_of_subnet
from shared.core.scale_sets import profile_from_json
from shared.storage.account import StorageNotConfigured
from shared.storage.report_store import (
    DEFAULT_DRAIN_TABLE,
    DEFAULT_REPORT_CONTAINER,
    DrainLedger,
    ReportStore,
    report_location,
)

if TYPE_CHECKING:
    from shared.app.runtime import Runtime

log = logging.getLogger("poolsync.audit")

REMEDIATE_ENV = settings.AUDIT_REMEDIATE.name
DRAIN_MAX_AGE_ENV = settings.DRAIN_MAX_AGE.name
CONTAINER_ENV = settings.AUDIT_CONTAINER.name
DRAIN_TABLE_ENV = settings.DRAIN_TABLE.name
DEFAULT_DRAIN_MAX_AGE = settings.DRAIN_MAX_AGE.default

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
def parse_duration(text: str) -> timedelta:
    """`P7D`, `PT36H`, `P1DT12H` (ISO 8601), or `36h`, `90m`, `7d`, `3600` (seconds)."""
    return durations.parse_duration(text, DRAIN_MAX_AGE_ENV)


def parse_flag(name: str, text: str | None) -> bool:
    value = (text or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be true or false, got {text!r}")


@dataclass(frozen=True)
class AuditSettings:
    remediate: bool = settings.AUDIT_REMEDIATE.default
    drain_max_age: timedelta = DEFAULT_DRAIN_MAX_AGE
    container: str = DEFAULT_REPORT_CONTAINER
    drain_table: str = DEFAULT_DRAIN_TABLE

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AuditSettings:
        max_age = settings.DRAIN_MAX_AGE.text(env)
        return cls(
            remediate=parse_flag(REMEDIATE_ENV, settings.AUDIT_REMEDIATE.raw(env)),
            drain_max_age=parse_duration(max_age) if max_age else DEFAULT_DRAIN_MAX_AGE,
            container=settings.AUDIT_CONTAINER.text(env) or DEFAULT_REPORT_CONTAINER,
            drain_table=settings.DRAIN_TABLE.text(env) or DEFAULT_DRAIN_TABLE,
        )


# --- REST JSON -> audit facts ------------------------------------------------------------------------


def _ref(value: Any) -> str | None:
    return value.get("id") if isinstance(value, Mapping) else None


def lb_facts_from_json(lb: Mapping[str, Any]) -> LoadBalancerFacts:
    sku = (lb.get("sku") or {}).get("name")
    props = lb.get("properties") or {}
    raw_pools = props.get("backendAddressPools") or []
    frontends = []
    for frontend in props.get("frontendIPConfigurations") or []:
        fprops = frontend.get("properties") or {}
        subnet = _ref(fprops.get("subnet"))
        if fprops.get("privateIPAddress"):
            frontends.append(FrontendIp(lb["id"], frontend.get("name", ""), fprops["privateIPAddress"],
                                        vnet_of_subnet(subnet) if subnet else None))
    # NAT rules name their pool (rule.backendAddressPool); Azure also lists them on the pool.
    nat_rules: dict[str, dict[str, None]] = defaultdict(dict)
    for rule in props.get("inboundNatRules") or []:
        pool_ref = _ref((rule.get("properties") or {}).get("backendAddressPool"))
        if pool_ref and rule.get("id"):
            nat_rules[id_key(pool_ref)][rule["id"]] = None
    for pool in raw_pools:
        for ref in (pool.get("properties") or {}).get("inboundNatRules") or []:
            if _ref(ref):
                nat_rules[id_key(pool["id"])][ref["id"]] = None
    return LoadBalancerFacts(
        id=lb["id"],
        sku=sku,
        pools=tuple(pool_from_json(pool, lb_sku=sku) for pool in raw_pools),
        frontends=tuple(frontends),
        nat_rules_by_pool={key: tuple(rules) for key, rules in nat_rules.items()},
    )


def vnet_facts_from_json(vnet: Mapping[str, Any]) -> VnetFacts:
    props = vnet.get("properties") or {}
    subnets = []
    for subnet in props.get("subnets") or []:
        sprops = subnet.get("properties") or {}
        prefixes = sprops.get("addressPrefixes") or [sprops.get("addressPrefix")]
        subnets.append(SubnetFacts(
            id=subnet.get("id", ""),
            prefixes=tuple(prefix for prefix in prefixes if prefix),
            delegations=tuple(
                (d.get("properties") or {}).get("serviceName", "") for d in sprops.get("delegations") or []
            ),
            application_gateway=bool(sprops.get("applicationGatewayIPConfigurations")),
        ))
    return VnetFacts(
        id=vnet["id"],
        address_prefixes=tuple((props.get("addressSpace") or {}).get("addressPrefixes") or ()),
        subnets=tuple(subnets),
    )


# --- reading -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collected:
    inputs: AuditInputs
    subscriptions: tuple[str, ...]
    counts: Mapping[str, int]


def audit_subscriptions(runtime: Runtime) -> tuple[set[str], set[str]]:
    """(where VMs and NICs live, where the managed load balancers live), lower-cased."""
    vm_subscriptions = runtime.reconciler.watched_subscriptions()
    lb_subscriptions = {ResourceId.parse(p).subscription.lower() for p in runtime.rules.managed_pool_ids()}
    return vm_subscriptions, lb_subscriptions


def collect(
    runtime: Runtime, now: datetime, settings: AuditSettings, drains: Mapping[tuple[str, str], DrainRecord]
) -> Collected:
    vm_subscriptions, lb_subscriptions = audit_subscriptions(runtime)
    everywhere = sorted(vm_subscriptions | lb_subscriptions)
    inventory = runtime.inventory.subscriptions(vm_subscriptions)
    # LBs of the VM subscriptions too: their frontend IPs reveal addresses that are load balancers.
    reader = runtime.inventory
    load_balancers = [lb_facts_from_json(lb) for sub in everywhere for lb in reader.load_balancers(sub)]
    vnet_list = [vnet_facts_from_json(vnet) for sub in everywhere for vnet in list_vnets(runtime, sub)]
    vnets = {id_key(vnet.id): vnet for vnet in vnet_list}
    scale_sets = [profile_from_json(scale_set) for sub in sorted(vm_subscriptions)
                  for scale_set in reader.scale_sets.list_all(sub)]
    inputs = AuditInputs(
        rules=runtime.rules,
        inventory=inventory,
        load_balancers=load_balancers,
        vnets=vnets,
        now=now,
        drain_max_age=settings.drain_max_age,
        drains=drains,
        rejected_writes={pool_key: str(last.get("detail") or "") for pool_key, last in
                         runtime.reconciler.journal.last().items() if last.get("status") == "rejected"},
        scale_sets=scale_sets,
    )
    counts = {
        "networkInterfaces": len(inventory.nics),
        "virtualMachines": len(inventory.vms),
        "loadBalancers": len(load_balancers),
        "virtualNetworks": len(vnets),
        "scaleSets": len(scale_sets),
    }
    return Collected(inputs, tuple(everywhere), counts)


def list_vnets(runtime: Runtime, subscription_id: str) -> list[dict[str, Any]]:
    network = runtime.clients.network(subscription_id)
    reader = runtime.inventory
    return call_with_retry(
        lambda: [as_json(vnet) for vnet in network.virtual_networks.list_all()],
        settings=reader.retry, stats=reader.stats, operation=f"list VNets of {subscription_id}",
    )


def drain_ledger(runtime: Runtime) -> DrainLedger:
    """The first-seen-Down table as configured; the HTTP API records its drains here (`record_drain`)."""
    return DrainLedger(runtime.storage, AuditSettings.from_env(runtime.settings).drain_table)


# --- the run -----------------------------------------------------------------------------------------


def new_run_id(started: datetime) -> str:
    return f"{started.astimezone(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def run_audit(
    runtime: Runtime, *, remediate: bool | None = None, now: datetime | None = None
) -> dict[str, Any]:
    """Audit every managed pool; remediate drift if asked (or POOLSYNC_AUDIT_REMEDIATE); return the report.

    `now` fixes the audit clock (drain ages, run id, blob path) for tests and replays. Storage problems
    (report blobs, drain table) do not fail the audit: they are logged and noted in the report.
    """
    settings = AuditSettings.from_env(runtime.settings)
    remediate = settings.remediate if remediate is None else remediate
    clock_start = datetime.now(UTC)
    started = now.astimezone(UTC) if now is not None else clock_start
    run_id = new_run_id(started)
    notes: list[str] = []
    ledger = drain_ledger(runtime)

    try:
        drains = ledger.read()
    except (AzureError, StorageNotConfigured) as error:
        drains = {}
        notes.append(f"drain table unavailable ({type(error).__name__}); Down ages count from this run")
        log.warning("audit %s: cannot read the drain table: %s", run_id, error)

    collected = collect(runtime, started, settings, drains)
    result = audit(collected.inputs)

    try:
        ledger.upsert(result.drains.upserts)
        ledger.delete(result.drains.deletes)
    except (AzureError, StorageNotConfigured) as error:
        notes.append(f"drain table not updated ({type(error).__name__})")
        log.warning("audit %s: cannot update the drain table: %s", run_id, error)

    outcomes = []
    pool_ids = result.remediable_pool_ids()
    if remediate and pool_ids:
        # Not from the audit's own read: remediation takes the load balancers' write leases first and
        # reads again, so it never undoes a change another writer made after the audit read.
        outcomes = runtime.reconciler.reconcile(pool_ids, source="audit")

    location = report_location(run_id, started, settings.container)
    finished = started + (datetime.now(UTC) - clock_start)
    report = build_report(
        result,
        RunFacts(
            run_id=run_id, started=started, finished=finished, remediate=remediate,
            subscriptions=collected.subscriptions, counts=collected.counts,
            drain_max_age_seconds=int(settings.drain_max_age.total_seconds()),
            artifacts=location.as_dict(), notes=notes,
        ),
        outcomes,
    )
    try:
        ReportStore(runtime.storage).write(location, report, render_html(report))
    except (AzureError, StorageNotConfigured) as error:
        report["artifacts"]["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
        log.error("audit %s: cannot write the report: %s", run_id, error)
    log.info(log_summary(report), extra={"audit_run": run_id, "summary": report["summary"],
                                         "artifacts": report["artifacts"]})
    for finding in report["findings"]:
        telemetry.emit("audit_finding", kind=finding["code"], severity=finding["severity"],
                       pool=finding.get("pool"), address=finding.get("address"))
    telemetry.emit("audit_completed", run_id=run_id, findings=len(report["findings"]),
                   remediated=sum(1 for outcome in outcomes if outcome.status == "written"),
                   duration_ms=round(report["durationSeconds"] * 1000))
    return report
