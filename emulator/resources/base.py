"""The state every resource kind shares, and the helpers they all use.

Resources are stored as ARM JSON (original id casing) in dicts keyed by the lower-cased id.
Read-only properties that Azure derives from other resources (a pool's `backendIPConfigurations`,
an address's `networkInterfaceIPConfiguration`, a NIC's `virtualMachine`) are computed when
rendering, from the indexes here, kept in step on every write by the kind that writes.
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

from emulator.errors import ArmError, bad_request, nested_not_found, resource_not_found
from emulator.ids import ResourceId, id_key, vnet_of_subnet

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_LOCATION = "westeurope"
SUCCEEDED = "Succeeded"
FAILED_STATE = "Failed"


def new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def ref_id(value: Any) -> str | None:
    """The id of a `{"id": ...}` sub-resource reference, if any."""
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def props_of(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties")
    if props is None:
        return {}
    if not isinstance(props, dict):
        raise bad_request("InvalidRequestFormat", "Cannot parse the request: 'properties' must be an object.")
    return props


def unique_names(children: list[dict[str, Any]], parent_id: str, collection: str) -> None:
    seen: set[str] = set()
    for child in children:
        name = str(child.get("name", "")).lower()
        if name in seen:
            raise bad_request(
                "DuplicateResourceName",
                f"Resource {parent_id} has two child resources with the same name ({child.get('name')}) "
                f"in collection {collection}.",
            )
        seen.add(name)


def missing(resource_id: str) -> ArmError:
    """The 404 ARM/NRP answers for a resource id that does not exist."""
    rid = ResourceId.parse(resource_id)
    if rid.child_type:
        return nested_not_found(str(rid))
    return resource_not_found(f"{rid.namespace}/{rid.type}", rid.name, rid.resource_group)


class WorldState:
    """The stores, the derived indexes and the lookups across kinds. All public methods of the
    kinds take `self.lock`, so HTTP threads and tests may call them freely."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        # `azure` profile: NIC-based members also appear in loadBalancerBackendAddresses, as NRP shows them
        self.echo_nic_members = False
        self.clear()

    def clear(self) -> None:
        with self.lock:
            self.subscriptions: dict[str, str] = {id_key(DEFAULT_SUBSCRIPTION): DEFAULT_SUBSCRIPTION}
            self.vnets: dict[str, dict[str, Any]] = {}
            self.nics: dict[str, dict[str, Any]] = {}
            self.vms: dict[str, dict[str, Any]] = {}
            self.lbs: dict[str, dict[str, Any]] = {}
            # (vnet key, ip) -> ipconfig id: who owns a private IP
            self._ip_owner: dict[tuple[str, str], str] = {}
            # subnet key -> IPs in use, and where dynamic allocation continues
            self._subnet_used: dict[str, set[str]] = {}
            self._subnet_hint: dict[str, int] = {}
            # pool key -> {ipconfig key: ipconfig id}: NIC-based members
            self._pool_members: dict[str, dict[str, str]] = {}
            # scale sets; a Uniform set's instances (set key -> {instance id: instance}) and their NICs
            # (kept apart from `nics`: they are in no subscription or resource-group NIC list)
            self.scale_sets: dict[str, dict[str, Any]] = {}
            self.ss_instances: dict[str, dict[str, dict[str, Any]]] = {}
            self.ss_nics: dict[str, dict[str, Any]] = {}
            self._next_instance: dict[str, int] = {}
            # a Flexible set's VMs, in creation order (set key -> {vm key: vm id})
            self._flex_members: dict[str, dict[str, str]] = {}
            self._failing_instances: dict[str, int] = {}  # set key -> instances still to fail

    def _vnet(self, vnet_id: str) -> dict[str, Any] | None:
        return self.vnets.get(id_key(vnet_id))

    def _subnet(self, subnet_id: str) -> dict[str, Any] | None:
        try:
            vnet = self._vnet(vnet_of_subnet(subnet_id))
        except ValueError:
            return None
        if vnet is None:
            return None
        wanted = subnet_id.rstrip("/").rsplit("/", 1)[-1].lower()
        for subnet in vnet["properties"].get("subnets", []):
            if subnet["name"].lower() == wanted:
                return subnet
        return None

    def _lb_and_pool(self, pool_id: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        rid = ResourceId.parse(pool_id)
        lb = self.lbs.get(rid.parent.key())
        if lb is None:
            return None, None
        for pool in lb["properties"].get("backendAddressPools", []):
            if pool["name"].lower() == (rid.child_name or "").lower():
                return lb, pool
        return lb, None

    def _location(self, body: dict[str, Any], old: dict[str, Any] | None) -> str:
        location = body.get("location") or (old or {}).get("location")
        if not location:
            raise bad_request("LocationRequired", "The location property is required for this definition.")
        return str(location)
