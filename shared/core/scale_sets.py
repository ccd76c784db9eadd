"""Scale sets as owners (pure): one scale-set event names the set; a round reads the set's own lists
and works on every instance they show or the member index remembers.

A Uniform instance (`.../virtualMachineScaleSets/{ss}/virtualMachines/{n}`) becomes a `VirtualMachine`
with the set's tags (Uniform instances cannot carry tags of their own) and its NICs
(`.../virtualMachines/{n}/networkInterfaces/{nic}`); a Flexible instance is an ordinary VM with its own
tags. The set's lists are authoritative: an instance, or an instance's NIC, that the index recorded and
the lists no longer show is gone, so its entries' removal is confirmed (a 90% scale-in is not a guard
matter) - and if the set itself is gone, all of them are. Unless the lists may hide them: a set whose read
was refused (403), or whose lists RBAC filtered (fewer instances than its capacity, a listed instance's NIC
missing), proves nothing absent; those instances' entries stay as they are and the set is undecided.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from shared.core.arm_json import nic_from_json, vm_from_json
from shared.core.changes import KIND_NIC, KIND_VM, ChangeSet, Owner, OwnerState
from shared.core.events import KIND_SCALE_SET
from shared.core.ids import ResourceId, id_key
from shared.core.member_record import MemberRecord
from shared.core.models import Inventory, NetworkInterface, VirtualMachine

OWNER_KINDS = (KIND_VM, KIND_NIC, KIND_SCALE_SET)  # what an owner round works from
_UNIFORM_NIC = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Compute"
    r"/virtualMachineScaleSets/(?P<set>[^/]+)/virtualMachines/(?P<instance>[^/]+)"
    r"/networkInterfaces/(?P<nic>[^/]+)$", re.IGNORECASE)


@dataclass(frozen=True)
class UniformNicId:
    """The parts of a Uniform instance's NIC id (three levels deep: no `ResourceId` of its own)."""

    subscription: str
    resource_group: str
    scale_set: str
    instance: str
    nic: str

    @classmethod
    def parse(cls, nic_id: str) -> UniformNicId | None:
        match = _UNIFORM_NIC.match(nic_id.rstrip("/"))
        if match is None:
            return None
        return cls(match["sub"], match["rg"], match["set"], match["instance"], match["nic"])
UNIFORM = "uniform"
FLEXIBLE = "flexible"


@dataclass
class ScaleSetRead:
    """A scale set as its own lists show it now. `exists` is False for a set that is gone (404) and for one
    that is `unreadable`: its GET or one of its lists answered 403 (neither present nor gone: its instances
    are not known, none of them is gone)."""

    id: str
    exists: bool
    mode: str = UNIFORM
    instances: list[VirtualMachine] = field(default_factory=list)
    nics: list[NetworkInterface] = field(default_factory=list)
    known_nic_keys: frozenset[str] = frozenset()  # NICs the read saw at all (attached or not)
    unreadable: bool = False
    capacity: int | None = None  # the set's sku.capacity: how many instances it says it has

    @classmethod
    def refused(cls, scale_set_id: str) -> ScaleSetRead:
        return cls(scale_set_id, exists=False, unreadable=True)

    @cached_property
    def listed_instances(self) -> dict[str, VirtualMachine]:
        """Instance key -> instance, of the instances listed."""
        return {id_key(vm.id): vm for vm in self.instances}
    # Flexible: the resource groups whose NIC lists were read (group_key); None: every NIC of the set's
    # instances is in the list read (Uniform: the set's own NIC list)
    nic_groups: frozenset[str] | None = None

    @property
    def short(self) -> bool:
        """The instance list shows fewer instances than the set has: RBAC filters lists silently (a Flexible
        set's instances are VMs of their own), or instances are still being created."""
        return self.capacity is not None and len(self.instances) < self.capacity

    def hides(self, record: MemberRecord) -> bool:
        """The lists may leave out this recorded instance or NIC although it exists, so its absence proves
        nothing: the read was refused, the instance list is short, or a listed instance still uses a NIC
        the NIC list does not show (a filtered list: an attached NIC cannot be deleted)."""
        if self.unreadable:
            return True
        instance = self.listed_instances.get(id_key(record.vm_id))
        if instance is None:
            return self.short
        return id_key(record.nic_id) not in self.known_nic_keys \
            and instance.uses_nic(record.nic_id)

    def why_undecided(self) -> str:
        if self.unreadable:
            return f"read refused (403): poolsync may not read scale set {self.id}"
        return (f"scale set {self.id}: its lists do not show every instance and NIC it has "
                f"({len(self.instances)} instances listed, capacity {self.capacity}): "
                "not visible to poolsync, or not created yet")

    def lists_nic(self, nic_id: str) -> bool:
        """Whether this read would show the NIC if it existed: only then does its absence prove it gone."""
        return not self.exists or self.nic_groups is None or group_key(nic_id) in self.nic_groups


