"""Plans for one backend pool: what to add, remove, readdress; how to apply them; the blast-radius guard.

Ownership comes from the names alone (shared.naming): entries with poolsync's name shape are managed;
everything else is reported but never touched by automatic plans. `plan_manual` is the exception for an
operator's explicit request through the HTTP API.

`apply_plan` works on a possibly fresher address list than the plan was made from (after an ETag
conflict the writer re-reads and re-applies): it is idempotent and keeps other writers' changes.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from shared.ids import id_key, vnet_of_subnet
from shared.models import (
    ADMIN_DOWN,
    ADMIN_NONE,
    ADMIN_UP,
    DesiredAddress,
    PoolAddress,
    PoolSnapshot,
    normal_ip,
)
from shared.naming import AZURE_NAME_RE, PREFIX, is_managed_name

ADMIN_STATES = (ADMIN_NONE, ADMIN_UP, ADMIN_DOWN)
MAX_REMOVE_FRACTION_ENV = "POOLSYNC_MAX_REMOVE_FRACTION"
DEFAULT_MAX_REMOVE_FRACTION = 0.5


class PlanInputError(ValueError):
    """An operator's request (plan_manual / admin changes) is invalid."""


@dataclass(frozen=True, slots=True)
class Readdress:
    """A managed entry whose NIC ipconfig now has another IP or network: updated in place."""

    before: PoolAddress
    after: PoolAddress  # same name, new IP / network, the admin state of `before`


@dataclass(frozen=True, slots=True)
class Conflict:
    """Something the plan could not do, reported instead of done."""

    name: str
    ip_address: str | None
    reason: str


@dataclass(frozen=True)
class PoolPlan:
    pool_id: str
    adds: tuple[DesiredAddress, ...] = ()
    removes: tuple[PoolAddress, ...] = ()
    readdresses: tuple[Readdress, ...] = ()
    admin_changes: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    unchanged: tuple[str, ...] = ()  # managed names in scope that already match
    unmanaged: tuple[str, ...] = ()  # reported only
    conflicts: tuple[Conflict, ...] = ()
    manual_adds: tuple[PoolAddress, ...] = ()  # operator-requested entries (plan_manual)
    confirmed: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    held: tuple[PoolAddress, ...] = ()  # removals the guard refused (kept as they are)
    hold_reason: str = ""

    @property
    def is_empty(self) -> bool:
        """Nothing to write. Conflicts are reports, not work."""
        return not (self.adds or self.removes or self.readdresses or self.admin_changes or self.manual_adds)

    def summary(self) -> dict[str, Any]:
        return {
            "pool": self.pool_id,
            "add": len(self.adds) + len(self.manual_adds),
            "remove": len(self.removes),
            "readdress": len(self.readdresses),
            "admin": len(self.admin_changes),
            "unchanged": len(self.unchanged),
            "unmanaged": len(self.unmanaged),
            "conflicts": len(self.conflicts),
        }

    def render(self) -> str:
        """Readable diff: `+` add, `-` remove, `~` change, `!` conflict."""
        lines = [f"pool {self.pool_id}"]
        lines += [f"+ {add.name} {add.ip_address}" for add in self.adds]
        lines += [f"+ {add.name} {add.ip_address}" for add in self.manual_adds]
        lines += [f"- {entry.name} {entry.ip_address}" for entry in self.removes]
        for change in self.readdresses:
            before, after = change.before, change.after
            moved = "" if _same_vnet(before.vnet_id, after.vnet_id) else f" (network {after.vnet_id})"
            lines.append(f"~ {after.name} {before.ip_address} -> {after.ip_address}{moved}")
        lines += [f"~ {name} adminState -> {state}" for name, state in self.admin_changes.items()]
        lines += [f"! {c.name} {c.ip_address or ''}: {c.reason}".replace("  ", " ") for c in self.conflicts]
        lines.append(f"= {len(self.unchanged)} unchanged, {len(self.unmanaged)} unmanaged")
        return "\n".join(lines)


def _same_vnet(left: str | None, right: str | None) -> bool:
    return (id_key(left) if left else None) == (id_key(right) if right else None)


