"""Plain data the decision logic works on. No SDK types here: `inventory` and
`pool_writer` translate between these and the azure-mgmt models."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from shared.core.ids import id_key, vnet_of_subnet
from shared.core.naming import legacy_address_name

ADMIN_NONE = "None"
ADMIN_UP = "Up"
ADMIN_DOWN = "Down"

# Backend pool properties.syncMode / provisioningState values (REST 2024-05-01 and later).
SYNC_MODE_AUTOMATIC = "Automatic"  # Azure fills the pool from NIC ipconfigs and refuses address edits
SYNC_MODE_MANUAL = "Manual"
PROVISIONING_FAILED = "Failed"  # a failed operation left it so; Azure refuses dependent writes until a re-PUT


def normal_ip(text: str | None) -> str | None:
    """Canonical text of an IP so `fd00::1` and `fd00:0::1` compare equal (other text lower-cased)."""
    if not text:
        return None
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text.lower()


@dataclass(frozen=True, slots=True)
class IpConfiguration:
    """One ipConfiguration of a NIC."""

    nic_id: str
    name: str
    private_ip: str | None
    subnet_id: str | None
    primary: bool

    @property
    def vnet_id(self) -> str | None:
        return vnet_of_subnet(self.subnet_id) if self.subnet_id else None


@dataclass(frozen=True, slots=True)
class NetworkInterface:
    id: str
    name: str
    resource_group: str
    vm_id: str | None  # the `virtualMachine` back-reference; None when detached
    ip_configurations: tuple[IpConfiguration, ...]
    primary: bool = True  # primary NIC of its VM
    owner_kind: str = "vm"  # vm | privateEndpoint | privateLinkService | none
    tags: Mapping[str, str] = field(default_factory=dict)
    resource_guid: str | None = None  # properties.resourceGuid: tells a re-created NIC from the old one


@dataclass(frozen=True, slots=True)
class VirtualMachine:
    id: str
    name: str
    resource_group: str
    tags: Mapping[str, str]
    nic_ids: tuple[str, ...]
    # the scale set of an instance: a Uniform instance (its tags are the set's) or a Flexible set's VM
    scale_set_id: str | None = None

    def uses_nic(self, nic_id: str) -> bool:
        return any(id_key(own) == id_key(nic_id) for own in self.nic_ids)


@dataclass(slots=True)
class Inventory:
    """What exists: VMs and NICs keyed by `id_key(id)`. A subscription's list read also says which scale sets
    it listed, with the capacity each says it has, and those whose instance or NIC list was refused (403):
    their instances are neither here nor gone."""

    vms: dict[str, VirtualMachine] = field(default_factory=dict)
    nics: dict[str, NetworkInterface] = field(default_factory=dict)
    set_capacity: dict[str, int | None] = field(default_factory=dict)  # scale set key -> its sku.capacity
    unreadable_sets: set[str] = field(default_factory=set)

    def add_vm(self, vm: VirtualMachine) -> None:
        self.vms[id_key(vm.id)] = vm

    def add_nic(self, nic: NetworkInterface) -> None:
        self.nics[id_key(nic.id)] = nic

    def attached(self) -> Iterator[tuple[VirtualMachine, NetworkInterface]]:
        """NICs attached to a VM that exists, with that VM."""
        for nic in self.nics.values():
            if nic.vm_id is None:
                continue
            vm = self.vms.get(id_key(nic.vm_id))
            if vm is not None:
                yield vm, nic


@dataclass(frozen=True, slots=True)
class PoolAddress:
    """An entry of an IP-based pool's `loadBalancerBackendAddresses`."""

    name: str
    ip_address: str | None
    vnet_id: str | None
    subnet_id: str | None = None
    admin_state: str = ADMIN_NONE


@dataclass(frozen=True, slots=True)
class DesiredAddress:
    """An address the rules say belongs in a pool, with the owner it comes from."""

    name: str  # deterministic, see shared.core.naming
    ip_address: str
    vnet_id: str
    nic_id: str
    ipconfig_name: str
    vm_id: str
    subnet_id: str | None = None
    nic_guid: str | None = None  # the NIC's resourceGuid, part of `name` when known
    scale_set_id: str | None = None  # the VM's scale set, if it is an instance of one

    @property
    def legacy_name(self) -> str:
        """The name this ipconfig had before the guid was part of the identity (equals `name` without one)."""
        return legacy_address_name(self.nic_id, self.ipconfig_name)

    def as_pool_address(self, admin_state: str = ADMIN_NONE) -> PoolAddress:
        return PoolAddress(self.name, self.ip_address, self.vnet_id, None, admin_state)


@dataclass(frozen=True, slots=True)
class PoolSnapshot:
    """A backend pool as read from Azure, with the facts needed to decide on it."""

    id: str
    etag: str | None
    addresses: tuple[PoolAddress, ...]
    nic_member_count: int = 0  # NIC-based members (backendIPConfigurations)
    vnet_id: str | None = None  # pool-level virtualNetwork, when set
    lb_sku: str | None = None
    provisioning_state: str | None = None  # Succeeded | Updating | Deleting | Failed
    sync_mode: str | None = None  # Automatic | Manual | None (unspecified)

    @property
    def sync_mode_automatic(self) -> bool:
        return (self.sync_mode or "").lower() == SYNC_MODE_AUTOMATIC.lower()

    @property
    def provisioning_failed(self) -> bool:
        return (self.provisioning_state or "").lower() == PROVISIONING_FAILED.lower()