def group_key(resource_id: str) -> str:
    """The comparison key of a resource's resource group (`/subscriptions/s/resourcegroups/g`)."""
    rid = ResourceId.parse(resource_id)
    return f"/subscriptions/{rid.subscription}/resourcegroups/{rid.resource_group}".lower()


def nic_groups(scale_set_id: str, instances: Iterable[Mapping[str, Any]]) -> list[str]:
    """The resource groups (group_key) whose NIC lists show a Flexible set's instances' NICs: the set's own
    and any other one an instance's NIC lives in (a VM may use a NIC of another resource group)."""
    groups = {group_key(scale_set_id): None}
    for instance in instances:
        for nic_id in vm_from_json(instance).nic_ids:
            groups.setdefault(group_key(nic_id), None)
    return list(groups)


@dataclass(frozen=True)
class ScaleSetProfile:
    """What the audit needs of a scale set: the pools its network profile puts its instances in."""

    id: str
    mode: str
    pool_ids: tuple[str, ...]


def profile_from_json(scale_set: Mapping[str, Any]) -> ScaleSetProfile:
    network = (((scale_set.get("properties") or {}).get("virtualMachineProfile") or {})
               .get("networkProfile") or {})
    pools: dict[str, str] = {}
    for config in network.get("networkInterfaceConfigurations") or []:
        for ipconfig in (config.get("properties") or {}).get("ipConfigurations") or []:
            for ref in (ipconfig.get("properties") or {}).get("loadBalancerBackendAddressPools") or []:
                if isinstance(ref, Mapping) and isinstance(ref.get("id"), str):
                    pools.setdefault(id_key(ref["id"]), ref["id"])
    return ScaleSetProfile(str(scale_set["id"]), mode_of(scale_set), tuple(pools.values()))


def mode_of(scale_set: Mapping[str, Any]) -> str:
    mode = str((scale_set.get("properties") or {}).get("orchestrationMode") or "Uniform")
    return FLEXIBLE if mode.lower() == FLEXIBLE else UNIFORM


def uniform_instance(scale_set: Mapping[str, Any], instance: Mapping[str, Any]) -> VirtualMachine:
    """A Uniform instance as a VM: its name and NICs, the set's tags and resource group."""
    vm = vm_from_json(instance)
    return VirtualMachine(vm.id, vm.name, ResourceId.parse(str(scale_set["id"])).resource_group,
                          dict(scale_set.get("tags") or {}), vm.nic_ids, scale_set_id=str(scale_set["id"]))


def read_from_json(scale_set_id: str, scale_set: Mapping[str, Any] | None,
                   instances: Iterable[Mapping[str, Any]], nics: Iterable[Mapping[str, Any]],
                   groups: Iterable[str] | None = None) -> ScaleSetRead:
    """`instances`: the set's instance list; `nics`: Uniform - the set's NIC list, Flexible - the NICs of
    the resource groups `groups` (see `nic_groups`; only those attached to an instance are kept)."""
    if scale_set is None:
        return ScaleSetRead(scale_set_id, exists=False)
    mode = mode_of(scale_set)
    canonical = str(scale_set["id"])
    if mode == UNIFORM:
        vms = [uniform_instance(scale_set, instance) for instance in instances]
    else:
        vms = [vm_from_json(instance) for instance in instances]
        vms = [vm if vm.scale_set_id else _with_set(vm, canonical) for vm in vms]
    parsed = [nic_from_json(nic) for nic in nics]
    keys = {id_key(vm.id) for vm in vms}
    attached = [nic for nic in parsed if nic.vm_id and id_key(nic.vm_id) in keys]
    return ScaleSetRead(canonical, True, mode, vms, attached, frozenset(id_key(n.id) for n in parsed),
                        capacity=capacity_of(scale_set),
                        nic_groups=frozenset(groups) if groups is not None and mode != UNIFORM else None)


def sets_a_list_may_hide(inventory: Inventory, records: Iterable[MemberRecord]) -> tuple[set[str], list[str]]:
    """What a subscription's list read (`inventory`) proves about the recorded scale sets, which RBAC may
    filter silently. First the keys of the sets whose instances it may not show all of: their instance or
    NIC list answered 403, or fewer instances are listed than their capacity. Then the ids of the other
    recorded sets the read did not list at all (gone, or hidden from this principal: only a GET tells)."""
    records = list(records)
    recorded = {id_key(r.scale_set_id): r.scale_set_id for r in records if r.scale_set_id}
    shown = Counter(id_key(vm.scale_set_id) for vm in inventory.vms.values() if vm.scale_set_id)
    capacity = inventory.set_capacity
    hidden = {key for key in recorded if key in inventory.unreadable_sets
              or (capacity.get(key) or 0) > shown[key]}
    unlisted = [set_id for key, set_id in recorded.items() if key not in capacity and key not in hidden]
    return hidden, unlisted


