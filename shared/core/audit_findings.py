"""The compliance audit's decisions: findings from what was read, no I/O.

Drift findings come from the same `plan()` remediation would run, so the report says exactly what a
remediating run changes (and a finding is `remediable` only when that plan fixes it). Platform findings
follow the documented limits of IP-based backend pools; rules hygiene and scale-set findings are in
`shared.core.audit_rules`.

What the audit cannot see: Azure does not expose NICs of application gateways or container groups.
Their addresses are recognised only through facts of their subnet (an application gateway's IP
configurations, a delegation to Microsoft.ContainerInstance/containerGroups); otherwise such an
address is reported as pointing at nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any

from shared.core.audit_model import (
    DRAIN_OBSERVED,
    DRAIN_POOLSYNC,
    POOL_SIZE_LIMIT,
    AuditInputs,
    AuditResult,
    DrainChanges,
    DrainRecord,
    Finding,
    LoadBalancerFacts,
    MemberFacts,
    PoolAudit,
    drain_key,
)
from shared.core.audit_rules import rules_findings, scale_set_findings
from shared.core.audit_targets import (
    DETACHED_NIC,
    NON_VM_KINDS,
    NOTHING,
    VM_NIC,
    Resolver,
    Target,
)
from shared.core.ids import id_key, vnet_of_subnet
from shared.core.membership import compute_membership
from shared.core.models import (
    ADMIN_DOWN,
    PoolAddress,
    PoolSnapshot,
    normal_ip,
)
from shared.core.naming import address_name, is_managed_name, legacy_address_name
from shared.core.plan import PoolPlan, plan
from shared.core.rules import Rule

# --- the audit ---------------------------------------------------------------------------------------


def audit(inputs: AuditInputs) -> AuditResult:
    resolver = Resolver(inputs)
    desired = compute_membership(inputs.inventory, inputs.rules)
    findings: list[Finding] = list(rules_findings(inputs))
    pools_by_key = {id_key(pool.id): (lb, pool) for lb in inputs.load_balancers for pool in lb.pools}
    pool_audits: list[PoolAudit] = []
    for pool_id in inputs.rules.managed_pool_ids():
        lb_pool = pools_by_key.get(id_key(pool_id))
        lb_id = str(pool_id).rsplit("/backendAddressPools/", 1)[0]
        if lb_pool is None:
            pool_audits.append(PoolAudit(pool_id, lb_id, exists=False))  # reported by rules_findings
            continue
        lb, pool = lb_pool
        wanted = desired.get(id_key(pool_id), {})
        pool_findings, pool_audit = _audit_pool(inputs, resolver, lb, pool, wanted)
        findings += pool_findings
        rejected = inputs.rejected_writes.get(id_key(pool_id))
        if rejected is not None:
            rules = sorted(rule.name for rule in inputs.rules.rules_for_pool(pool_id))
            findings.append(Finding(
                "write_rejected", pool_id,
                f"Azure refused poolsync's last write of this pool; removals of gone VMs were written alone, "
                f"additions wait: {rejected}",
                f"change the rules that select into this pool ({', '.join(rules)}) or the pool so Azure "
                "accepts the write (e.g. fewer addresses than the pool's limit); the next event or the "
                "hourly full reconcile then writes it",
                evidence={"rules": rules, "detail": rejected},
            ))
        pool_audits.append(pool_audit)
    drain_findings, drain_changes = _drains(inputs, pools_by_key)
    findings += drain_findings
    findings += scale_set_findings(inputs)
    findings.sort(key=Finding.sort_key)
    return AuditResult(tuple(findings), tuple(pool_audits), drain_changes)


def _entry_vnet(entry: PoolAddress, pool: PoolSnapshot) -> str | None:
    if entry.vnet_id:
        return entry.vnet_id
    if entry.subnet_id:
        return vnet_of_subnet(entry.subnet_id)
    return pool.vnet_id


def _expected_vnets(pool: PoolSnapshot, lb: LoadBalancerFacts, rules: Sequence[Rule]) -> tuple[str, ...]:
    """The LB's virtual network as Azure defines it: the pool's binding, else the internal frontends',
    else (a public LB with an unbound pool) the one the rules name."""
    if pool.vnet_id:
        return (pool.vnet_id,)
    if lb.vnet_ids:
        return lb.vnet_ids
    return tuple(dict.fromkeys(rule.virtual_network_id for rule in rules))


def _audit_pool(
    inputs: AuditInputs,
    resolver: Resolver,
    lb: LoadBalancerFacts,
    pool: PoolSnapshot,
    wanted: Mapping[str, Any],
) -> tuple[list[Finding], PoolAudit]:
    findings: list[Finding] = []
    pool_id = pool.id
    managed = sum(1 for entry in pool.addresses if is_managed_name(entry.name))
    sku = lb.sku or pool.lb_sku
    blocked = False
    if (sku or "").lower() == "basic":
        blocked = True
        findings.append(Finding(
            "basic_sku", pool_id,
            "the load balancer is Basic SKU; IP-based backend pools need a Standard load balancer",
            "upgrade the load balancer to Standard SKU (Basic cannot hold IP-based members), or point the "
            "rules at a pool of a Standard load balancer",
            evidence={"loadBalancer": lb.id, "sku": sku, "selectedAddresses": len(wanted)},
        ))
    if pool.nic_member_count:
        blocked = True
        findings.append(Finding(
            "mixed_members", pool_id,
            f"the pool has {pool.nic_member_count} NIC-based member(s); a pool cannot mix NIC-based and "
            "IP-based members, so poolsync cannot write it",
            "move the NIC-based members to another pool (remove the pool from their NICs' ipconfigs), or "
            "point the rules at an IP-based pool",
            evidence={"nicBasedMembers": pool.nic_member_count, "ipBasedMembers": len(pool.addresses),
                      "selectedAddresses": len(wanted)},
        ))
    if pool.sync_mode_automatic:
        blocked = True
        findings.append(Finding(
            "sync_mode_automatic", pool_id,
            "the pool has syncMode Automatic: Azure fills it from the NICs' ipconfigs and refuses address "
            "edits (ModificationOfBackendAddressesInPoolIsNotSupportedWhenSyncModeIsAutomatic), so poolsync "
            "cannot write it",
            "point the rules at a pool whose syncMode is Manual or unset (create one in the same load "
            "balancer and move the load-balancing rules to it), or delete the rules for this pool and let "
            "Azure manage it",
            evidence={"syncMode": pool.sync_mode, "selectedAddresses": len(wanted)},
        ))
    if pool.provisioning_failed:
        findings.append(Finding(
            "pool_provisioning_failed", pool_id,
            "the pool's provisioningState is Failed: an earlier operation failed, and Azure refuses "
            "writes that depend on the pool until it is PUT again",
            "a remediating run PUTs the pool again with its current contents (or re-apply the pool by "
            "hand, e.g. az network lb address-pool update with no changes), then check the activity log "
            "for the operation that failed",
            evidence={"provisioningState": pool.provisioning_state},
            remediable=not blocked,
        ))
    size = max(len(pool.addresses), len(wanted))
    if size > POOL_SIZE_LIMIT:
        findings.append(Finding(
            "pool_size_limit", pool_id,
            f"the pool {'has' if len(pool.addresses) >= len(wanted) else 'would need'} {size} addresses; "
            f"a Standard load balancer's backend pool holds at most {POOL_SIZE_LIMIT}",
            "split the membership across several pools (narrower CIDRs or tag filters per rule), so no "
            f"pool needs more than {POOL_SIZE_LIMIT} addresses",
            evidence={"addresses": len(pool.addresses), "selectedAddresses": len(wanted),
                      "limit": POOL_SIZE_LIMIT},
        ))
    nat_rules = lb.nat_rules_by_pool.get(id_key(pool_id), ())
    if nat_rules:
        findings.append(Finding(
            "nat_rule_on_ip_pool", pool_id,
            f"{len(nat_rules)} inbound NAT rule(s) target this IP-based pool; inbound NAT rules are not "
            "supported for IP-based backends",
            "remove the inbound NAT rules' backend pool, or target a NIC-based pool with them",
            evidence={"inboundNatRules": list(nat_rules)},
        ))

    expected = _expected_vnets(pool, lb, inputs.rules.rules_for_pool(pool_id))
    expected_keys = {id_key(v) for v in expected}
    targets: dict[str, Target] = {}
    for entry in pool.addresses:
        vnet = _entry_vnet(entry, pool)
        target = targets[entry.name.lower()] = resolver.resolve(vnet, entry.ip_address)
        is_managed = is_managed_name(entry.name)
        if expected_keys and (vnet is None or id_key(vnet) not in expected_keys):
            findings.append(Finding(
                "address_outside_vnet", pool_id,
                "the address is not in the load balancer's virtual network; IP-based backends must be",
                "remove the address" if not is_managed
                else "check the rule's virtualNetwork; poolsync removes the address once no rule selects it",
                address=entry.name, ip=entry.ip_address,
                evidence={"addressVirtualNetwork": vnet, "loadBalancerVirtualNetworks": list(expected)},
            ))
        if target.kind in NON_VM_KINDS:
            findings.append(Finding(
                "non_vm_backend", pool_id,
                f"the address belongs to a {target.kind.replace('_', ' ')}, which cannot be an IP-based "
                "backend (only virtual machines and scale set instances can)",
                "remove the address from the pool",
                address=entry.name, ip=entry.ip_address, evidence=target.evidence(),
            ))
        elif not is_managed and target.kind in (NOTHING, DETACHED_NIC):
            findings.append(Finding(
                "unmanaged_orphan", pool_id,
                "an address added by hand points at nothing: no VM holds its IP"
                if target.kind == NOTHING else
                "an address added by hand points at a NIC that is attached to no VM",
                "remove it by hand (or as a manual change through poolsync's HTTP API); poolsync never "
                "removes addresses it did not add on its own",
                address=entry.name, ip=entry.ip_address, evidence=target.evidence(),
            ))
    findings += _duplicates(pool)

    pool_plan = None
    if not blocked:
        pool_plan = plan(pool, wanted)
        findings = _mark_remediable(findings, pool_plan)
        findings += _drift(pool, pool_plan, targets, resolver)
    summary = PoolAudit(
        pool_id=pool_id, lb_id=lb.id, exists=True, sku=sku, addresses=len(pool.addresses), managed=managed,
        unmanaged=len(pool.addresses) - managed, nic_members=pool.nic_member_count, selected=len(wanted),
        blocked=blocked, plan=pool_plan, sync_mode=pool.sync_mode, provisioning_state=pool.provisioning_state,
        provisioning_failed=pool.provisioning_failed,
        members=tuple(_member(entry, targets[entry.name.lower()]) for entry in pool.addresses),
    )
    return findings, summary


def _member(entry: PoolAddress, target: Target) -> MemberFacts:
    vm_id = target.nic.vm_id if target.nic is not None else None
    return MemberFacts(entry.name, entry.ip_address, entry.admin_state, is_managed_name(entry.name),
                       target.kind, vm_id)


def _duplicates(pool: PoolSnapshot) -> list[Finding]:
    holders: dict[str, list[PoolAddress]] = defaultdict(list)
    for entry in pool.addresses:
        ip = normal_ip(entry.ip_address)
        if ip:
            holders[ip].append(entry)
    findings = []
    for ip, entries in holders.items():
        if len(entries) < 2:
            continue
        names = [entry.name for entry in entries]
        findings.append(Finding(
            "duplicate_address", pool.id,
            f"the IP appears {len(entries)} times in the pool",
            "keep one entry (the one in the load balancer's virtual network) and remove the others",
            address=names[0], ip=ip,
            evidence={"names": names, "virtualNetworks": [_entry_vnet(entry, pool) for entry in entries]},
        ))
    return findings


def _mark_remediable(findings: list[Finding], pool_plan: PoolPlan) -> list[Finding]:
    """Address findings the plan removes are fixed by a remediating run."""
    removed = {entry.name.lower() for entry in pool_plan.removes}
    marked = []
    for finding in findings:
        if finding.code == "duplicate_address":
            names = [name.lower() for name in finding.evidence.get("names", ())]
            fixed = len([name for name in names if name not in removed]) <= 1
            finding = replace(finding, remediable=fixed)
        elif finding.address and finding.address.lower() in removed:
            finding = replace(finding, remediable=True)
        marked.append(finding)
    return marked


def _drift(
    pool: PoolSnapshot, pool_plan: PoolPlan, targets: Mapping[str, Target], resolver: Resolver
) -> list[Finding]:
    findings: list[Finding] = []
    for entry in pool_plan.removes:
        target = targets.get(entry.name.lower(), Target(NOTHING))
        evidence = target.evidence()
        if target.kind in NON_VM_KINDS:
            continue  # non_vm_backend says it, and is marked remediable
        if target.kind == VM_NIC and target.nic is not None and target.ipconfig is not None:
            holder_name = address_name(target.nic.id, target.ipconfig.name, target.nic.resource_guid)
            legacy_name = legacy_address_name(target.nic.id, target.ipconfig.name)
            own_names = {holder_name.lower(), legacy_name.lower()}
            if entry.name.lower() not in own_names:
                findings.append(Finding(
                    "owner_changed", pool.id,
                    "the name says poolsync added it for one NIC, but its IP now belongs to another",
                    "poolsync removes this entry and adds the current owner if the rules select it",
                    address=entry.name, ip=entry.ip_address, remediable=True,
                    evidence={**evidence, "expectedName": holder_name, **_named_owner(resolver, entry.name)},
                ))
            else:
                findings.append(Finding(
                    "not_selected", pool.id,
                    "poolsync added this address, but the rules no longer select its VM",
                    "poolsync removes it (or change the VM's tags / the rules if it should stay)",
                    address=entry.name, ip=entry.ip_address, remediable=True, evidence=evidence,
                ))
            continue
        findings.append(Finding(
            "stale_address", pool.id,
            "poolsync added this address, but its IP is on no NIC attached to a VM",
            "poolsync removes it",
            address=entry.name, ip=entry.ip_address, remediable=True,
            evidence={**evidence, **_named_owner(resolver, entry.name)},
        ))
    for change in pool_plan.readdresses:
        findings.append(Finding(
            "stale_address", pool.id,
            f"poolsync added this address, but its NIC now has IP {change.after.ip_address}",
            f"poolsync updates it to {change.after.ip_address}",
            address=change.before.name, ip=change.before.ip_address, remediable=True,
            evidence={**targets.get(change.before.name.lower(), Target(NOTHING)).evidence(),
                      "currentIp": change.after.ip_address, "currentVirtualNetwork": change.after.vnet_id},
        ))
    for want in pool_plan.adds:
        findings.append(Finding(
            "missing_address", pool.id,
            "the rules select this VM's IP, but the pool does not have it",
            "poolsync adds it",
            address=want.name, ip=want.ip_address, remediable=True,
            evidence={"vm": want.vm_id, "nic": want.nic_id, "ipConfiguration": want.ipconfig_name},
        ))
    present = {entry.name.lower() for entry in pool.addresses}
    for conflict in pool_plan.conflicts:
        code = "stale_address" if conflict.name.lower() in present else "missing_address"
        findings.append(Finding(
            code, pool.id,
            f"poolsync cannot fix this address: {conflict.reason}",
            "remove the other entry holding the IP (it was probably added by hand), then re-run",
            address=conflict.name, ip=conflict.ip_address, evidence={"reason": conflict.reason},
        ))
    return findings


def _named_owner(resolver: Resolver, name: str) -> dict[str, Any]:
    owner = resolver.named_owner(name)
    if owner is None:
        return {"namedNic": None}
    nic, ipc = owner
    return {"namedNic": nic.id, "namedIpConfiguration": ipc.name, "namedNicIp": ipc.private_ip}


# --- adminState Down ---------------------------------------------------------------------------------


def _drains(
    inputs: AuditInputs, pools_by_key: Mapping[str, tuple[LoadBalancerFacts, PoolSnapshot]]
) -> tuple[list[Finding], DrainChanges]:
    """Age of every Down entry of the managed pools, from the first-seen table (Azure keeps no time)."""
    findings: list[Finding] = []
    upserts: list[DrainRecord] = []
    down: set[tuple[str, str]] = set()
    managed_keys = {id_key(pool_id) for pool_id in inputs.rules.managed_pool_ids()}
    for pool_key in managed_keys:
        lb_pool = pools_by_key.get(pool_key)
        if lb_pool is None:
            continue
        pool = lb_pool[1]
        for entry in pool.addresses:
            if entry.admin_state != ADMIN_DOWN:
                continue
            key = drain_key(pool.id, entry.name)
            down.add(key)
            record = inputs.drains.get(key)
            if record is None:
                record = DrainRecord(pool.id, entry.name, inputs.now, DRAIN_OBSERVED)
                upserts.append(record)
            age = inputs.now - record.since
            if age > inputs.drain_max_age:
                exact = record.source == DRAIN_POOLSYNC
                findings.append(Finding(
                    "drain_overdue", pool.id,
                    f"adminState has been Down for {'' if exact else 'at least '}{_days(age)} "
                    f"(limit {_days(inputs.drain_max_age)})",
                    "finish the maintenance and set adminState back to None, or remove the address",
                    address=entry.name, ip=entry.ip_address,
                    evidence={"downSince": record.since.isoformat(), "source": record.source,
                              "ageSeconds": int(age.total_seconds()),
                              "maxAgeSeconds": int(inputs.drain_max_age.total_seconds())},
                ))
    read_pools = {key for key in managed_keys if key in pools_by_key}
    present = {drain_key(pool.id, entry.name) for key in read_pools
               for pool in [pools_by_key[key][1]] for entry in pool.addresses}
    # Forget entries that are Up again, and drains of entries gone from the pool once they are too old to
    # carry over to a re-add (a drain belongs to its VM, see shared.app.pool_memory); keep those of pools
    # this run could not read.
    deletes = tuple(
        record for key, record in inputs.drains.items()
        if key not in down and (
            key[0] not in managed_keys
            or (key[0] in read_pools
                and (key in present or inputs.now - record.since > inputs.drain_max_age)))
    )
    return findings, DrainChanges(tuple(upserts), deletes)


def _days(age: timedelta) -> str:
    hours = age.total_seconds() / 3600
    return f"{hours / 24:.1f} days" if hours >= 48 else f"{hours:.1f} hours"
