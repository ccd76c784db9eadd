"""What one flush round must do, from the owners its events named (pure: no I/O).

An event names a VM, a NIC or a resource group. A round collects the owners of the intents it took, reads
them as Azure holds them now (`OwnerState`: direct GETs, or one list read for a large burst), looks up the
entries the member index says poolsync wrote for them, and turns all that into `PoolWork`: per affected pool,
the desired entries of those owners, the names a plan may touch (nothing else in the pool), and which
removals a read confirmed (the NIC or VM is gone, the NIC was detached or re-created). Confirmed removals
always apply; the others go through the blast-radius guard (`shared.core.guard.guarded_plan`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shared.core.ids import ResourceId, id_key
from shared.core.member_record import MemberRecord
from shared.core.membership import compute_membership
from shared.core.models import DesiredAddress, Inventory, NetworkInterface
from shared.core.plan import (
    CONFIRM_IPCONFIG_REMOVED,
    CONFIRM_NIC_DELETED,
    CONFIRM_NIC_DETACHED,
    CONFIRM_NIC_RECREATED,
    CONFIRM_VM_DELETED,
)
from shared.core.rules import RuleSet

KIND_VM = "vm"
KIND_NIC = "nic"

NIC_ATTACHED_ELSEWHERE = "nic attached to another vm"


@dataclass(frozen=True)
class Owner:
    kind: str  # vm | nic
    id: str

    @property
    def key(self) -> str:
        return id_key(self.id)


@dataclass
class OwnerState:
    """The owners as read now. `gone` holds id keys a GET answered 404 for; `unreadable` those it answered
    403 for (neither present nor gone: nothing about them may be decided); `direct` says every owner was
    read by a GET of its own (a list read cannot tell "gone" from "not visible to this principal")."""

    inventory: Inventory
    gone: frozenset[str] = frozenset()
    direct: bool = True
    unreadable: frozenset[str] = frozenset()


@dataclass
class PoolWork:
    pool_id: str
    wanted: dict[str, DesiredAddress] = field(default_factory=dict)  # name -> desired entry (owners only)
    scope: set[str] = field(default_factory=set)  # lower-cased names the plan may add, change or remove
    confirmed: dict[str, str] = field(default_factory=dict)  # lower name -> why its removal is confirmed
    records: dict[str, MemberRecord] = field(default_factory=dict)  # lower name -> index record
    # full reconcile: lower names left as they are (their scale set's read was refused or its lists may hide
    # them: neither there nor gone)
    kept: set[str] = field(default_factory=set)

    @property
    def lb_id(self) -> str:
        return str(ResourceId.parse(self.pool_id).parent)

    def in_scope(self, lowered_name: str) -> bool:
        return lowered_name in self.scope

    def not_kept(self, lowered_name: str) -> bool:
        return lowered_name not in self.kept


@dataclass
class ChangeSet:
    pools: dict[str, PoolWork] = field(default_factory=dict)  # pool key -> work
    pools_by_owner: dict[str, set[str]] = field(default_factory=dict)  # owner key -> pool keys it touches
    # owner key -> why nothing could be decided for it (a read was refused); its entries stay as they are
    undecided: dict[str, str] = field(default_factory=dict)
    # owner keys of undecided owners that have entries in managed pools: their intents must wait
    undecided_with_entries: set[str] = field(default_factory=set)


def owner_nics(owners: Iterable[Owner], inventory: Inventory,
               records: Iterable[MemberRecord]) -> dict[str, str]:
    """NIC key -> NIC id of every NIC a round must look at: named NICs, the NICs of named VMs (as read
    now, and as the index remembers them: a VM update may have detached one)."""
    nics: dict[str, str] = {}
    for owner in owners:
        if owner.kind == KIND_NIC:
            nics[owner.key] = owner.id
        else:
            vm = inventory.vms.get(owner.key)
            for nic_id in vm.nic_ids if vm is not None else ():
                nics.setdefault(id_key(nic_id), nic_id)
    for record in records:
        nics.setdefault(id_key(record.nic_id), record.nic_id)
    return nics


def nic_filtered_out(record: MemberRecord, inventory: Inventory) -> bool:
    """A list read shows the record's VM still using the record's NIC, but not the NIC: RBAC filtered the
    NIC list (an attached NIC cannot be deleted), so the read proves nothing about the entry."""
    vm = inventory.vms.get(id_key(record.vm_id))
    return vm is not None and id_key(record.nic_id) not in inventory.nics \
        and vm.uses_nic(record.nic_id)


def removal_confirmation(record: MemberRecord, state: OwnerState) -> str | None:
    """Why a read proves this recorded entry's owner no longer holds it, or None if nothing proves it."""
    nic = state.inventory.nics.get(id_key(record.nic_id))
    if nic is None:
        if id_key(record.nic_id) in state.gone:
            return CONFIRM_NIC_DELETED
        return CONFIRM_VM_DELETED if id_key(record.vm_id) in state.gone else None
    return _nic_fact(record, nic, state)


def _nic_fact(record: MemberRecord, nic: NetworkInterface, state: OwnerState) -> str | None:
    if record.nic_guid and nic.resource_guid and record.nic_guid.lower() != nic.resource_guid.lower():
        return CONFIRM_NIC_RECREATED
    if not any(config.name.lower() == record.ipconfig_name.lower() for config in nic.ip_configurations):
        return CONFIRM_IPCONFIG_REMOVED
    if nic.vm_id is None:
        return CONFIRM_NIC_DETACHED
    if record.vm_id and id_key(nic.vm_id) != id_key(record.vm_id):
        return NIC_ATTACHED_ELSEWHERE
    if id_key(nic.vm_id) in state.gone:
        return CONFIRM_VM_DELETED
    return None


