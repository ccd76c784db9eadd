"""Plans for one backend pool: what to add, remove, readdress, rename; how to apply them.

Ownership comes from the names alone (shared.core.naming): entries with poolsync's name shape are managed;
everything else is reported but never touched by automatic plans. `shared.core.manual_plan` is the
exception for an operator's explicit request through the HTTP API; `shared.core.guard` limits how much
one plan may remove.

Identity: a desired address is named after its NIC id, ipconfig and the NIC's resourceGuid. An entry
still carrying the legacy name (no guid) of a desired address is the same incarnation as far as anyone
can tell, so the plan renames it in place, keeping its adminState; a rename is never a removal.

`apply_plan` works on a possibly fresher address list than the plan was made from (after an ETag
conflict the writer re-reads and re-applies): it is idempotent and keeps other writers' changes.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

from shared.core.ids import id_key, vnet_of_subnet
from shared.core.models import (
    ADMIN_DOWN,
    ADMIN_NONE,
    ADMIN_UP,
    DesiredAddress,
    PoolAddress,
    PoolSnapshot,
    normal_ip,
)
from shared.core.naming import is_managed_name
from shared.errors import InputError

ADMIN_STATES = (ADMIN_NONE, ADMIN_UP, ADMIN_DOWN)

# Why a direct read says a removed entry's owner is gone (values of `confirmed`).
CONFIRM_NIC_DELETED = "nic deleted"
CONFIRM_NIC_DETACHED = "nic detached"
CONFIRM_VM_DELETED = "vm deleted"
CONFIRM_NIC_RECREATED = "nic re-created"
CONFIRM_IPCONFIG_REMOVED = "ipconfig removed"


def _empty_mapping() -> Mapping[str, str]:
    return MappingProxyType({})


class PlanInputError(InputError, ValueError):
    """An operator's request (plan_manual / admin changes) is invalid."""


@dataclass(frozen=True, slots=True)
class Readdress:
    """A managed entry changed in place: new IP / network (readdress) or new name (rename), or both.

    `after` carries the admin state of `before`.
    """

    before: PoolAddress
    after: PoolAddress

    @property
    def is_rename(self) -> bool:
        return self.before.name.lower() != self.after.name.lower()


@dataclass(frozen=True, slots=True)
class Conflict:
    """Something the plan could not do, reported instead of done."""

    name: str
    ip_address: str | None
    reason: str
    held_by: str | None = None  # the entry holding the IP, when that is what blocked it


@dataclass(frozen=True)
class PoolPlan:
    pool_id: str
    adds: tuple[DesiredAddress, ...] = ()
    removes: tuple[PoolAddress, ...] = ()
    readdresses: tuple[Readdress, ...] = ()  # same name, new IP / network
    renames: tuple[Readdress, ...] = ()  # legacy name -> guid name (and possibly a new IP too)
    admin_changes: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)
    unchanged: tuple[str, ...] = ()  # managed names in scope that already match
    unmanaged: tuple[str, ...] = ()  # reported only
    conflicts: tuple[Conflict, ...] = ()
    manual_adds: tuple[PoolAddress, ...] = ()  # operator-requested entries (plan_manual)
    confirmed: Mapping[str, str] = field(default_factory=_empty_mapping, hash=False)  # lower name -> why
    held: tuple[PoolAddress, ...] = ()  # removals left in place (guard), their IPs still held
    hold_reason: str = ""

    @property
    def is_empty(self) -> bool:
        """Nothing to write. Conflicts and held removals are reports, not work."""
        return not (
            self.adds or self.removes or self.readdresses or self.renames or self.admin_changes
            or self.manual_adds
        )

    @property
    def has_held(self) -> bool:
        """The guard kept removals back: a refusal the caller must report, not a silent no-op."""
        return bool(self.held)

    def ip_blockers(self) -> set[str]:
        """Names of the managed entries whose IP kept an add or move of this plan from happening."""
        return {c.held_by for c in self.conflicts if c.held_by and is_managed_name(c.held_by)}

    def removals_only(self) -> PoolPlan:
        """This plan's removals alone: when Azure refuses the whole plan, owners that are gone still leave."""
        return replace(self, adds=(), readdresses=(), renames=(), admin_changes=_empty_mapping(),
                       manual_adds=())

    def unconfirmed_removes(self) -> tuple[PoolAddress, ...]:
        return tuple(entry for entry in self.removes if entry.name.lower() not in self.confirmed)

    def summary(self) -> dict[str, Any]:
        return {
            "pool": self.pool_id,
            "add": len(self.adds) + len(self.manual_adds),
            "remove": len(self.removes),
            "readdress": len(self.readdresses),
            "rename": len(self.renames),
            "admin": len(self.admin_changes),
            "unchanged": len(self.unchanged),
            "unmanaged": len(self.unmanaged),
            "conflicts": len(self.conflicts),
            "confirmed": len(self.confirmed),
            "held": len(self.held),
        }

    def render(self) -> str:
        """Readable diff: `+` add, `-` remove, `~` change, `!` conflict or held removal."""
        lines = [f"pool {self.pool_id}"]
        lines += [f"+ {add.name} {add.ip_address}" for add in self.adds]
        lines += [f"+ {add.name} {add.ip_address}" for add in self.manual_adds]
        for entry in self.removes:
            reason = self.confirmed.get(entry.name.lower())
            lines.append(f"- {entry.name} {entry.ip_address}" + (f" ({reason})" if reason else ""))
        for change in self.renames:
            lines.append(f"~ {change.before.name} -> {change.after.name} (identity){_moved(change, '; ')}")
        for change in self.readdresses:
            lines.append(f"~ {change.after.name}{_moved(change, ' ')}")
        lines += [f"~ {name} adminState -> {state}" for name, state in self.admin_changes.items()]
        lines += [f"! {c.name} {c.ip_address or ''}: {c.reason}".replace("  ", " ") for c in self.conflicts]
        lines += [f"! {e.name} {e.ip_address}: removal held: {self.hold_reason}" for e in self.held]
        lines.append(f"= {len(self.unchanged)} unchanged, {len(self.unmanaged)} unmanaged")
        return "\n".join(lines)


