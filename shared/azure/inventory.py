"""Reading what exists in Azure: list-based for whole scopes, GET-based for one owner.

List calls page through the subscription (never one GET per VM); the owner
reader serves the Event Grid path, where one VM or NIC changed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.mgmt.compute.operations._operations as compute_operations  # the SDK's request builders
import azure.mgmt.network.operations._operations as network_operations
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

from shared.azure.arm_pages import list_json, read_refused
from shared.azure.clients import AzureClients
from shared.azure.retry import RetrySettings, RetryStats, call_with_retry
from shared.azure.scale_set_inventory import ScaleSetReader
from shared.core.arm_json import as_json, nic_from_json, vm_from_json
from shared.core.changes import OwnerState
from shared.core.ids import ResourceId, id_key
from shared.core.models import Inventory, VirtualMachine
from shared.core.scale_sets import UniformNicId, uniform_instance

log = logging.getLogger("poolsync.inventory")


class InventoryReader:
    def __init__(self, clients: AzureClients, retry: RetrySettings | None = None,
                 stats: RetryStats | None = None) -> None:
        self.clients = clients
        self.retry = retry or RetrySettings()
        self.stats = stats
        self.scale_sets = ScaleSetReader(clients, self.retry, stats)

    def _call(self, fn: Any, operation: str) -> Any:
        return call_with_retry(fn, settings=self.retry, stats=self.stats, operation=operation)

    def subscription(self, subscription_id: str) -> Inventory:
        """Every NIC and VM of a subscription, Uniform scale-set instances and their NICs included, by paged
        list calls (a failed page restarts the list).

        Pages are read as JSON through the SDK's pipeline (auth, TLS, the SDK's own api-version) without
        building SDK models: for 20,000 NICs and VMs that is several times faster, and the event path
        reads the subscription this way for every large burst."""
        network = self.clients.network(subscription_id)
        compute = self.clients.compute(subscription_id)
        inventory = Inventory()
        list_nics = network_operations.build_network_interfaces_list_all_request
        list_vms = compute_operations.build_virtual_machines_list_all_request
        with ThreadPoolExecutor(max_workers=1) as side:  # the two lists side by side
            listed_vms = side.submit(self._call, lambda: list_json(compute, list_vms(
                subscription_id=subscription_id)), f"list VMs of {subscription_id}")
            nics = self._call(lambda: list_json(network, list_nics(subscription_id=subscription_id)),
                              f"list NICs of {subscription_id}")
            vms = listed_vms.result()
        for nic in nics:
            inventory.add_nic(nic_from_json(nic))
        for vm in vms:
            inventory.add_vm(vm_from_json(vm))
        self.scale_sets.add_uniform_instances(inventory, subscription_id)
        return inventory

    def subscriptions(self, subscription_ids: Iterable[str]) -> Inventory:
        merged = Inventory()
        for subscription_id in sorted({s.lower() for s in subscription_ids}):
            part = self.subscription(subscription_id)
            merged.vms.update(part.vms)
            merged.nics.update(part.nics)
            merged.set_capacity.update(part.set_capacity)
            merged.unreadable_sets |= part.unreadable_sets
        return merged

    def _get_or_none(self, fn: Any, operation: str) -> dict[str, Any] | None:
        try:
            return as_json(self._call(fn, operation))
        except ResourceNotFoundError:
            return None

    def _get_owner(self, fn: Any, operation: str, resource_id: str,
                   refused: set[str]) -> dict[str, Any] | None:
        """GET one owner: its JSON, None for 404; a 403 puts it in `refused` (neither there nor gone: a
        principal scoped to some resource groups still gets events for the whole subscription)."""
        try:
            return self._get_or_none(fn, operation)
        except HttpResponseError as error:
            if not read_refused(error, operation, resource_id):
                raise
            refused.add(id_key(resource_id))
            return None

    def _add_nic(self, inventory: Inventory, nic_id: str, refused: set[str]) -> Any:
        uniform = UniformNicId.parse(nic_id)
        if uniform is not None:  # a Uniform instance's NIC: the Network RP's scale-set NIC GET
            network = self.clients.network(uniform.subscription)
            get_nic = network.network_interfaces.get_virtual_machine_scale_set_network_interface
            where = (uniform.resource_group, uniform.scale_set, uniform.instance, uniform.nic)
            nic = self._get_owner(lambda: get_nic(*where),
                                  f"GET NIC {uniform.nic} of {uniform.scale_set}/{uniform.instance}", nic_id,
                                  refused)
        else:
            rid = ResourceId.parse(nic_id)
            network = self.clients.network(rid.subscription)
            nic = self._get_owner(lambda: network.network_interfaces.get(rid.resource_group, rid.name),
                                  f"GET NIC {rid.name}", nic_id, refused)
        if nic is None:
            return None
        model = nic_from_json(nic)
        inventory.add_nic(model)
        return model

    def read_owners(self, vm_ids: Iterable[str] = (), nic_ids: Iterable[str] = ()) -> OwnerState:
        """These VMs and NICs by GETs of their own, with the NICs of the VMs and the VMs of the NICs; a 404
        lands in `gone`, a 403 in `unreadable`. Reads of one kind run in parallel (a few at a time)."""
        inventory = Inventory()
        gone: set[str] = set()
        refused: set[str] = set()
        vms = {id_key(v): v for v in vm_ids}
        self._read_all(vms.values(), self._vm_reader(inventory, refused), gone, refused)
        nics = {id_key(n): n for n in nic_ids}
        for vm in inventory.vms.values():
            nics.update({id_key(n): n for n in vm.nic_ids})
        self._read_all(nics.values(), self._nic_reader(inventory, refused), gone, refused)
        missing_vms = {id_key(n.vm_id): n.vm_id for n in inventory.nics.values()
                       if n.vm_id and id_key(n.vm_id) not in inventory.vms and id_key(n.vm_id) not in gone}
        self._read_all(missing_vms.values(), self._vm_reader(inventory, refused), gone, refused)
        return OwnerState(inventory, frozenset(gone), direct=True, unreadable=frozenset(refused))

    @staticmethod
    def owner_read_estimate(vm_ids: Iterable[str], nic_ids: Iterable[str]) -> int:
        """GETs `read_owners` will make at least: one per VM and its NIC, one per NIC and its VM."""
        return 2 * len({id_key(v) for v in vm_ids} | {id_key(n) for n in nic_ids})

    def _read_all(self, ids: Iterable[str], read: Callable[[str], bool], gone: set[str],
                  refused: set[str]) -> None:
        ids = list(ids)
        if not ids:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(ids))) as executor:
            for resource_id, found in zip(ids, executor.map(read, ids), strict=True):
                if not found and id_key(resource_id) not in refused:
                    gone.add(id_key(resource_id))

    def _vm_reader(self, inventory: Inventory, refused: set[str]) -> Callable[[str], bool]:
        def read(vm_id: str) -> bool:
            rid = ResourceId.parse(vm_id)
            compute = self.clients.compute(rid.subscription)
            if rid.child_type:  # a Uniform scale-set instance
                model = self._uniform_instance(rid, vm_id, refused)
            else:
                vm = self._get_owner(lambda: compute.virtual_machines.get(rid.resource_group, rid.name),
                                     f"GET VM {rid.name}", vm_id, refused)
                model = vm_from_json(vm) if vm is not None else None
            if model is not None:
                inventory.add_vm(model)
            return model is not None
        return read

    def _uniform_instance(self, rid: ResourceId, vm_id: str, refused: set[str]) -> VirtualMachine | None:
        """A Uniform instance by GET, with its set's tags and id as the set's own lists give them (the
        instance carries neither: read alone, rules on tags or scale sets would not select it)."""
        compute = self.clients.compute(rid.subscription)
        instance = rid.child_name or ""
        found = self._get_owner(lambda: compute.virtual_machine_scale_set_vms.get(
            rid.resource_group, rid.name, instance), f"GET instance {rid.name}/{instance}", vm_id, refused)
        if found is None:
            return None
        get_set = compute.virtual_machine_scale_sets.get
        scale_set = self._get_owner(lambda: get_set(rid.resource_group, rid.name),
                                    f"GET scale set {rid.name}", vm_id, refused)
        return uniform_instance(scale_set, found) if scale_set is not None else None

    def _nic_reader(self, inventory: Inventory, refused: set[str]) -> Callable[[str], bool]:
        return lambda nic_id: self._add_nic(inventory, nic_id, refused) is not None

    def virtual_network(self, vnet_id: str) -> dict[str, Any] | None:
        rid = ResourceId.parse(vnet_id)
        network = self.clients.network(rid.subscription)
        return self._get_or_none(lambda: network.virtual_networks.get(rid.resource_group, rid.name),
                                 f"GET VNet {rid.name}")

    def load_balancer(self, lb_id: str) -> dict[str, Any] | None:
        rid = ResourceId.parse(lb_id)
        network = self.clients.network(rid.subscription)
        return self._get_or_none(lambda: network.load_balancers.get(rid.resource_group, rid.name),
                                 f"GET LB {rid.name}")

    def load_balancers(self, subscription_id: str) -> list[dict[str, Any]]:
        network = self.clients.network(subscription_id)
        return self._call(lambda: [as_json(lb) for lb in network.load_balancers.list_all()],
                          f"list LBs of {subscription_id}")
