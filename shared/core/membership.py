"""Which ipconfigs the rules put in which pool: pure, and fast enough for 100k NICs x 1k rules.

Rules are indexed by virtual network, then per network and IP version the CIDR ranges are cut into
elementary intervals (sorted boundaries) each listing the rules covering it, so one ipconfig costs a
dict lookup plus a bisect; tag / resource-group / VM-name filters run only on CIDR hits.
"""

from __future__ import annotations

import socket
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence

from shared.core.ids import id_key, vnet_of_subnet
from shared.core.models import DesiredAddress, Inventory
from shared.core.naming import address_name
from shared.core.rules import Rule, RuleSet, lower_tag_keys

VM_OWNER = "vm"

Membership = dict[str, dict[str, DesiredAddress]]  # pool key -> address name -> desired address


class _RangeIndex:
    """Rules covering each elementary interval of one IP version in one virtual network."""

    def __init__(self, ranges: Sequence[tuple[int, int, Rule]]) -> None:
        starts: dict[int, list[Rule]] = defaultdict(list)
        stops: dict[int, list[Rule]] = defaultdict(list)
        for first, last, rule in ranges:
            starts[first].append(rule)
            stops[last + 1].append(rule)
        self.boundaries = sorted(starts.keys() | stops.keys())
        self.covering: list[tuple[Rule, ...]] = []
        active: dict[int, list[Rule]] = {}  # rule index -> one entry per covering CIDR of that rule
        shared: dict[tuple[int, ...], tuple[Rule, ...]] = {}
        for boundary in self.boundaries:
            for rule in stops.get(boundary, ()):
                active[rule.index].pop()
                if not active[rule.index]:
                    del active[rule.index]
            for rule in starts.get(boundary, ()):
                active.setdefault(rule.index, []).append(rule)
            key = tuple(sorted(active))
            if key not in shared:  # many intervals share a rule list: keep one tuple per distinct list
                shared[key] = tuple(active[index][0] for index in key)
            self.covering.append(shared[key])

    def find(self, value: int) -> tuple[Rule, ...]:
        position = bisect_right(self.boundaries, value) - 1
        return self.covering[position] if position >= 0 else ()


class MembershipIndex:
    """Rules by virtual network key, then by IP version. Built once per RuleSet (`membership_index`)."""

    def __init__(self, rules: Iterable[Rule]) -> None:
        by_vnet: dict[str, dict[int, list[tuple[int, int, Rule]]]] = defaultdict(lambda: {4: [], 6: []})
        for rule in rules:
            for cidr in rule.cidrs:
                by_vnet[rule.vnet_key][cidr.version].append(
                    (int(cidr.network_address), int(cidr.broadcast_address), rule)
                )
        self._by_vnet = {
            vnet: {version: _RangeIndex(ranges) for version, ranges in versions.items() if ranges}
            for vnet, versions in by_vnet.items()
        }

    def rules_for(self, vnet_key: str, ip_address: str) -> tuple[Rule, ...]:
        """Rules whose virtual network and CIDRs contain this address (filters not yet applied)."""
        versions = self._by_vnet.get(vnet_key)
        if versions is None:
            return ()
        parsed = _ip_to_int(ip_address)
        if parsed is None:
            return ()
        version, value = parsed
        ranges = versions.get(version)
        return ranges.find(value) if ranges is not None else ()


def _ip_to_int(text: str) -> tuple[int, int] | None:
    # inet_pton is several times faster than ipaddress.ip_address on the hot path
    family, version = (socket.AF_INET6, 6) if ":" in text else (socket.AF_INET, 4)
    try:
        return version, int.from_bytes(socket.inet_pton(family, text), "big")
    except OSError:
        return None


def compute_membership(inventory: Inventory, rules: RuleSet) -> Membership:
    """Desired addresses of every pool the rules manage; each managed pool appears, possibly empty."""
    desired: Membership = {pool_key: {} for pool_key in map(id_key, rules.managed_pool_ids())}
    _collect(inventory, rules, desired)
    return desired


def _collect(inventory: Inventory, rules: RuleSet, desired: Membership) -> None:
    index = rules.membership_index
    vnets_by_subnet: dict[str, tuple[str, str]] = {}  # many ipconfigs share a subnet
    for vm, nic in inventory.attached():
        if nic.owner_kind != VM_OWNER:
            continue
        vm_tags: dict[str, str] | None = None
        for ipc in nic.ip_configurations:
            if not ipc.private_ip or not ipc.subnet_id:
                continue
            vnet = vnets_by_subnet.get(ipc.subnet_id)
            if vnet is None:
                vnet_id = vnet_of_subnet(ipc.subnet_id)
                vnet = vnets_by_subnet[ipc.subnet_id] = (id_key(vnet_id), vnet_id)
            hits = index.rules_for(vnet[0], ipc.private_ip)
            if not hits:
                continue
            name: str | None = None
            is_primary = nic.primary and ipc.primary
            for rule in hits:
                if rule.primary_only and not is_primary:
                    continue
                if vm_tags is None:
                    vm_tags = lower_tag_keys(vm.tags)
                if not rule.matches_vm(vm, vm_tags):
                    continue
                name = name or address_name(nic.id, ipc.name, nic.resource_guid)
                desired.setdefault(rule.pool_key, {})[name] = DesiredAddress(
                    name=name,
                    ip_address=ipc.private_ip,
                    vnet_id=vnet[1],
                    nic_id=nic.id,
                    ipconfig_name=ipc.name,
                    vm_id=vm.id,
                    subnet_id=ipc.subnet_id,
                    nic_guid=nic.resource_guid,
                )