def _moved(change: Readdress, separator: str) -> str:
    """`<old ip> -> <new ip> (network ...)` when the change moves the entry, else nothing."""
    before, after = change.before, change.after
    same_ip = normal_ip(before.ip_address) == normal_ip(after.ip_address)
    same_vnet = _same_vnet(_entry_vnet(before), after.vnet_id)
    if same_ip and same_vnet:
        return ""
    network = "" if same_vnet else f" (network {after.vnet_id})"
    return f"{separator}{before.ip_address} -> {after.ip_address}{network}"


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


def check_admin(admin: Mapping[str, str] | None) -> dict[str, str]:
    changes = dict(admin or {})
    for name, state in changes.items():
        if state not in ADMIN_STATES:
            raise PlanInputError(
                f"admin state for {name!r} must be one of {', '.join(ADMIN_STATES)}, got {state!r}"
            )
    return changes


@dataclass(frozen=True, slots=True)
class _Move:
    """An entry leaving `old_ip` for `new_ip`, named `final_name` afterwards (differs for a rename)."""

    name: str
    old_ip: str | None
    new_ip: str | None
    final_name: str


class IpHolders:
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

    def resolve_moves(self, moves: Sequence[_Move]) -> dict[str, str | None]:
        """Which entries may move: {lower name: None if it moves, else the name of its blocker}.

        An entry's old IP stays reserved until it is known to move, so a chain (a takes b's IP while b
        moves on) resolves, while a move blocked by a holder keeps its old IP, which may block others in
        turn. When only cycles are left (a->IP2, b->IP1, of any length) every member moves at once: the
        final list holds each IP once, which is what Azure validates in one PUT.
        """
        reserved: dict[str, _Move] = {}
        for move in moves:
            if normal_ip(move.old_ip):
                reserved.setdefault(normal_ip(move.old_ip) or "", move)
        outcome: dict[str, str | None] = {}

        def settle(move: _Move, blocker: str | None) -> None:
            outcome[move.name.lower()] = blocker
            self.hold(move.old_ip if blocker else move.new_ip, move.final_name)
            old = normal_ip(move.old_ip) or ""
            if reserved.get(old) is move:
                del reserved[old]

        waiting = list(moves)
        while waiting:
            still_waiting = []
            for move in waiting:
                if normal_ip(move.new_ip) == normal_ip(move.old_ip):  # claims nothing new: never blocked
                    settle(move, None)
                    continue
                blocker = self.holder(move.new_ip, move.final_name)
                owner = reserved.get(normal_ip(move.new_ip) or "")
                if blocker is None and owner is not None and owner is not move:
                    still_waiting.append(move)
                    continue
                settle(move, blocker)
            if len(still_waiting) == len(waiting):
                cycle = _cycle_members(still_waiting, reserved)
                if not cycle:  # cannot happen while every waiting move waits on another; never loop
                    holders = [reserved[normal_ip(move.new_ip) or ""].name for move in still_waiting]
                    for move, holder in zip(still_waiting, holders, strict=True):
                        settle(move, holder)
                    break
                for move in cycle:
                    settle(move, None)
                moved = {id(move) for move in cycle}
                still_waiting = [move for move in still_waiting if id(move) not in moved]
            waiting = still_waiting
        return outcome


