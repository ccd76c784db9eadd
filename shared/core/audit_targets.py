"""What an address's IP belongs to in its virtual network: a VM's NIC, a detached NIC, a private endpoint,
a load balancer frontend, an application gateway or container group subnet, or nothing."""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from shared.core.audit_model import AuditInputs, FrontendIp, SubnetFacts
from shared.core.ids import id_key, vnet_of_subnet
from shared.core.models import (
    IpConfiguration,
    NetworkInterface,
    normal_ip,
)
from shared.core.naming import address_name, legacy_address_name

# --- what an IP is -----------------------------------------------------------------------------------

VM_NIC = "vm"
DETACHED_NIC = "detached_nic"
PRIVATE_ENDPOINT = "private_endpoint"
PRIVATE_LINK_SERVICE = "private_link_service"
LB_FRONTEND = "load_balancer_frontend"
APPLICATION_GATEWAY = "application_gateway"
CONTAINER_GROUP = "container_group"
NOTHING = "nothing"
NON_VM_KINDS = (PRIVATE_ENDPOINT, PRIVATE_LINK_SERVICE, LB_FRONTEND, APPLICATION_GATEWAY, CONTAINER_GROUP)
_NIC_OWNER_KINDS = {"privateEndpoint": PRIVATE_ENDPOINT, "privateLinkService": PRIVATE_LINK_SERVICE}
CONTAINER_DELEGATION = "microsoft.containerinstance/containergroups"


@dataclass(frozen=True, slots=True)
class Target:
    """What an address's IP belongs to in its virtual network."""

    kind: str
    nic: NetworkInterface | None = None
    ipconfig: IpConfiguration | None = None
    detail: str | None = None  # the id of the non-VM owner, when known

    def evidence(self) -> dict[str, Any]:
        out: dict[str, Any] = {"target": self.kind}
        if self.nic is not None and self.ipconfig is not None:
            out["nic"] = self.nic.id
            out["ipConfiguration"] = self.ipconfig.name
            if self.nic.vm_id:
                out["vm"] = self.nic.vm_id
        if self.detail:
            out["owner"] = self.detail
        return out


class Resolver:
    """Indexes of the inventory and LB/VNet facts, built once per audit."""

    def __init__(self, inputs: AuditInputs) -> None:
        inventory = inputs.inventory
        self.by_ip: dict[tuple[str, str], tuple[NetworkInterface, IpConfiguration]] = {}
        self.by_name: dict[str, tuple[NetworkInterface, IpConfiguration]] = {}
        vnet_keys: dict[str, str] = {}
        for nic in inventory.nics.values():
            for ipc in nic.ip_configurations:
                # both the current name and the legacy (guid-less) one an older entry may carry
                self.by_name[address_name(nic.id, ipc.name, nic.resource_guid).lower()] = (nic, ipc)
                self.by_name.setdefault(legacy_address_name(nic.id, ipc.name).lower(), (nic, ipc))
                ip = normal_ip(ipc.private_ip)
                if ip and ipc.subnet_id:
                    vnet = vnet_keys.get(ipc.subnet_id)
                    if vnet is None:
                        vnet = vnet_keys[ipc.subnet_id] = id_key(vnet_of_subnet(ipc.subnet_id))
                    self.by_ip[(vnet, ip)] = (nic, ipc)
        self.vms = inventory.vms
        self.frontends: dict[tuple[str, str], FrontendIp] = {}
        for lb in inputs.load_balancers:
            for fe in lb.frontends:
                ip = normal_ip(fe.private_ip)
                if fe.vnet_id and ip:
                    self.frontends[(id_key(fe.vnet_id), ip)] = fe
        self.subnets: dict[str, list[tuple[Any, SubnetFacts]]] = defaultdict(list)
        for vnet_key, facts in inputs.vnets.items():
            for subnet in facts.subnets:
                if subnet.application_gateway or subnet.delegations:
                    for prefix in subnet.prefixes:
                        network = ipaddress.ip_network(prefix, strict=False)
                        self.subnets[id_key(vnet_key)].append((network, subnet))

    def resolve(self, vnet_id: str | None, ip_text: str | None) -> Target:
        ip = normal_ip(ip_text)
        if not vnet_id or not ip:
            return Target(NOTHING)
        vnet = id_key(vnet_id)
        held = self.by_ip.get((vnet, ip))
        if held is not None:
            nic, ipc = held
            kind = _NIC_OWNER_KINDS.get(nic.owner_kind)
            if kind is not None:
                return Target(kind, nic, ipc)
            attached = nic.vm_id is not None and id_key(nic.vm_id) in self.vms
            return Target(VM_NIC if attached else DETACHED_NIC, nic, ipc)
        frontend = self.frontends.get((vnet, ip))
        if frontend is not None:
            return Target(LB_FRONTEND, detail=f"{frontend.lb_id}/frontendIPConfigurations/{frontend.name}")
        special = self.special_subnet(vnet, ip)
        if special is not None:
            return special
        return Target(NOTHING)

    def special_subnet(self, vnet: str, ip: str) -> Target | None:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return None
        for network, subnet in self.subnets.get(vnet, ()):
            if address.version == network.version and address in network:
                if subnet.application_gateway:
                    return Target(APPLICATION_GATEWAY, detail=subnet.id)
                if any(d.lower() == CONTAINER_DELEGATION for d in subnet.delegations):
                    return Target(CONTAINER_GROUP, detail=subnet.id)
        return None

    def named_owner(self, name: str) -> tuple[NetworkInterface, IpConfiguration] | None:
        """The NIC ipconfig a poolsync name was derived from, if it still exists."""
        return self.by_name.get(name.lower())