def _entry_vnet(entry: PoolAddress) -> str | None:
    if entry.vnet_id:
        return entry.vnet_id
    return vnet_of_subnet(entry.subnet_id) if entry.subnet_id else None


def _matches(entry: PoolAddress, want: DesiredAddress) -> bool:
    return normal_ip(entry.ip_address) == normal_ip(want.ip_address) and _same_vnet(
        _entry_vnet(entry), want.vnet_id
    )


def _check_admin(admin: Mapping[str, str] | None) -> dict[str, str]:
    changes = dict(admin or {})
    for name, state in changes.items():
        if state not in ADMIN_STATES:
            raise PlanInputError(
                f"admin state for {name!r} must be one of {', '.join(ADMIN_STATES)}, got {state!r}"
            )
    return changes


class _IpHolders:
    """Which entry holds each IP in the pool as the plan is built (one IP, one entry)."""

    def __init__(self) -> None:
        self._by_ip: dict[str, str] = {}

    def holder(self, ip: str | None, name: str) -> str | None:
        """The other entry holding `ip`, if any."""
        held_by = self._by_ip.get(normal_ip(ip) or "")
        return held_by if held_by is not None and held_by.lower() != name.lower() else None

    def hold(self, ip: str | None, name: str) -> None:
        normal = normal_ip(ip)
        if normal:
            self._by_ip.setdefault(normal, name)

    def resolve_moves(self, moves: Sequence[tuple[str, str | None, str | None]]) -> dict[str, str | None]:
        """Which entries (name, old IP, new IP) may move: {lower name: None if it moves, else the blocker}.

        An entry's old IP stays reserved until it is known to move, so a chain (a takes b's IP while b
        moves on) resolves, while a move blocked by a holder keeps its old IP, which may block others in
        turn. Cycles (IP swaps) are left as they are: rare, and clearer as two separate changes.
        """
        reserved = {normal_ip(old): name for name, old, _ in moves if old}
        outcome: dict[str, str | None] = {}
        waiting = list(moves)
        while waiting:
            still_waiting = []
            for name, old, new in waiting:
                blocker = self.holder(new, name)
                if blocker is None and reserved.get(normal_ip(new), name).lower() != name.lower():
                    still_waiting.append((name, old, new))
                    continue
                outcome[name.lower()] = blocker
                self.hold(old if blocker else new, name)
                reserved.pop(normal_ip(old), None)
            if len(still_waiting) == len(waiting):
                for name, old, new in still_waiting:
                    outcome[name.lower()] = reserved.get(normal_ip(new))
                    self.hold(old, name)
                break
            waiting = still_waiting
        return outcome


