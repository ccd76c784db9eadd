"""Builders for the pure-logic unit tests: ARM ids, rule documents, inventories, pools."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.core.models import (
    Inventory,
    IpConfiguration,
    NetworkInterface,
    PoolAddress,
    PoolSnapshot,
    VirtualMachine,
)
from shared.core.rules import RuleSet, parse_rules

SUB = "11111111-2222-3333-4444-555555555555"
OTHER_SUB = "99999999-8888-7777-6666-555555555555"


def net_id(kind_and_name: str, rg: str = "rg-net", sub: str = SUB) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Network/{kind_and_name}"


def vnet_id(name: str = "vnet", sub: str = SUB) -> str:
    return net_id(f"virtualNetworks/{name}", sub=sub)


def subnet_id(vnet: str = "vnet", subnet: str = "default", sub: str = SUB) -> str:
    return f"{vnet_id(vnet, sub)}/subnets/{subnet}"


def pool_id(pool: str = "web", lb: str = "lb", sub: str = SUB) -> str:
    return net_id(f"loadBalancers/{lb}/backendAddressPools/{pool}", sub=sub)


def nic_id(name: str, rg: str = "rg-app") -> str:
    return net_id(f"networkInterfaces/{name}", rg=rg)


def vm_id(name: str, rg: str = "rg-app") -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/{name}"


def rule_doc(
    name: str = "web",
    pool: str | None = None,
    vnet: str | None = None,
    cidrs: Sequence[str] = ("10.0.1.0/24",),
    **extra: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": name,
        "pool": pool or pool_id(),
        "virtualNetwork": vnet or vnet_id(),
        "cidrs": list(cidrs),
    }
    doc.update(extra)
    return doc


def rules_document(*rules: Mapping[str, Any]) -> dict[str, Any]:
    return {"version": 1, "rules": [dict(rule) for rule in rules]}


def ruleset(*rules: Mapping[str, Any]) -> RuleSet:
    return parse_rules(rules_document(*rules), "test")


IpSpec = tuple[str, str | None, bool]  # ipconfig name, private IP, primary ipconfig


def add_vm(
    inventory: Inventory,
    name: str,
    *,
    rg: str = "rg-app",
    tags: Mapping[str, str] | None = None,
    nics: Iterable[tuple[str, Sequence[IpSpec]]] | None = None,
    ip: str | None = None,
    vnet: str = "vnet",
    owner_kind: str = "vm",
) -> VirtualMachine:
    """A VM with NICs; the first NIC is primary. `ip=` is a shortcut for one NIC with one ipconfig."""
    if nics is None:
        nics = [(f"{name}-nic", [("ipconfig1", ip, True)])]
    vm = VirtualMachine(vm_id(name, rg), name, rg, dict(tags or {}), ())
    nic_ids = []
    for position, (nic_name, ipconfigs) in enumerate(nics):
        nid = nic_id(nic_name, rg)
        nic_ids.append(nid)
        inventory.add_nic(
            NetworkInterface(
                id=nid,
                name=nic_name,
                resource_group=rg,
                vm_id=vm.id,
                ip_configurations=tuple(
                    IpConfiguration(nid, ipc_name, address, subnet_id(vnet), primary)
                    for ipc_name, address, primary in ipconfigs
                ),
                primary=position == 0,
                owner_kind=owner_kind,
            )
        )
    vm = VirtualMachine(vm.id, name, rg, vm.tags, tuple(nic_ids))
    inventory.add_vm(vm)
    return vm


def snapshot(*addresses: PoolAddress, pool: str | None = None) -> PoolSnapshot:
    return PoolSnapshot(id=pool or pool_id(), etag='W/"1"', addresses=tuple(addresses), vnet_id=vnet_id())


def unmanaged(name: str, ip: str, admin_state: str = "None") -> PoolAddress:
    return PoolAddress(name, ip, vnet_id(), None, admin_state)
