"""Checks of the rules against what Azure holds: virtual networks, pools and scale sets the rules name.

The I/O side reads the facts (`AzureFacts`) at start-up and passes them here; nothing here does I/O.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from shared.core.ids import id_key
from shared.core.models import PoolSnapshot
from shared.core.rules import Rule, RuleProblem, RuleSet


@dataclass(frozen=True)
class AzureFacts:
    """What the I/O side read from Azure at start-up; mappings are keyed by `id_key` of the id."""

    vnet_address_spaces: Mapping[str, Sequence[str]]
    pools: Mapping[str, PoolSnapshot]
    # scale sets the rules name by id -> the pool ids their network profile references (None: not read)
    scale_sets: Mapping[str, Sequence[str]] | None = None


def validate_against_azure(ruleset: RuleSet, facts: AzureFacts) -> list[RuleProblem]:
    """Problems only Azure can reveal. Pool problems are reported once, on the first rule for the pool."""
    spaces = {id_key(key): value for key, value in facts.vnet_address_spaces.items()}
    pools = {id_key(key): value for key, value in facts.pools.items()}
    problems: list[RuleProblem] = []
    seen_pools: set[str] = set()
    for rule in ruleset.rules:

        def problem(field_path: str, message: str, rule: Rule = rule) -> None:
            problems.append(RuleProblem(f"rules[{rule.index}].{field_path}", message, rule.name, rule.index))

        prefixes = spaces.get(rule.vnet_key)
        if prefixes is None:
            problem("virtualNetwork", "virtual network not found (or not readable by poolsync's identity)")
        else:
            space = [ipaddress.ip_network(prefix, strict=False) for prefix in prefixes]
            for position, cidr in enumerate(rule.cidrs):
                if not any(cidr.version == net.version and cidr.subnet_of(net) for net in space):  # type: ignore[arg-type]
                    problem(
                        f"cidrs[{position}]",
                        f"{cidr} is not within the virtual network's address space "
                        f"({', '.join(prefixes) or 'empty'})",
                    )

        _check_scale_sets(rule, facts, problem)
        if rule.pool_key in seen_pools:
            continue
        seen_pools.add(rule.pool_key)
        pool = pools.get(rule.pool_key)
        if pool is None:
            problem("pool", "backend pool not found (or not readable by poolsync's identity)")
            continue
        if (pool.lb_sku or "").lower() == "basic":
            problem("pool", "the load balancer is Basic SKU; IP-based backend pools need Standard")
        if pool.sync_mode_automatic:
            problem(
                "pool",
                f"pool {pool.id} has syncMode Automatic; poolsync can only manage Manual/unspecified pools "
                "(Azure fills such a pool from NIC ipconfigs and refuses address edits)",
            )
        if pool.nic_member_count:
            problem(
                "pool",
                f"the pool has {pool.nic_member_count} NIC-based member(s); a pool cannot mix NIC- and "
                "IP-based members",
            )
        if pool.vnet_id and id_key(pool.vnet_id) != rule.vnet_key:
            problem("virtualNetwork", f"the pool is bound to virtual network {pool.vnet_id}")
        foreign = sorted(
            address.name
            for address in pool.addresses
            if address.vnet_id and id_key(address.vnet_id) != rule.vnet_key
        )
        if foreign:
            shown = ", ".join(foreign[:5]) + (f" and {len(foreign) - 5} more" if len(foreign) > 5 else "")
            problem("pool", f"the pool already has addresses in another virtual network: {shown}")
    return problems


def _check_scale_sets(rule: Rule, facts: AzureFacts, problem: Callable[[str, str], None]) -> None:
    """A scale set the rule names by id must exist, and must not put its NICs in the rule's pool itself."""
    if facts.scale_sets is None:
        return
    known = {id_key(key): value for key, value in facts.scale_sets.items()}
    for position, entry in enumerate(rule.scale_sets):
        if not entry.startswith("/"):
            continue
        pools = known.get(id_key(entry))
        if pools is None:
            problem(f"scaleSets[{position}]", "scale set not found (or not readable by poolsync's identity)")
        elif rule.pool_key in {id_key(p) for p in pools}:
            problem(
                f"scaleSets[{position}]",
                f"the scale set's network profile puts its instances' NICs in {rule.pool_id}; a pool cannot "
                "mix NIC- and IP-based members: remove the pool from the set's network profile",
            )
