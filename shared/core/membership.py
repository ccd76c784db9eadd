"""Which ipconfigs the rules put in which pool: pure, and fast enough for 100k NICs x 1k rules.

Rules are found per ipconfig through the rule set's CIDR index (shared/core/cidr_index.py); tag /
resource-group / VM-name filters run only on CIDR hits.
"""

from __future__ import annotations

from shared.core.ids import id_key, vnet_of_subnet
from shared.core.models import DesiredAddress, Inventory
from shared.core.naming import address_name
from shared.core.rules import RuleSet, lower_tag_keys

VM_OWNER = "vm"

Membership = dict[str, dict[str, DesiredAddress]]  # pool key -> address name -> desired address


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
                    scale_set_id=vm.scale_set_id,
                )
