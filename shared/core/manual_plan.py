"""An operator's explicit change to one pool (HTTP API): add, remove or re-state unmanaged entries.

Automatic plans (`shared.core.plan.plan`) only touch entries with poolsync's name shape; this one is the
exception, and it refuses to create such names by hand.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from shared.core.models import PoolAddress, PoolSnapshot
from shared.core.naming import AZURE_NAME_RE, PREFIX, is_managed_name
from shared.core.plan import ADMIN_STATES, Conflict, IpHolders, PlanInputError, PoolPlan, check_admin


def plan_manual(
    current: PoolSnapshot,
    add: Iterable[PoolAddress] = (),
    remove: Iterable[str] = (),
    admin: Mapping[str, str] | None = None,
) -> PoolPlan:
    """An operator's explicit change (HTTP API): may add, remove or re-state unmanaged entries.

    Names with poolsync's shape cannot be added by hand (the next reconcile would own and remove
    them). Removing a name that is not there, or adding an existing name or IP, is reported as a
    conflict rather than done.
    """
    admin_changes = check_admin(admin)
    present = {entry.name.lower(): entry for entry in current.addresses}
    holders = IpHolders()
    for entry in current.addresses:
        holders.hold(entry.ip_address, entry.name)
    conflicts: list[Conflict] = []

    removes: list[PoolAddress] = []
    for name in dict.fromkeys(remove):
        existing = present.get(name.lower())
        if existing is None:
            conflicts.append(Conflict(name, None, "not in the pool; nothing removed"))
        else:
            removes.append(existing)
    removed = {entry.name.lower() for entry in removes}

    manual_adds: list[PoolAddress] = []
    for entry in add:
        if not AZURE_NAME_RE.match(entry.name):
            raise PlanInputError(
                f"{entry.name!r} is not a valid backend address name (1-80 letters, digits, _ . -; "
                "start with a letter or digit, end with a letter, digit or _)"
            )
        if is_managed_name(entry.name) or entry.name.lower().startswith(PREFIX):
            raise PlanInputError(f"{entry.name!r}: names starting with {PREFIX!r} are reserved for poolsync")
        if entry.admin_state not in ADMIN_STATES:
            raise PlanInputError(f"admin state of {entry.name!r} must be one of {', '.join(ADMIN_STATES)}")
        if not entry.ip_address or not _is_ip(entry.ip_address):
            raise PlanInputError(f"{entry.name!r}: {entry.ip_address!r} is not an IP address")
        if not (entry.vnet_id or entry.subnet_id):
            raise PlanInputError(f"{entry.name!r}: a virtual network (or subnet) id is required")
        key = entry.name.lower()
        if key in present and key not in removed:
            conflicts.append(Conflict(entry.name, entry.ip_address, "name already in the pool; not added"))
            continue
        other = holders.holder(entry.ip_address, entry.name)
        if other is not None and other.lower() not in removed:
            conflicts.append(Conflict(entry.name, entry.ip_address, f"IP already held by {other}; not added"))
            continue
        manual_adds.append(entry)
        holders.hold(entry.ip_address, entry.name)
        present.setdefault(key, entry)

    admin_plan: dict[str, str] = {}
    for name, state in admin_changes.items():
        existing = present.get(name.lower())
        if existing is None or name.lower() in removed:
            conflicts.append(Conflict(name, None, "no such address; admin state not changed"))
        elif existing.admin_state != state:
            admin_plan[existing.name] = state

    touched = removed | {e.name.lower() for e in manual_adds} | {n.lower() for n in admin_plan}
    return PoolPlan(
        pool_id=current.id,
        removes=tuple(removes),
        admin_changes=MappingProxyType(admin_plan),
        unchanged=tuple(e.name for e in current.addresses if e.name.lower() not in touched),
        unmanaged=tuple(e.name for e in current.addresses if not is_managed_name(e.name)),
        conflicts=tuple(conflicts),
        manual_adds=tuple(manual_adds),
    )


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