def plan(
    current: PoolSnapshot,
    desired: Mapping[str, DesiredAddress],
    *,
    scope: Callable[[str], bool] | None = None,
    admin_changes: Mapping[str, str] | None = None,
    confirmed: Mapping[str, str] | None = None,
    hold: Collection[str] = (),
) -> PoolPlan:
    """Bring the managed entries of `current` to `desired`.

    `scope` (called with lower-cased names) limits which managed names the plan considers, both for
    removal and addition: an owner-scoped reconcile passes the names of one VM's ipconfigs so other
    managed entries are neither removed nor re-added. Unmanaged entries are never changed, except by an
    explicit `admin_changes` entry (name -> None|Up|Down).
    """
    admin = _check_admin(admin_changes)
    held_names = {name.lower() for name in hold}
    held: list[PoolAddress] = []

    def in_scope(name: str) -> bool:
        return scope is None or scope(name.lower())

    wanted = {name.lower(): want for name, want in desired.items() if in_scope(name)}
    holders = _IpHolders()
    removes: list[PoolAddress] = []
    pending: list[tuple[PoolAddress, DesiredAddress]] = []
    unchanged: list[str] = []
    unmanaged: list[str] = []
    conflicts: list[Conflict] = []
    present: dict[str, PoolAddress] = {}

    for entry in current.addresses:
        key = entry.name.lower()
        present[key] = entry
        if not is_managed_name(entry.name):
            unmanaged.append(entry.name)
        elif in_scope(entry.name):
            want = wanted.get(key)
            if want is None and key not in held_names:
                removes.append(entry)
                continue
            if want is None:
                held.append(entry)
            elif not _matches(entry, want):
                pending.append((entry, want))
                continue  # its old IP is released; its new one is claimed below
            else:
                unchanged.append(entry.name)
        holders.hold(entry.ip_address, entry.name)

    readdresses: list[Readdress] = []
    blockers = holders.resolve_moves(
        [(entry.name, entry.ip_address, want.ip_address) for entry, want in pending]
    )
    for entry, want in pending:
        blocker = blockers[entry.name.lower()]
        if blocker is not None:
            conflicts.append(
                Conflict(entry.name, want.ip_address, f"IP already held by {blocker}; left as is")
            )
        else:
            readdresses.append(Readdress(entry, want.as_pool_address(entry.admin_state)))

    adds: list[DesiredAddress] = []
    for key, want in wanted.items():
        if key in present:
            continue
        other = holders.holder(want.ip_address, want.name)
        if other is not None:
            conflicts.append(Conflict(want.name, want.ip_address, f"IP already held by {other}; not added"))
            continue
        adds.append(want)
        holders.hold(want.ip_address, want.name)

    added = {want.name.lower(): want for want in adds}
    admin_plan: dict[str, str] = {}
    for name, state in admin.items():
        existing = present.get(name.lower())
        if existing is None and name.lower() not in added:
            conflicts.append(Conflict(name, None, "no such address; admin state not changed"))
        elif existing is None or existing.admin_state != state:
            admin_plan[existing.name if existing else added[name.lower()].name] = state

    return PoolPlan(
        pool_id=current.id,
        adds=tuple(adds),
        removes=tuple(removes),
        readdresses=tuple(readdresses),
        admin_changes=MappingProxyType(admin_plan),
        unchanged=tuple(unchanged),
        unmanaged=tuple(unmanaged),
        conflicts=tuple(conflicts),
        confirmed=MappingProxyType({e.name.lower(): (confirmed or {})[e.name.lower()] for e in removes
                                    if e.name.lower() in (confirmed or {})}),
        held=tuple(held),
    )


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
    admin_changes = _check_admin(admin)
    present = {entry.name.lower(): entry for entry in current.addresses}
    holders = _IpHolders()
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


def apply_plan(addresses: Sequence[PoolAddress], plan: PoolPlan) -> list[PoolAddress]:
    """The pool's address list after `plan`; idempotent, and safe on a list fresher than the plan's.

    Untouched entries keep their order and content; removals skip absent names; a readdress or add
    whose IP another entry now holds is skipped; adds skip names already present. New entries go last.
    """
    removes = {entry.name.lower() for entry in plan.removes}
    targets = {change.after.name.lower(): change.after for change in plan.readdresses}
    admin = {name.lower(): state for name, state in plan.admin_changes.items()}

    surviving = [entry for entry in addresses if entry.name.lower() not in removes]
    holders = _IpHolders()
    for entry in surviving:
        if entry.name.lower() not in targets:
            holders.hold(entry.ip_address, entry.name)
    blockers = holders.resolve_moves(
        [
            (entry.name, entry.ip_address, targets[entry.name.lower()].ip_address)
            for entry in surviving
            if entry.name.lower() in targets
        ]
    )
    result: list[PoolAddress] = []
    for entry in surviving:
        key = entry.name.lower()
        after = targets.get(key)
        if after is not None and blockers[key] is None:
            entry = replace(
                entry, ip_address=after.ip_address, vnet_id=after.vnet_id, subnet_id=after.subnet_id
            )
        state = admin.get(key)
        if state is not None and state != entry.admin_state:
            entry = replace(entry, admin_state=state)
        result.append(entry)

    names = {entry.name.lower() for entry in result}
    for new in (*(want.as_pool_address() for want in plan.adds), *plan.manual_adds):
        key = new.name.lower()
        if key in names or holders.holder(new.ip_address, new.name) is not None:
            continue
        state = admin.get(key, new.admin_state)
        result.append(replace(new, admin_state=state) if state != new.admin_state else new)
        names.add(key)
        holders.hold(new.ip_address, new.name)
    return result


