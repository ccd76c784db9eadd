"""The JSON shapes of plans and pool members in answers (shared/api/openapi.json)."""

from __future__ import annotations

from shared.api.http import JSON
from shared.core.ids import ResourceId, vnet_of_subnet
from shared.core.models import PoolAddress
from shared.core.naming import is_managed_name
from shared.core.plan import PoolPlan

# --- rendering -----------------------------------------------------------------------------------


def plan_json(plan: PoolPlan) -> dict[str, JSON]:
    counts = plan.summary()
    return {
        "pool": counts.pop("pool"),
        "counts": counts,
        "diff": plan.render().splitlines(),
        "conflicts": [
            {"name": c.name, "ipAddress": c.ip_address, "reason": c.reason} for c in plan.conflicts
        ],
    }


def pool_path(pool_id: str) -> str:
    rid = ResourceId.parse(pool_id)
    return f"/api/pools/{rid.subscription}/{rid.resource_group}/{rid.name}/{rid.child_name}"


def address_vnet(entry: PoolAddress, pool_vnet: str | None) -> str | None:
    if entry.vnet_id:
        return entry.vnet_id
    if entry.subnet_id:
        return vnet_of_subnet(entry.subnet_id)
    return pool_vnet


def member_json(entry: PoolAddress, pool_vnet: str | None = None, owner: JSON = None, rule: str | None = None
                ) -> dict[str, JSON]:
    return {
        "name": entry.name,
        "ipAddress": entry.ip_address,
        "adminState": entry.admin_state,
        "managed": is_managed_name(entry.name),
        "virtualNetwork": address_vnet(entry, pool_vnet),
        "subnet": entry.subnet_id,
        "rule": rule,
        "owner": owner,
    }