def owner_change(rules: RuleSet, owners: Iterable[Owner], state: OwnerState,
                 records: Iterable[MemberRecord]) -> ChangeSet:
    """The pools these owners' changes touch, and what each pool's plan may do."""
    owners = list(owners)
    records = list(records)
    nics = owner_nics(owners, state.inventory, records)
    blind = _unreadable_nics(nics, state)
    # Only the owners' NICs count, even when the state is a whole subscription's list read.
    scoped = Inventory()
    for key in nics:
        nic = state.inventory.nics.get(key)
        if nic is None or key in blind:
            continue
        scoped.add_nic(nic)
        vm = state.inventory.vms.get(id_key(nic.vm_id)) if nic.vm_id else None
        if vm is not None and id_key(nic.vm_id or "") not in state.gone:
            scoped.add_vm(vm)
    managed = {id_key(pool_id): pool_id for pool_id in rules.managed_pool_ids()}
    changes = ChangeSet()

    def work(pool_key: str) -> PoolWork:
        if pool_key not in changes.pools:
            changes.pools[pool_key] = PoolWork(managed[pool_key])
        return changes.pools[pool_key]

    touched_by_nic: dict[str, set[str]] = {}
    for pool_key, wanted in compute_membership(scoped, rules).items():
        for name, desired in wanted.items():
            pool = work(pool_key)
            pool.wanted[name] = desired
            pool.scope.update({name.lower(), desired.legacy_name.lower()})
            touched_by_nic.setdefault(id_key(desired.nic_id), set()).add(pool_key)
    for record in records:
        if record.pool_key not in managed:  # the rules stopped managing that pool: not ours to touch now
            continue
        if id_key(record.nic_id) in blind or id_key(record.vm_id) in state.unreadable:
            continue  # cannot tell whether its owner still holds it: leave the entry as it is
        pool = work(record.pool_key)
        lowered = record.name.lower()
        pool.scope.add(lowered)
        pool.records[lowered] = record
        touched_by_nic.setdefault(id_key(record.nic_id), set()).add(record.pool_key)
        reason = removal_confirmation(record, state)
        if reason is not None:
            pool.confirmed[lowered] = reason
    nics_of_vm = _nics_of_vms(owners, state.inventory, records)
    for owner in owners:
        keys = {owner.key} if owner.kind == KIND_NIC else nics_of_vm.get(owner.key, set())
        changes.pools_by_owner[owner.key] = set().union(*(touched_by_nic.get(k, set()) for k in keys))
        if owner.key in state.unreadable or keys & blind:
            changes.undecided[owner.key] = "read refused (403): poolsync may not read this owner"
            if any(r.pool_key in managed and (id_key(r.nic_id) in keys or id_key(r.vm_id) == owner.key)
                   for r in records):
                changes.undecided_with_entries.add(owner.key)
    return changes


def _unreadable_nics(nics: Mapping[str, str], state: OwnerState) -> set[str]:
    """NIC keys whose NIC, or the VM it is attached to, could not be read (403), and those a list read left
    out although a VM it shows still uses them (RBAC filtered the NIC list)."""
    blind = {key for key in nics if key in state.unreadable}
    unlisted = {key for key in nics if key not in state.inventory.nics and key not in state.gone}
    if unlisted and not state.direct:  # who uses them: one pass over the listed VMs, only when it can matter
        blind |= {id_key(nic_id) for vm in state.inventory.vms.values() for nic_id in vm.nic_ids
                  if id_key(nic_id) in unlisted}
    for key in nics:
        nic = state.inventory.nics.get(key)
        if nic is not None and nic.vm_id and id_key(nic.vm_id) in state.unreadable:
            blind.add(key)
    return blind


def _nics_of_vms(owners: Iterable[Owner], inventory: Inventory,
                 records: Iterable[MemberRecord]) -> dict[str, set[str]]:
    """VM key -> NIC keys it has now or had when the index recorded an entry (one pass over each)."""
    found: dict[str, set[str]] = {}
    for owner in owners:
        vm = inventory.vms.get(owner.key) if owner.kind == KIND_VM else None
        if vm is not None:
            found.setdefault(owner.key, set()).update(id_key(n) for n in vm.nic_ids)
    for record in records:
        found.setdefault(id_key(record.vm_id), set()).add(id_key(record.nic_id))
    return found


def records_for(pool_id: str, wanted: Mapping[str, DesiredAddress],
                names: Iterable[str]) -> list[MemberRecord]:
    """Index records for the desired entries `names` of a pool (what a write is about to put there)."""
    lb_id = str(ResourceId.parse(pool_id).parent)
    by_name = {name.lower(): desired for name, desired in wanted.items()}
    found = []
    for name in names:
        desired = by_name.get(name.lower())
        if desired is not None:
            found.append(MemberRecord(pool_id, lb_id, desired.name, desired.nic_id, desired.ipconfig_name,
                                      desired.vm_id, desired.nic_guid, desired.ip_address,
                                      desired.scale_set_id))
    return found
