"""The emulated ARM world: every resource kind in one store under one lock.

Each kind's behaviour lives in its own module of `emulator.resources` (networks, load balancers,
interfaces, machines, scale sets); `World` combines them and adds what spans kinds: paged lists,
tags, etags, provisioning states and delete refusals by kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from emulator.ids import ResourceId, id_key
from emulator.resources.base import (
    DEFAULT_LOCATION,
    DEFAULT_SUBSCRIPTION,
    FAILED_STATE,
    SUCCEEDED,
    missing,
    new_etag,
)
from emulator.resources.load_balancers import LoadBalancers
from emulator.resources.networks import Networks
from emulator.resources.scale_sets import ScaleSets

__all__ = ["DEFAULT_LOCATION", "DEFAULT_SUBSCRIPTION", "FAILED_STATE", "SUCCEEDED", "World", "missing"]


class World(Networks, LoadBalancers, ScaleSets):
    def add_subscription(self, subscription_id: str) -> None:
        with self.lock:
            self.subscriptions[id_key(subscription_id)] = subscription_id

    def has_subscription(self, subscription_id: str) -> bool:
        return id_key(subscription_id) in self.subscriptions

    def list_page(
        self, kind: str, subscription: str, resource_group: str | None, after_key: str | None, limit: int
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a collection in stable key order; returns (items, key to continue after)."""
        store, render = self._collection(kind)
        prefix = f"/subscriptions/{subscription}/resourcegroups/".lower()
        if resource_group is not None:
            prefix += f"{resource_group.lower()}/"
        with self.lock:
            keys = sorted(
                key for key in store if key.startswith(prefix) and (after_key is None or key > after_key)
            )
            page = keys[:limit]
            more = len(keys) > limit
            return [render(store[key]) for key in page], (page[-1] if more else None)

    def _collection(self, kind: str) -> tuple[dict[str, dict[str, Any]], Callable[[Any], dict[str, Any]]]:
        return {
            "vnet": (self.vnets, self.render_vnet),
            "nic": (self.nics, self.render_nic),
            "vm": (self.vms, self.render_vm),
            "lb": (self.lbs, self.render_lb),
            "vmss": (self.scale_sets, self.render_scale_set),
        }[kind]

    def set_tags(self, kind: str, resource_id: str, tags: dict[str, str]) -> dict[str, str] | None:
        """Replace a top-level resource's tags (a write: new etag); None if it does not exist."""
        store, _ = self._collection(kind)
        with self.lock:
            resource = store.get(id_key(resource_id))
            if resource is None:
                return None
            resource["tags"] = dict(tags)
            resource["etag"] = new_etag()
            return dict(resource["tags"])

    def counts(self) -> dict[str, int]:
        with self.lock:
            pools = sum(len(lb["properties"].get("backendAddressPools", [])) for lb in self.lbs.values())
            return {
                "virtualNetworks": len(self.vnets),
                "networkInterfaces": len(self.nics),
                "virtualMachines": len(self.vms),
                "loadBalancers": len(self.lbs),
                "backendAddressPools": pools,
                "virtualMachineScaleSets": len(self.scale_sets),
                "scaleSetInstances": sum(len(i) for i in self.ss_instances.values())
                + sum(len(m) for m in self._flex_members.values()),
            }

    def _top_store(self, resource_type: str) -> dict[str, dict[str, Any]] | None:
        """Where top-level resources of a type ('loadBalancers', ...) are kept."""
        return {
            "virtualnetworks": self.vnets,
            "networkinterfaces": self.nics,
            "loadbalancers": self.lbs,
            "virtualmachines": self.vms,
            "virtualmachinescalesets": self.scale_sets,
        }.get(resource_type.lower())

    def _child(self, rid: ResourceId) -> dict[str, Any] | None:
        """The stored child a two-level id names: a pool, a subnet or a Uniform scale-set instance."""
        kind = rid.type.lower()
        if kind == "loadbalancers":
            return self._lb_and_pool(str(rid))[1]
        if kind == "virtualmachinescalesets":
            return self.ss_instances.get(rid.parent.key(), {}).get((rid.child_name or "").lower())
        return self._subnet(str(rid))

    def current_etag(self, resource_id: str) -> str | None:
        """Etag of any addressable resource (children report their parent's)."""
        with self.lock:
            rid = ResourceId.parse(resource_id)
            parent_key = rid.parent.key()
            store = self._top_store(rid.type)
            if store is None or parent_key not in store:
                return None
            if rid.child_type:
                child = self._child(rid)
                if child is None:
                    return None
                if "etag" in child:  # a scale-set instance has its own
                    return str(child["etag"])
            return store[parent_key].get("etag")

    def check_delete(self, kind: str, resource_id: str) -> None:
        """Raise the error Azure gives when this delete is refused; mutate nothing."""
        with self.lock:
            refuse: dict[str, Callable[[str], None]] = {
                "nic": self.refuse_nic_delete,
                "pool": self.refuse_pool_delete,
                "lb": self.refuse_lb_delete,
                "subnet": self.refuse_subnet_delete,
                "vnet": self.refuse_vnet_delete,
            }
            if kind in refuse:
                refuse[kind](resource_id)

    def set_provisioning_state(self, resource_id: str, state: str) -> bool:
        """Used by the LRO engine when an operation ends; False if the resource is gone."""
        with self.lock:
            rid = ResourceId.parse(resource_id)
            if rid.child_type:
                target = self._child(rid)
            else:
                store = self._top_store(rid.type) or {}
                target = store.get(rid.key())
            if target is None:
                return False
            target["properties"]["provisioningState"] = state
            return True

    def renew_etag(self, resource_id: str) -> None:
        """A new etag for the top-level resource (an operation completed: NRP changes it again)."""
        with self.lock:
            rid = ResourceId.parse(resource_id)
            store = self._top_store(rid.type)
            if store is not None and rid.parent.key() in store:
                store[rid.parent.key()]["etag"] = new_etag()
