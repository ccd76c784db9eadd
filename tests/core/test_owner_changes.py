"""shared.core.changes: which pools one round touches, and which removals a read confirmed (pure)."""

from __future__ import annotations

from shared.core.changes import KIND_NIC, KIND_VM, Owner, OwnerState, owner_change
from shared.core.member_record import MemberRecord
from shared.core.models import Inventory, IpConfiguration, NetworkInterface, VirtualMachine
from shared.core.naming import address_name
from shared.core.plan import CONFIRM_NIC_DELETED, CONFIRM_NIC_DETACHED, CONFIRM_NIC_RECREATED
from shared.core.rules import parse_rules

SUB = "00000000-0000-0000-0000-000000000000"
BASE = f"/subscriptions/{SUB}/resourceGroups/rg/providers"
VNET = f"{BASE}/Microsoft.Network/virtualNetworks/vnet"
LB = f"{BASE}/Microsoft.Network/loadBalancers/lb"
WEB, OTHER = f"{LB}/backendAddressPools/web", f"{LB}/backendAddressPools/other"
RULES = parse_rules({"version": 1, "rules": [
    {"name": "web", "pool": WEB, "virtualNetwork": VNET, "cidrs": ["10.0.1.0/24"]},
    {"name": "other", "pool": OTHER, "virtualNetwork": VNET, "cidrs": ["10.0.2.0/24"]}]})


def vm_id(name: str) -> str:
    return f"{BASE}/Microsoft.Compute/virtualMachines/{name}"


def nic_id(name: str) -> str:
    return f"{BASE}/Microsoft.Network/networkInterfaces/{name}-nic"


def attached(inventory: Inventory, name: str, ip: str, guid: str = "g1") -> None:
    inventory.add_vm(VirtualMachine(vm_id(name), name, "rg", {}, (nic_id(name),)))
    config = IpConfiguration(nic_id(name), "ipconfig1", ip, f"{VNET}/subnets/default", True)
    inventory.add_nic(NetworkInterface(nic_id(name), f"{name}-nic", "rg", vm_id(name), (config,),
                                       resource_guid=guid))


def record(name: str, pool: str, guid: str = "g1") -> MemberRecord:
    return MemberRecord(pool, LB, address_name(nic_id(name), "ipconfig1", guid), nic_id(name), "ipconfig1",
                        vm_id(name), guid, "10.0.1.9")


def test_a_created_vm_touches_only_the_pool_its_address_falls_in():
    inventory = Inventory()
    attached(inventory, "web-1", "10.0.1.4")

    changes = owner_change(RULES, [Owner(KIND_VM, vm_id("web-1"))], OwnerState(inventory), [])

    assert set(changes.pools) == {WEB.lower()}
    work = changes.pools[WEB.lower()]
    assert [d.ip_address for d in work.wanted.values()] == ["10.0.1.4"]
    assert work.confirmed == {}
    assert changes.pools_by_owner[vm_id("web-1").lower()] == {WEB.lower()}


def test_a_deleted_vm_reaches_the_pools_the_index_names_and_its_removal_is_confirmed():
    gone = OwnerState(Inventory(), gone=frozenset({vm_id("web-1").lower(), nic_id("web-1").lower()}))

    changes = owner_change(RULES, [Owner(KIND_VM, vm_id("web-1"))], gone, [record("web-1", OTHER)])

    assert set(changes.pools) == {OTHER.lower()}
    assert list(changes.pools[OTHER.lower()].confirmed.values()) == [CONFIRM_NIC_DELETED]
    assert changes.pools_by_owner[vm_id("web-1").lower()] == {OTHER.lower()}


def test_a_detached_or_recreated_nic_confirms_its_old_entries_but_a_list_read_absence_does_not():
    inventory = Inventory()
    inventory.add_nic(NetworkInterface(nic_id("web-2"), "web-2-nic", "rg", None, (
        IpConfiguration(nic_id("web-2"), "ipconfig1", "10.0.1.5", f"{VNET}/subnets/default", True),)))
    attached(inventory, "web-3", "10.0.1.6", guid="g2")  # re-created: another resourceGuid
    records = [record("web-2", WEB), record("web-3", WEB), record("web-4", WEB)]
    owners = [Owner(KIND_NIC, nic_id(n)) for n in ("web-2", "web-3", "web-4")]

    changes = owner_change(RULES, owners, OwnerState(inventory, direct=False), records)

    confirmed = changes.pools[WEB.lower()].confirmed
    assert confirmed[records[0].name.lower()] == CONFIRM_NIC_DETACHED
    assert confirmed[records[1].name.lower()] == CONFIRM_NIC_RECREATED
    assert records[2].name.lower() not in confirmed  # missing from a list may only be out of sight


def test_many_owners_are_mapped_to_their_pools_one_by_one():
    inventory = Inventory()
    owners = []
    for i in range(300):
        attached(inventory, f"web-{i}", f"10.0.{1 + i % 2}.{i // 2 + 1}")
        owners.append(Owner(KIND_VM, vm_id(f"web-{i}")))

    changes = owner_change(RULES, owners, OwnerState(inventory), [])

    for i in range(300):
        assert changes.pools_by_owner[vm_id(f"web-{i}").lower()] == {(WEB if i % 2 == 0 else OTHER).lower()}
