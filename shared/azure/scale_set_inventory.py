"""Reading scale sets: one set's instances and their NICs by paged lists (never a GET per instance).

Uniform: the set (GET), Compute's instance list, the Network RP's scale-set NIC list. Flexible: the set,
its instance list (ordinary VMs) and the NIC lists of the set's resource group and of any other resource
group an instance's NIC lives in (kept: NICs of instances).
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.mgmt.compute.operations._operations as compute_ops  # the SDK's request builders
import azure.mgmt.network.operations._operations as network_ops

from shared.azure.arm_pages import get_json, list_json
from shared.azure.clients import AzureClients
from shared.azure.retry import RetrySettings, RetryStats, call_with_retry
from shared.core.arm_json import nic_from_json
from shared.core.ids import ResourceId
from shared.core.models import Inventory
from shared.core.scale_sets import (
    UNIFORM,
    ScaleSetProfile,
    ScaleSetRead,
    mode_of,
    nic_groups,
    profile_from_json,
    read_from_json,
    uniform_instance,
)

_PARALLEL_SETS = 4
_SET_NICS = network_ops.build_network_interfaces_list_virtual_machine_scale_set_network_interfaces_request


class ScaleSetReader:
    def __init__(self, clients: AzureClients, retry: RetrySettings | None = None,
                 stats: RetryStats | None = None) -> None:
        self.clients = clients
        self.retry = retry or RetrySettings()
        self.stats = stats

    def _read(self, client: Any, request: Any, operation: str, *, many: bool = True) -> Any:
        read = list_json if many else get_json
        return call_with_retry(lambda: read(client, request), settings=self.retry, stats=self.stats,
                               operation=operation)

    def _get(self, rid: ResourceId) -> dict[str, Any] | None:
        get_set = compute_ops.build_virtual_machine_scale_sets_get_request(
            vm_scale_set_name=rid.name, resource_group_name=rid.resource_group,
            subscription_id=rid.subscription)
        found: dict[str, Any] | None = self._read(self.clients.compute(rid.subscription), get_set,
                                                  f"GET scale set {rid.name}", many=False)
        return found

    def profile(self, scale_set_id: str) -> ScaleSetProfile | None:
        """The pools a scale set's network profile references (None: no such set)."""
        scale_set = self._get(ResourceId.parse(scale_set_id))
        return profile_from_json(scale_set) if scale_set is not None else None

    def read(self, scale_set_id: str) -> ScaleSetRead:
        """The set as its own lists show it now (a set that is gone reads as `exists=False`)."""
        rid = ResourceId.parse(scale_set_id)
        scale_set = self._get(rid)
        if scale_set is None:
            return ScaleSetRead(scale_set_id, exists=False)
        mode = mode_of(scale_set)
        instances = self._instances(rid)
        if mode == UNIFORM:
            return read_from_json(scale_set_id, scale_set, instances, self._uniform_nics(rid))
        groups = nic_groups(scale_set_id, instances)
        nics = [nic for group in groups for nic in self._group_nics(group)]
        return read_from_json(scale_set_id, scale_set, instances, nics, groups)

    def _instances(self, rid: ResourceId) -> list[Any]:
        list_instances = compute_ops.build_virtual_machine_scale_set_vms_list_request(
            virtual_machine_scale_set_name=rid.name, resource_group_name=rid.resource_group,
            subscription_id=rid.subscription)
        found: list[Any] = self._read(self.clients.compute(rid.subscription), list_instances,
                                      f"list instances of {rid.name}")
        return found

    def _uniform_nics(self, rid: ResourceId) -> list[Any]:
        list_nics = _SET_NICS(virtual_machine_scale_set_name=rid.name, resource_group_name=rid.resource_group,
                              subscription_id=rid.subscription)
        found: list[Any] = self._read(self.clients.network(rid.subscription), list_nics,
                                      f"list NICs of {rid.name}")
        return found

    def _group_nics(self, group: str) -> list[Any]:
        """The NICs of one resource group (`group_key` form)."""
        _, subscription, _, resource_group = group.strip("/").split("/")
        list_nics = network_ops.build_network_interfaces_list_request(resource_group_name=resource_group,
                                                                     subscription_id=subscription)
        found: list[Any] = self._read(self.clients.network(subscription), list_nics,
                                      f"list NICs of {resource_group}")
        return found

    def reads(self, scale_set_ids: Iterable[str]) -> list[ScaleSetRead]:
        ids = list(dict.fromkeys(scale_set_ids))
        if len(ids) <= 1:
            return [self.read(i) for i in ids]
        with ThreadPoolExecutor(max_workers=min(_PARALLEL_SETS, len(ids))) as executor:
            return list(executor.map(self.read, ids))

    def list_all(self, subscription_id: str) -> list[dict[str, Any]]:
        """Every scale set of a subscription, as JSON."""
        compute = self.clients.compute(subscription_id)
        list_sets = compute_ops.build_virtual_machine_scale_sets_list_all_request(
            subscription_id=subscription_id)
        found: list[dict[str, Any]] = self._read(compute, list_sets, f"list scale sets of {subscription_id}")
        return found

    def add_uniform_instances(self, inventory: Inventory, subscription_id: str) -> None:
        """Every Uniform instance of a subscription and its NICs, into `inventory` (the subscription's VM and
        NIC lists have none of them; a Flexible set's VMs and NICs are already there)."""
        for scale_set in self.list_all(subscription_id):
            if mode_of(scale_set) != UNIFORM:
                continue
            rid = ResourceId.parse(scale_set["id"])
            for instance in self._instances(rid):
                inventory.add_vm(uniform_instance(scale_set, instance))
            for nic in self._uniform_nics(rid):
                inventory.add_nic(nic_from_json(nic))