def _cycle_members(waiting: Sequence[_Move], reserved: Mapping[str, _Move]) -> list[_Move]:
    """Moves on a cycle of "wants the old IP of" among moves that all wait on another waiting move.

    Each waiting move points at exactly one other (the one reserving its target IP), so following the
    pointers from any move ends on a cycle; moves merely leading into one are not members.
    """
    position = {id(move): index for index, move in enumerate(waiting)}
    done: set[int] = set()
    members: list[_Move] = []
    for start in waiting:
        path: list[_Move] = []
        on_path: set[int] = set()
        node: _Move | None = start
        while node is not None and id(node) not in done and id(node) not in on_path:
            path.append(node)
            on_path.add(id(node))
            node = reserved.get(normal_ip(node.new_ip) or "")
            if node is not None and id(node) not in position:
                node = None  # reserved by a move that already settled: not waiting
        if node is not None and id(node) in on_path:
            members += path[path.index(node):]
        done |= on_path
    return members


def plan(
    current: PoolSnapshot,
    desired: Mapping[str, DesiredAddress],
    *,
    scope: Callable[[str], bool] | None = None,
    admin_changes: Mapping[str, str] | None = None,
    confirmed: Mapping[str, str] | None = None,
    hold: Collection[str] = (),
    admin_of_new: Mapping[str, str] | None = None,
) -> PoolPlan:
    """Bring the managed entries of `current` to `desired`.

    `scope` (called with lower-cased names) limits which managed names the plan considers, both for
    removal and addition: an owner-scoped reconcile passes the names of one VM's ipconfigs so other
    managed entries are neither removed nor re-added. A managed entry holding the legacy name of an
    in-scope desired address is renamed to its new name (keeping its adminState) unless that name is
    already in the pool. Unmanaged entries are never changed, except by an explicit `admin_changes`
    entry (name -> None|Up|Down).

    `confirmed` maps lower-cased managed names to the reason a direct read says their owner is gone;
    it is copied to `PoolPlan.confirmed` for the removals in this plan. `hold` (lower-cased names):
    entries this plan would remove are kept as they are instead, listed in `held`, their IPs still
    held, so an add or move onto such an IP is a conflict. `admin_of_new` (lower-cased names -> state):
    the admin state an entry gets if this plan adds it (a drain that outlived its entry leaving the pool).
    """
    admin = check_admin(admin_changes)
    hold_keys = {name.lower() for name in hold}
    reasons = {name.lower(): reason for name, reason in (confirmed or {}).items()}

    def in_scope(name: str) -> bool:
        return scope is None or scope(name.lower())

    wanted = {name.lower(): want for name, want in desired.items() if in_scope(name)}
    in_pool = {entry.name.lower() for entry in current.addresses}
    by_legacy_name = {
        want.legacy_name.lower(): want
        for key, want in wanted.items()
        if want.legacy_name.lower() != key and key not in in_pool
    }
    holders = IpHolders()
    removes: list[PoolAddress] = []
    held: list[PoolAddress] = []
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
        elif key in by_legacy_name:
            pending.append((entry, by_legacy_name[key]))
            continue  # renamed, and moved too if its IP changed
        elif in_scope(entry.name):
            want = wanted.get(key)
            if want is None:
                if key not in hold_keys:
                    removes.append(entry)
                    continue
                held.append(entry)
            elif not _matches(entry, want):
                pending.append((entry, want))
                continue  # its old IP is released; its new one is claimed below
            else:
                unchanged.append(entry.name)
        holders.hold(entry.ip_address, entry.name)

    held_names = {entry.name.lower() for entry in held}
    removed_keys = [entry.name.lower() for entry in removes]

    def held_by(name: str) -> str:
        return f"{name} (its removal is held)" if name.lower() in held_names else name

    readdresses: list[Readdress] = []
    renames: list[Readdress] = []
    blockers = holders.resolve_moves(
        [_Move(entry.name, entry.ip_address, want.ip_address, want.name) for entry, want in pending]
    )
    for entry, want in pending:
        blocker = blockers[entry.name.lower()]
        renamed = entry.name.lower() != want.name.lower()
        if blocker is None:
            after = want.as_pool_address(entry.admin_state)
        elif renamed:  # the identity still moves on; the IP stays until its holder lets go
            after = replace(entry, name=want.name)
            conflicts.append(Conflict(
                want.name, want.ip_address, f"IP already held by {held_by(blocker)}; renamed, IP left as is",
                blocker,
            ))
        else:
            conflicts.append(Conflict(
                entry.name, want.ip_address, f"IP already held by {held_by(blocker)}; left as is", blocker
            ))
            continue
        (renames if renamed else readdresses).append(Readdress(entry, after))

    renamed_to = {change.after.name.lower() for change in renames}
    adds: list[DesiredAddress] = []
    for key, want in wanted.items():
        if key in present or key in renamed_to:
            continue
        other = holders.holder(want.ip_address, want.name)
        if other is not None:
            conflicts.append(
                Conflict(want.name, want.ip_address, f"IP already held by {held_by(other)}; not added", other)
            )
            continue
        adds.append(want)
        holders.hold(want.ip_address, want.name)

    # What each name refers to after the plan, so an admin change may use the old or the new name.
    final: dict[str, PoolAddress] = dict(present)
    final.update({want.name.lower(): want.as_pool_address() for want in adds})
    for change in renames:
        final[change.before.name.lower()] = final[change.after.name.lower()] = change.after
    admin_plan: dict[str, str] = {}
    for want in adds:
        carried = (admin_of_new or {}).get(want.name.lower())
        if carried is not None and carried != ADMIN_NONE:
            admin_plan[want.name] = carried
    for name, state in admin.items():
        target = final.get(name.lower())
        if target is None:
            conflicts.append(Conflict(name, None, "no such address; admin state not changed"))
        elif target.admin_state != state or name.lower() not in present:
            admin_plan[target.name] = state

    return PoolPlan(
        pool_id=current.id,
        adds=tuple(adds),
        removes=tuple(removes),
        readdresses=tuple(readdresses),
        renames=tuple(renames),
        admin_changes=MappingProxyType(admin_plan),
        unchanged=tuple(unchanged),
        unmanaged=tuple(unmanaged),
        conflicts=tuple(conflicts),
        confirmed=MappingProxyType({key: reasons[key] for key in removed_keys if key in reasons}),
        held=tuple(held),
    )





