"""Reading scale sets: one set's instances and their NICs by paged lists (never a GET per instance).

Uniform: the set (GET), Compute's instance list, the Network RP's scale-set NIC list. Flexible: the set,
its instance list (ordinary VMs) and the NIC lists of the set's resource group and of any other resource
group an instance's NIC lives in (kept: NICs of instances). A 403 on any of them makes the set
unreadable (`ScaleSetRead.refused`), never gone: a principal with roles on some resource groups still
receives the events of the whole subscription.
"""

from __future__ import annotations

from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import azure.mgmt.compute.operations._operations as compute_ops  # the SDK's request builders
import azure.mgmt.network.operations._operations as network_ops
from azure.core.exceptions import HttpResponseError

from shared.azure.arm_pages import get_json, list_json, read_refused
from shared.azure.clients import AzureClients
from shared.azure.retry import RetrySettings, RetryStats, call_with_retry
from shared.core.arm_json import nic_from_json
from shared.core.ids import ResourceId, id_key
from shared.core.models import Inventory
from shared.core.scale_sets import (
    UNIFORM,
    ScaleSetProfile,
    ScaleSetRead,
    capacity_of,
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
        """The set as its own lists show it now (a set that is gone reads as `exists=False`, one poolsync may
        not read as `unreadable`; other errors past the retries raise)."""
        rid = ResourceId.parse(scale_set_id)
        try:
            scale_set = self._get(rid)
            if scale_set is None:
                return ScaleSetRead(scale_set_id, exists=False)
            instances = self._instances(rid)
            if mode_of(scale_set) == UNIFORM:
                return read_from_json(scale_set_id, scale_set, instances, self._uniform_nics(rid))
            groups = nic_groups(scale_set_id, instances)
            nics = [nic for group in groups for nic in self._group_nics(group)]
        except HttpResponseError as error:
            if not read_refused(error, _what(scale_set_id), scale_set_id):
                raise
            return ScaleSetRead.refused(scale_set_id)
        return read_from_json(scale_set_id, scale_set, instances, nics, groups)

    def refused_among(self, scale_set_ids: Iterable[str]) -> set[str]:
        """Id keys of the sets (not in a list read: gone or hidden from this principal) whose GET answers
        403: a list leaves out what poolsync may not read, so their absence proves nothing."""
        def refused(scale_set_id: str) -> bool:
            try:
                self._get(ResourceId.parse(scale_set_id))
            except HttpResponseError as error:
                if not read_refused(error, _what(scale_set_id), scale_set_id):
                    raise
                return True
            return False
        ids = list(dict.fromkeys(scale_set_ids))
        with ThreadPoolExecutor(max_workers=max(1, min(_PARALLEL_SETS, len(ids)))) as executor:
            return {id_key(i) for i, no in zip(ids, executor.map(refused, ids), strict=True) if no}

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
        for scale_set in self.list_all(subscription_id):  # lists only the sets poolsync may read
            inventory.set_capacity[id_key(scale_set["id"])] = capacity_of(scale_set)
            if mode_of(scale_set) != UNIFORM:
                continue
            rid = ResourceId.parse(scale_set["id"])
            try:
                instances, nics = self._instances(rid), self._uniform_nics(rid)
            except HttpResponseError as error:
                if not read_refused(error, _what(scale_set["id"]), scale_set["id"]):
                    raise
                inventory.unreadable_sets.add(id_key(scale_set["id"]))
                continue
            for instance in instances:
                inventory.add_vm(uniform_instance(scale_set, instance))
            for nic in nics:
                inventory.add_nic(nic_from_json(nic))


def _what(scale_set_id: str) -> str:
    return f"read of scale set {ResourceId.parse(scale_set_id).name}"
