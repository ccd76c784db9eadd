"""What an operator's tooling does to VMs in the (emulated) subscription, through the real SDK: create a
VM with its NIC, delete it, give its NIC another address; and how the pools look compared to the rules.

Used by the demo and the reliability suite; both act on the emulator exactly as Azure users would. Every
long-running write polls with `ArmSettings.lro_polling()`: the provider's Retry-After (Compute: 50 s on the
first poll of a create, 30 s of a delete) capped at POOLSYNC_LRO_POLL_CAP, never the SDK's 30 s default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from shared.app.runtime import Runtime
from shared.azure.clients import ArmSettings, compute_client, network_client
from shared.core.arm_json import as_json, pool_from_json
from shared.core.ids import ResourceId, id_key
from shared.core.models import PoolAddress
from shared.core.naming import is_managed_name

LOCATION = "westeurope"


@dataclass
class Fleet:
    settings: ArmSettings
    subscription: str
    resource_group: str
    location: str = LOCATION

    def __post_init__(self) -> None:
        self.compute: ComputeManagementClient = compute_client(self.settings, self.subscription)
        self.network: NetworkManagementClient = network_client(self.settings, self.subscription)

    def _id(self, provider_type: str, name: str) -> str:
        return (f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
                f"/providers/{provider_type}/{name}")

    def vm_id(self, name: str) -> str:
        return self._id("Microsoft.Compute/virtualMachines", name)

    def nic_name(self, vm_name: str) -> str:
        return f"{vm_name}-nic"

    def create_vm(self, name: str, subnet_id: str, tags: Mapping[str, str], ip: str | None = None) -> str:
        """A NIC in `subnet_id` (static `ip`, or dynamic) and a VM using it; both deleted together."""
        ipconfig: dict[str, Any] = {"subnet": {"id": subnet_id}, "primary": True,
                                    "privateIPAllocationMethod": "Static" if ip else "Dynamic"}
        if ip:
            ipconfig["privateIPAddress"] = ip
        nic_body: Any = {"location": self.location, "properties": {"ipConfigurations": [
            {"name": "ipconfig1", "properties": ipconfig}]}}
        nic = self.network.network_interfaces.begin_create_or_update(
            self.resource_group, self.nic_name(name), nic_body, polling=self.settings.lro_polling()).result()
        vm_body: Any = {"location": self.location, "tags": dict(tags), "properties": {
            "hardwareProfile": {"vmSize": "Standard_B1s"},
            "networkProfile": {"networkInterfaces": [
                {"id": nic.id, "properties": {"primary": True, "deleteOption": "Delete"}}]},
        }}
        self.compute.virtual_machines.begin_create_or_update(
            self.resource_group, name, vm_body, polling=self.settings.lro_polling()).result()
        return self.vm_id(name)

    def delete_vm(self, name: str) -> None:
        self.compute.virtual_machines.begin_delete(
            self.resource_group, name, polling=self.settings.lro_polling()).result()

    def scale(self, scale_set: str, capacity: int) -> None:
        """Set a scale set's capacity (a PATCH of sku.capacity, as autoscale does)."""
        self.compute.virtual_machine_scale_sets.begin_update(
            self.resource_group, scale_set, {"sku": {"capacity": capacity}},
            polling=self.settings.lro_polling()).result()

    def scale_set_instances(self, scale_set: str) -> list[str]:
        listed = self.compute.virtual_machine_scale_set_vms.list(self.resource_group, scale_set)
        return [vm.id for vm in listed]

    def readdress_vm(self, name: str, ip: str) -> None:
        """Give the VM's NIC a new static private IP in its current subnet."""
        nic = as_json(self.network.network_interfaces.get(self.resource_group, self.nic_name(name)))
        properties = nic["properties"]["ipConfigurations"][0]["properties"]
        properties["privateIPAllocationMethod"] = "Static"
        properties["privateIPAddress"] = ip
        body: Any = {"location": nic.get("location", self.location), "tags": nic.get("tags") or {},
                "properties": {"ipConfigurations": [
                    {"name": c["name"], "properties": {k: v for k, v in c["properties"].items()
                                                       if k in ("subnet", "primary", "privateIPAddress",
                                                                "privateIPAllocationMethod",
                                                                "loadBalancerBackendAddressPools")}}
                    for c in nic["properties"]["ipConfigurations"]]}}
        self.network.network_interfaces.begin_create_or_update(
            self.resource_group, self.nic_name(name), body, polling=self.settings.lro_polling()).result()

    def vm_ip(self, name: str) -> str | None:
        nic = self.network.network_interfaces.get(self.resource_group, self.nic_name(name))
        return nic.ip_configurations[0].private_ip_address if nic.ip_configurations else None

    def pool_addresses(self, pool_id: str) -> tuple[PoolAddress, ...]:
        rid = ResourceId.parse(pool_id)
        pool = self.network.load_balancer_backend_address_pools.get(rid.resource_group, rid.name,
                                                                     rid.child_name or "")
        return pool_from_json(as_json(pool)).addresses


@dataclass(frozen=True)
class PoolView:
    """One managed pool: what it holds (managed entries only) against what the rules want."""

    pool_id: str
    actual: Mapping[str, str | None]  # managed name -> IP
    expected: Mapping[str, str]
    unmanaged: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.pool_id.rsplit("/", 1)[-1]

    @property
    def matched(self) -> int:
        return sum(1 for name, ip in self.expected.items() if self.actual.get(name) == ip)

    @property
    def extra(self) -> int:
        return sum(1 for name in self.actual if name not in self.expected)

    @property
    def in_sync(self) -> bool:
        return dict(self.actual) == dict(self.expected)

    @property
    def progress(self) -> float:
        total = len(self.expected) + self.extra
        return 1.0 if total == 0 else self.matched / total


def pool_views(runtime: Runtime, fleet: Fleet) -> list[PoolView]:
    """Every managed pool as Azure holds it now, against the rules' answer for the inventory now."""
    desired = runtime.reconciler.desired(runtime.reconciler.read_inventory())
    views = []
    for pool_id in runtime.reconciler.managed_pool_ids():
        addresses = fleet.pool_addresses(pool_id)
        wanted = desired.get(id_key(pool_id), {})
        views.append(PoolView(
            pool_id,
            {a.name.lower(): a.ip_address for a in addresses if is_managed_name(a.name)},
            {name.lower(): want.ip_address for name, want in wanted.items()},
            tuple(a.name for a in addresses if not is_managed_name(a.name)),
        ))
    return views