def apply_plan(addresses: Sequence[PoolAddress], plan: PoolPlan) -> list[PoolAddress]:
    """The pool's address list after `plan`; idempotent, and safe on a list fresher than the plan's.

    Untouched entries keep their order and content; removals skip absent names; a readdress or add
    whose IP another entry now holds is skipped (a rename then changes the name only); a rename whose
    new name is already present is skipped; adds skip names already present. Swapped IPs move together.
    New entries go last. Admin changes apply to the names the entries have afterwards.
    """
    removes = {entry.name.lower() for entry in plan.removes}
    names_now = {entry.name.lower() for entry in addresses}
    targets = {change.before.name.lower(): change.after for change in plan.readdresses}
    for change in plan.renames:
        if change.after.name.lower() not in names_now:  # else someone already renamed it
            targets[change.before.name.lower()] = change.after
    admin = {name.lower(): state for name, state in plan.admin_changes.items()}

    surviving = [entry for entry in addresses if entry.name.lower() not in removes]
    holders = IpHolders()
    for entry in surviving:
        if entry.name.lower() not in targets:
            holders.hold(entry.ip_address, entry.name)
    blockers = holders.resolve_moves(
        [
            _Move(entry.name, entry.ip_address, after.ip_address, after.name)
            for entry in surviving
            if (after := targets.get(entry.name.lower())) is not None
        ]
    )
    result: list[PoolAddress] = []
    for entry in surviving:
        key = entry.name.lower()
        after = targets.get(key)
        name = after.name if after is not None and after.name.lower() != key else entry.name
        if after is not None and blockers[key] is None:
            entry = replace(
                entry,
                name=name,
                ip_address=after.ip_address,
                vnet_id=after.vnet_id,
                subnet_id=after.subnet_id,
            )
        elif name != entry.name:  # a rename whose new IP someone else took: the identity still moves
            entry = replace(entry, name=name)
        state = admin.get(entry.name.lower())
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
