"""Audit findings about the rules and the scale sets they name, rather than about one pool's entries.

Rules hygiene reuses `validate_against_azure`; scale-set findings say when a set would fight poolsync.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from shared.core.audit_model import AuditInputs, Finding
from shared.core.ids import id_key
from shared.core.models import PoolSnapshot
from shared.core.rules import Rule
from shared.core.rules_azure import AzureFacts, validate_against_azure

# --- scale sets --------------------------------------------------------------------------------------


def scale_set_findings(inputs: AuditInputs) -> list[Finding]:
    """A scale set whose network profile still names a pool poolsync manages by IP: Azure refuses to mix
    NIC and IP members in one pool, so the set's next scale-out (or model upgrade) fails."""
    managed = {id_key(pool_id): pool_id for pool_id in inputs.rules.managed_pool_ids()}
    findings = []
    for scale_set in inputs.scale_sets:
        for pool_ref in scale_set.pool_ids:
            pool_id = managed.get(id_key(pool_ref))
            if pool_id is None:
                continue
            findings.append(Finding(
                "scale_set_references_managed_pool", pool_id,
                f"scale set {scale_set.id} ({scale_set.mode}) puts its instances' NICs in {pool_id}, which "
                "poolsync manages by IP: the pool cannot hold both, so the set's next scale-out fails",
                "remove the pool from the scale set's network profile (loadBalancerBackendAddressPools of "
                "its NIC configurations), apply the model to the instances (manual upgrade), and let a "
                "poolsync rule with scaleSets select the instances by IP instead",
                evidence={"scaleSet": scale_set.id, "orchestrationMode": scale_set.mode},
            ))
    return findings


# --- rules hygiene -----------------------------------------------------------------------------------


def rules_findings(inputs: AuditInputs) -> list[Finding]:
    findings = _azure_rule_problems(inputs)
    findings += _cross_pool_overlaps(inputs.rules.rules)
    return findings


def _azure_rule_problems(inputs: AuditInputs) -> list[Finding]:
    """validate_against_azure's existence and address-space checks. Pool snapshots are passed with only
    their identity, because the pool checks (SKU, NIC members, networks) are reported per pool and
    address by `_audit_pool`, with more detail than a rules problem can carry."""
    spaces = {key: list(vnet.address_prefixes) for key, vnet in inputs.vnets.items()}
    pools = {
        id_key(pool.id): PoolSnapshot(id=pool.id, etag=None, addresses=())
        for lb in inputs.load_balancers for pool in lb.pools
    }
    findings = []
    for problem in validate_against_azure(inputs.rules, AzureFacts(spaces, pools)):
        rule = inputs.rules.rules[problem.rule_index] if problem.rule_index is not None else None
        field_name = problem.path.rsplit(".", 1)[-1]
        if field_name == "pool":
            code, fix = "rule_pool_missing", "delete the rule, or correct its pool id"
        elif field_name == "virtualNetwork":
            code, fix = "rule_vnet_missing", "delete the rule, or correct its virtualNetwork id"
        else:
            code, fix = "rule_cidr_outside_vnet", "correct the CIDR, or add it to the virtual network"
        findings.append(Finding(
            code, rule.pool_id if rule else None, problem.message, fix, rule=problem.rule_name,
            evidence={"path": problem.path,
                      **({"virtualNetwork": rule.virtual_network_id} if rule is not None else {})},
        ))
    return findings


def _cross_pool_overlaps(rules: Iterable[Rule]) -> list[Finding]:
    """Rules of different pools whose CIDRs overlap in one VNet put an address in several pools.

    parse_rules already refuses overlaps within one pool; across pools it may be intended (one VM behind
    several pools), so this is informational. Prefixes are nested or disjoint, so a stack sweep over the
    ranges sorted by (start, widest first) finds every overlapping pair.
    """
    by_vnet: dict[tuple[str, int], list[tuple[int, int, Rule, Any]]] = defaultdict(list)
    for rule in rules:
        for cidr in rule.cidrs:
            start, end = int(cidr.network_address), int(cidr.broadcast_address)
            by_vnet[(rule.vnet_key, cidr.version)].append((start, end, rule, cidr))
    pairs: dict[tuple[int, int], tuple[Rule, Any, Rule, Any]] = {}
    for ranges in by_vnet.values():
        ranges.sort(key=lambda item: (item[0], -item[1], item[2].index))
        open_ranges: list[tuple[int, int, Rule, Any]] = []
        for start, end, rule, cidr in ranges:
            while open_ranges and open_ranges[-1][1] < start:
                open_ranges.pop()
            for _, _, other, other_cidr in open_ranges:
                if other.pool_key != rule.pool_key:
                    key = (min(other.index, rule.index), max(other.index, rule.index))
                    pairs.setdefault(key, (other, other_cidr, rule, cidr))
            open_ranges.append((start, end, rule, cidr))
    findings = []
    for first, first_cidr, second, second_cidr in pairs.values():
        findings.append(Finding(
            "rules_cidr_overlap", second.pool_id,
            f"{second_cidr} of rule {second.name!r} overlaps {first_cidr} of rule {first.name!r}: "
            "matching VMs go into both pools",
            "nothing if a VM should be in both pools; otherwise narrow the CIDRs or add tag filters",
            rule=second.name,
            evidence={"rules": [first.name, second.name], "cidrs": [str(first_cidr), str(second_cidr)],
                      "pools": [first.pool_id, second.pool_id]},
        ))
    return findings