def capacity_of(scale_set: Mapping[str, Any]) -> int | None:
    """How many instances the set says it has (its sku.capacity), if it says."""
    capacity = (scale_set.get("sku") or {}).get("capacity")
    return capacity if isinstance(capacity, int) and not isinstance(capacity, bool) else None


def _with_set(vm: VirtualMachine, scale_set_id: str) -> VirtualMachine:
    return VirtualMachine(vm.id, vm.name, vm.resource_group, vm.tags, vm.nic_ids, scale_set_id)


@dataclass
class ScaleSetRound:
    """The instances a scale-set round works on, as VM owners, and what the set's lists prove."""

    owners: list[Owner]
    state: OwnerState
    instances_of: dict[str, set[str]]  # scale set key -> instance (VM owner) keys
    # scale set key -> why nothing could be decided for some of its instances (a refused read, a filtered
    # list), and the index records of the instances left undecided
    undecided: dict[str, str] = field(default_factory=dict)
    hidden: dict[str, list[MemberRecord]] = field(default_factory=dict)

    def pools_by_set(self, pools_by_owner: Mapping[str, set[str]]) -> dict[str, set[str]]:
        """Scale set key -> the pools its instances touched (what the flusher waits on per set event)."""
        return {set_key: set().union(*(pools_by_owner.get(key, set()) for key in keys))
                for set_key, keys in self.instances_of.items()}

    def settle(self, changes: ChangeSet, managed_pool_keys: Collection[str]) -> None:
        """Per set, what its event waits on: the pools its instances touched; a set with undecided instances
        is undecided too, and waits when the index holds entries of them in managed pools."""
        changes.pools_by_owner.update(self.pools_by_set(changes.pools_by_owner))
        for set_key, reason in self.undecided.items():
            changes.undecided[set_key] = reason
            if any(r.pool_key in managed_pool_keys for r in self.hidden.get(set_key, ())) \
                    or self.instances_of.get(set_key, set()) & changes.undecided_with_entries:
                changes.undecided_with_entries.add(set_key)


def scale_set_round(reads: Iterable[ScaleSetRead], records: Iterable[MemberRecord]) -> ScaleSetRound:
    """The instances listed now and those the index recorded become VM owners; what the lists show is the
    state, and a recorded instance or NIC no list shows is gone (its removal confirmed) - unless the lists
    may hide it (`ScaleSetRead.hides`): then it is unreadable, no owner, and its set undecided."""
    inventory = Inventory()
    gone: set[str] = set()
    unreadable: set[str] = set()
    owners: dict[str, Owner] = {}
    by_set = {id_key(read.id): read for read in reads}
    instances_of: dict[str, set[str]] = {key: set() for key, read in by_set.items() if not read.unreadable}
    undecided = {key: read.why_undecided() for key, read in by_set.items() if read.unreadable}
    hidden: dict[str, list[MemberRecord]] = {}
    for set_key, read in by_set.items():
        for vm in read.instances:
            inventory.add_vm(vm)
            owners[id_key(vm.id)] = Owner(KIND_VM, vm.id)
            instances_of[set_key].add(id_key(vm.id))
        for nic in read.nics:
            inventory.add_nic(nic)
    for record in records:
        set_key = id_key(record.scale_set_id or "")
        listed = by_set.get(set_key)
        if listed is None:
            continue
        if listed.hides(record):
            hidden.setdefault(set_key, []).append(record)
            undecided.setdefault(set_key, listed.why_undecided())
            unreadable.add(id_key(record.nic_id))
            if id_key(record.vm_id) not in listed.listed_instances:
                unreadable.add(id_key(record.vm_id))
            continue
        owners.setdefault(id_key(record.vm_id), Owner(KIND_VM, record.vm_id))
        instances_of[set_key].add(id_key(record.vm_id))
        if id_key(record.vm_id) not in listed.listed_instances:
            gone.add(id_key(record.vm_id))
        if id_key(record.nic_id) not in listed.known_nic_keys and listed.lists_nic(record.nic_id):
            gone.add(id_key(record.nic_id))
    state = OwnerState(inventory, frozenset(gone), direct=True, unreadable=frozenset(unreadable))
    return ScaleSetRound(list(owners.values()), state, instances_of, undecided, hidden)


def merged(first: OwnerState, second: OwnerState) -> OwnerState:
    """Two reads of one round as one state (the scale-set read is the newer for its instances). What the
    first read saw of its own (a VM or NIC event's owner) is not made unreadable by a set refused to the
    second."""
    inventory = Inventory(dict(first.inventory.vms), dict(first.inventory.nics))
    inventory.vms.update(second.inventory.vms)
    inventory.nics.update(second.inventory.nics)
    seen = first.gone | first.inventory.vms.keys() | first.inventory.nics.keys()
    return OwnerState(inventory, first.gone | second.gone, first.direct and second.direct,
                      first.unreadable | (second.unreadable - seen))