# --- blast-radius guard ----------------------------------------------------------------------------


@dataclass(frozen=True)
class GuardSettings:
    max_remove_fraction: float = DEFAULT_MAX_REMOVE_FRACTION

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GuardSettings:
        env = os.environ if env is None else env
        raw = (env.get(MAX_REMOVE_FRACTION_ENV) or "").strip()
        if not raw:
            return cls()
        try:
            fraction = float(raw)
        except ValueError:
            raise ValueError(
                f"{MAX_REMOVE_FRACTION_ENV} must be a number between 0 and 1, got {raw!r}"
            ) from None
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{MAX_REMOVE_FRACTION_ENV} must be between 0 and 1, got {raw!r}")
        return cls(fraction)


class GuardRefused(Exception):
    """The plan would remove too much; re-run with force (and log why) to override."""

    def __init__(self, plan: PoolPlan, reason: str) -> None:
        super().__init__(f"{plan.pool_id}: {reason}")
        self.plan = plan
        self.reason = reason


_EPSILON = 1e-9  # 0.1 * 3 must not refuse 0.3 of a pool because of binary floating point


def check_guard(plan: PoolPlan, current: PoolSnapshot, settings: GuardSettings, force: bool = False) -> None:
    """Refuse a plan that removes too much of a pool, unless forced.

    - Removing more than `max_remove_fraction` of the pool's managed entries is refused. Only removals
      of managed entries count: a readdress keeps the member, and an unmanaged entry is only ever
      removed on an operator's explicit request.
    - Leaving a pool that had addresses with none is refused whatever the fraction.
    Small pools follow from that: removing 1 of 1 managed entry is refused (it exceeds any fraction
    below 1, and empties the pool unless unmanaged entries remain); removing 1 of 2 (= 0.5) passes
    at the default.
    """
    reason = guard_problem(plan, current, settings, force)
    if reason is not None:
        raise GuardRefused(plan, reason)


def _unconfirmed(plan: PoolPlan) -> list[PoolAddress]:
    return [e for e in plan.removes if is_managed_name(e.name) and e.name.lower() not in plan.confirmed]


def guard_problem(plan: PoolPlan, current: PoolSnapshot, settings: GuardSettings, force: bool = False
                  ) -> str | None:
    """Why the guard refuses this plan's unconfirmed removals, or None."""
    if force:
        return None
    managed = sum(1 for entry in current.addresses if is_managed_name(entry.name))
    removing = len(_unconfirmed(plan))
    unmanaged_removes = [e for e in plan.removes if not is_managed_name(e.name)]
    if removing and removing > settings.max_remove_fraction * managed + _EPSILON:
        return (f"would remove {removing} of {managed} managed addresses, more than the allowed "
                f"{settings.max_remove_fraction:g} ({MAX_REMOVE_FRACTION_ENV})")
    if (removing or unmanaged_removes) and current.addresses and not apply_plan(current.addresses, plan):
        return f"would leave the pool empty (it has {len(current.addresses)} addresses)"
    return None


def guarded_plan(current: PoolSnapshot, desired: Mapping[str, DesiredAddress], settings: GuardSettings, *,
                 scope: Callable[[str], bool] | None = None, confirmed: Mapping[str, str] | None = None,
                 force: bool = False) -> PoolPlan:
    """`plan`, with the removals the guard refuses held back: confirmed removals, adds and readdresses
    go ahead; held entries stay as they are (an add that needs a held entry's IP becomes a conflict)."""
    full = plan(current, desired, scope=scope, confirmed=confirmed)
    reason = guard_problem(full, current, settings, force)
    if reason is None:
        return full
    held = {e.name.lower() for e in _unconfirmed(full)}
    kept = plan(current, desired, scope=scope, confirmed=confirmed, hold=held)
    return replace(kept, hold_reason=reason)
