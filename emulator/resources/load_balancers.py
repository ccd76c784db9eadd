"""Load balancers and their backend pools: what a pool holds and which addresses NRP accepts.

Pool address validation (Standard SKU, IP in the VNet and subnet, no NIC/IP mix, duplicates)
lives here. Error codes: where the public record (REST spec, SDK, issue threads) shows the code
Azure uses, it is used; otherwise the code is descriptive and listed in docs/emulator.md. The
`azure` profile's extra pool rules are in `emulator.pool_rules`.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from emulator import ipam
from emulator.errors import ArmError, bad_request, invalid_reference, parent_not_found
from emulator.ids import ResourceId, id_key, vnet_of_subnet
from emulator.resources.base import (
    FAILED_STATE,
    SUCCEEDED,
    WorldState,
    new_etag,
    props_of,
    ref_id,
    unique_names,
)

LB_TYPE = "Microsoft.Network/loadBalancers"
POOL_TYPE = "Microsoft.Network/loadBalancers/backendAddressPools"
LB_CHILD_TYPES = {
    "frontendIPConfigurations": "Microsoft.Network/loadBalancers/frontendIPConfigurations",
    "loadBalancingRules": "Microsoft.Network/loadBalancers/loadBalancingRules",
    "inboundNatRules": "Microsoft.Network/loadBalancers/inboundNatRules",
    "probes": "Microsoft.Network/loadBalancers/probes",
    "outboundRules": "Microsoft.Network/loadBalancers/outboundRules",
}
ADMIN_STATES = ("None", "Up", "Down")


class LoadBalancers(WorldState):
    def render_pool(self, lb: dict[str, Any], pool: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(pool)
        out["etag"] = lb["etag"]  # NRP children carry their parent's etag
        props = out.setdefault("properties", {})
        members = self._pool_members.get(id_key(pool["id"]), {})
        if members:
            props["backendIPConfigurations"] = [{"id": ipc} for ipc in sorted(members.values())]
            if self.echo_nic_members:
                props.setdefault("loadBalancerBackendAddresses", []).extend(
                    nic_member_entry(ipc) for ipc in sorted(members.values())
                )
        for address in props.get("loadBalancerBackendAddresses", []):
            aprops = address.get("properties", {})
            vnet_id = ref_id(aprops.get("virtualNetwork")) or ref_id(props.get("virtualNetwork"))
            if not vnet_id and ref_id(aprops.get("subnet")):
                vnet_id = vnet_of_subnet(ref_id(aprops.get("subnet")) or "")
            owner = self._ip_owner.get((id_key(vnet_id), aprops.get("ipAddress"))) if vnet_id else None
            if owner:
                aprops["networkInterfaceIPConfiguration"] = {"id": owner}
        rules = [
            {"id": rule["id"]}
            for rule in lb["properties"].get("loadBalancingRules", [])
            if id_key(ref_id(rule.get("properties", {}).get("backendAddressPool")) or "")
            == id_key(pool["id"])
        ]
        if rules:
            props["loadBalancingRules"] = rules
        return out

    def render_lb(self, lb: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(lb)
        props = out["properties"]
        props["backendAddressPools"] = [
            self.render_pool(lb, pool) for pool in lb["properties"].get("backendAddressPools", [])
        ]
        for kind in LB_CHILD_TYPES:
            for child in props.get(kind, []):
                child["etag"] = lb["etag"]
        return out

    def get_lb(self, lb_id: str) -> dict[str, Any] | None:
        with self.lock:
            lb = self.lbs.get(id_key(lb_id))
            return self.render_lb(lb) if lb else None

    def get_pool(self, pool_id: str) -> dict[str, Any] | None:
        with self.lock:
            lb, pool = self._lb_and_pool(pool_id)
            return self.render_pool(lb, pool) if lb and pool else None

    def list_pools(self, lb_id: str) -> list[dict[str, Any]] | None:
        with self.lock:
            lb = self.lbs.get(id_key(lb_id))
            if lb is None:
                return None
            return [self.render_pool(lb, pool) for pool in lb["properties"].get("backendAddressPools", [])]

    def put_lb(self, lb_id: str, body: dict[str, Any], state: str = SUCCEEDED) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(lb_id)
        props = props_of(body)
        sku = body.get("sku") or {"name": "Basic", "tier": "Regional"}
        if sku.get("name") not in ("Basic", "Standard", "Gateway"):
            raise bad_request("InvalidRequestFormat", f"Load balancer sku {sku.get('name')!r} is not valid.")
        sku = {"name": sku["name"], "tier": sku.get("tier") or "Regional"}
        with self.lock:
            old = self.lbs.get(rid.key())
            if old is not None and old["sku"]["name"] != sku["name"]:
                raise bad_request(
                    "InvalidRequestFormat",
                    f"Cannot change the sku of load balancer {rid} "
                    f"from {old['sku']['name']} to {sku['name']}.",
                )
            lb_props: dict[str, Any] = {
                "provisioningState": state,
                "resourceGuid": (old or {}).get("properties", {}).get("resourceGuid") or str(uuid.uuid4()),
            }
            for kind, child_type in LB_CHILD_TYPES.items():
                children = [self._lb_child(str(rid), kind, child_type, c) for c in props.get(kind) or []]
                unique_names(children, str(rid), kind)
                lb_props[kind] = children
            old_pools = {
                p["name"].lower(): p for p in (old or {}).get("properties", {}).get("backendAddressPools", [])
            }
            pools = []
            for raw in props.get("backendAddressPools") or []:
                pool = self._lb_child(str(rid), "backendAddressPools", POOL_TYPE, raw)
                previous = old_pools.get(pool["name"].lower())
                # Standard LBs ignore addresses sent through the LB endpoint: the pool endpoint owns them.
                addresses = previous["properties"].get("loadBalancerBackendAddresses", []) if previous else []
                pool["properties"] = {
                    **{k: v for k, v in pool["properties"].items() if k != "loadBalancerBackendAddresses"},
                    "loadBalancerBackendAddresses": addresses,
                    "provisioningState": SUCCEEDED,
                }
                pools.append(pool)
            unique_names(pools, str(rid), "backendAddressPools")
            kept = {p["name"].lower() for p in pools}
            for name, gone in old_pools.items():
                if name not in kept:
                    self._refuse_pool_in_use(gone)
            lb_props["backendAddressPools"] = pools
            lb = {
                "id": str(rid),
                "name": rid.name,
                "type": LB_TYPE,
                "location": self._location(body, old),
                "tags": body.get("tags") or {},
                "sku": sku,
                "etag": new_etag(),
                "properties": lb_props,
            }
            self.lbs[rid.key()] = lb
            return self.render_lb(lb), old is None

    def _lb_child(self, lb_id: str, kind: str, child_type: str, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise bad_request(
                "InvalidRequestFormat", f"Cannot parse the request: every {kind} entry needs a name."
            )
        props = copy.deepcopy(props_of(raw))
        props["provisioningState"] = SUCCEEDED
        return {
            "id": f"{lb_id}/{kind}/{raw['name']}",
            "name": raw["name"],
            "type": child_type,
            "properties": props,
        }

    def _refuse_pool_in_use(self, pool: dict[str, Any]) -> None:
        if self._pool_members.get(id_key(pool["id"])):
            raise bad_request(
                "InUseBackendAddressPoolCannotBeDeleted",
                f"Backend address pool {pool['id']} is in use by network interface IP configurations "
                "and cannot be deleted.",
            )

    def delete_lb(self, lb_id: str) -> bool:
        with self.lock:
            lb = self.lbs.get(id_key(lb_id))
            if lb is None:
                return False
            for pool in lb["properties"].get("backendAddressPools", []):
                self._refuse_pool_in_use(pool)
            del self.lbs[id_key(lb_id)]
            return True

    def put_pool(
        self, pool_id: str, body: dict[str, Any], state: str = SUCCEEDED
    ) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(pool_id)
        props = props_of(body)
        with self.lock:
            lb = self.lbs.get(rid.parent.key())
            if lb is None:
                raise parent_not_found(rid.name)
            _, old = self._lb_and_pool(pool_id)
            name = old["name"] if old else rid.child_name
            real_id = f"{lb['id']}/backendAddressPools/{name}"
            addresses = self._pool_addresses(
                lb, real_id, props, nic_members=len(self._pool_members.get(id_key(real_id), {}))
            )
            pool_props = {
                k: copy.deepcopy(v)
                for k, v in props.items()
                if k not in ("backendIPConfigurations", "loadBalancingRules", "provisioningState")
            }
            pool_props["loadBalancerBackendAddresses"] = addresses
            pool_props["provisioningState"] = state
            pool = {"id": real_id, "name": name, "type": POOL_TYPE, "properties": pool_props}
            pools = lb["properties"].setdefault("backendAddressPools", [])
            if old is not None:
                pools[pools.index(old)] = pool
            else:
                pools.append(pool)
            lb["etag"] = new_etag()
            return self.render_pool(lb, pool), old is None

    def delete_pool(self, pool_id: str) -> bool:
        with self.lock:
            lb, pool = self._lb_and_pool(pool_id)
            if lb is None or pool is None:
                return False
            self._refuse_pool_in_use(pool)
            lb["properties"]["backendAddressPools"].remove(pool)
            lb["etag"] = new_etag()
            return True

    def refuse_pool_delete(self, pool_id: str) -> None:
        _, pool = self._lb_and_pool(pool_id)
        if pool is not None:
            self._refuse_pool_in_use(pool)

    def refuse_lb_delete(self, lb_id: str) -> None:
        lb = self.lbs.get(id_key(lb_id))
        for pool in (lb or {}).get("properties", {}).get("backendAddressPools", []):
            self._refuse_pool_in_use(pool)

    def snapshot_lb(self, lb_id: str) -> dict[str, Any] | None:
        """The stored load balancer as it is now (to undo a write that is later canceled)."""
        with self.lock:
            lb = self.lbs.get(id_key(lb_id))
            return copy.deepcopy(lb) if lb is not None else None

    def restore_lb(self, lb_id: str, snapshot: dict[str, Any] | None, keep_etag: bool = False) -> None:
        """Put a load balancer back as `snapshot` had it (None: it did not exist)."""
        with self.lock:
            if snapshot is None:
                self.lbs.pop(id_key(lb_id), None)
                return
            restored = copy.deepcopy(snapshot)
            if not keep_etag:
                restored["etag"] = new_etag()
            self.lbs[id_key(lb_id)] = restored

    def failed_parts(self, lb_id: str) -> list[str]:
        """Ids of the load balancer and its pools whose provisioningState is Failed."""
        with self.lock:
            lb = self.lbs.get(id_key(lb_id))
            if lb is None:
                return []
            parts = [lb, *lb["properties"].get("backendAddressPools", [])]
            return [p["id"] for p in parts if p["properties"].get("provisioningState") == FAILED_STATE]

    def lb_ip_address_count(self, lb_id: str, except_pool: str | None = None) -> int:
        with self.lock:
            lb = self.lbs.get(id_key(lb_id)) or {"properties": {}}
            return sum(
                len(pool_ip_addresses(pool))
                for pool in lb["properties"].get("backendAddressPools", [])
                if except_pool is None or id_key(pool["id"]) != id_key(except_pool)
            )

    def add_pool_address(
        self,
        pool_id: str,
        name: str,
        ip_address: str,
        vnet_id: str,
        subnet_id: str | None = None,
        admin_state: str | None = None,
    ) -> dict[str, Any]:
        """Append an address to a pool as someone else (a human, a script) would, bypassing HTTP."""
        with self.lock:
            pool = self.get_pool(pool_id)
            if pool is None:
                raise KeyError(pool_id)
            address: dict[str, Any] = {
                "name": name,
                "properties": {"ipAddress": ip_address, "virtualNetwork": {"id": vnet_id}},
            }
            if subnet_id:
                address["properties"]["subnet"] = {"id": subnet_id}
            if admin_state:
                address["properties"]["adminState"] = admin_state
            props = pool["properties"]
            props.pop("backendIPConfigurations", None)
            props["loadBalancerBackendAddresses"] = [*props.get("loadBalancerBackendAddresses", []), address]
            rendered, _ = self.put_pool(pool_id, {"properties": props})
            return rendered

    def pool_address_ips(self, pool_id: str) -> list[str]:
        pool = self.get_pool(pool_id)
        if pool is None:
            raise KeyError(pool_id)
        return [
            a["properties"].get("ipAddress")
            for a in pool["properties"].get("loadBalancerBackendAddresses", [])
        ]

    # ------------------------------------------------ address validation
    def _pool_addresses(
        self, lb: dict[str, Any], pool_id: str, props: dict[str, Any], nic_members: int
    ) -> list[dict[str, Any]]:
        """Validate `loadBalancerBackendAddresses` of a pool PUT; returns the stored form."""
        raw_addresses = props.get("loadBalancerBackendAddresses") or []
        if not isinstance(raw_addresses, list):
            raise bad_request("InvalidRequestFormat", "loadBalancerBackendAddresses must be an array.")
        pool_vnet_id = ref_id(props.get("virtualNetwork"))
        if pool_vnet_id and self._vnet(pool_vnet_id) is None:
            raise invalid_reference(pool_vnet_id, pool_id)
        if raw_addresses and lb["sku"]["name"] != "Standard":
            raise bad_request(
                "BackendAddressPoolWithIpAddressesRequiresStandardSku",
                f"Backend address pool {pool_id} specifies IP addresses, which is only supported on load "
                f"balancers with Standard sku; load balancer {lb['id']} has sku {lb['sku']['name']}.",
            )
        if raw_addresses and nic_members:
            raise mixed_pool(pool_id)
        stored = []
        for raw in raw_addresses:
            stored.append(self._address(pool_id, pool_vnet_id, raw))
        unique_names(stored, pool_id, "loadBalancerBackendAddresses")
        seen_ips: set[tuple[str, str]] = set()
        for address in stored:
            aprops = address["properties"]
            key = (id_key(ref_id(aprops.get("virtualNetwork")) or pool_vnet_id or ""), aprops["ipAddress"])
            if key in seen_ips:
                raise bad_request(
                    "DuplicateBackendAddressIpAddress",
                    f"Backend address pool {pool_id} contains the IP address {aprops['ipAddress']} "
                    "more than once.",
                )
            seen_ips.add(key)
        return stored

    def _address(self, pool_id: str, pool_vnet_id: str | None, raw: Any) -> dict[str, Any]:
        if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
            raise bad_request(
                "InvalidRequestFormat", "Every loadBalancerBackendAddresses entry needs a name."
            )
        name = raw["name"]
        props = raw.get("properties") or {}
        where = f"{pool_id}/loadBalancerBackendAddresses/{name}"
        if "ipAddress" not in props or props.get("ipAddress") in (None, ""):
            raise bad_request("InvalidRequestFormat", f"Backend address {where} must specify an ipAddress.")
        ip = ipam.parse_ip(props["ipAddress"], where)
        vnet_id = ref_id(props.get("virtualNetwork"))
        subnet_id = ref_id(props.get("subnet"))
        if vnet_id is None and subnet_id is not None:
            vnet_id = vnet_of_subnet(subnet_id)
        vnet_id = vnet_id or pool_vnet_id
        if vnet_id is None:
            raise bad_request(
                "BackendAddressMustReferenceVirtualNetwork",
                f"Backend address {where} must reference a virtual network or subnet.",
            )
        if pool_vnet_id and id_key(pool_vnet_id) != id_key(vnet_id):
            raise bad_request(
                "BackendAddressVirtualNetworkMismatch",
                f"Backend address {where} references virtual network {vnet_id}, but the pool is bound to "
                f"virtual network {pool_vnet_id}.",
            )
        vnet = self._vnet(vnet_id)
        if vnet is None:
            raise invalid_reference(vnet_id, where)
        space = [
            ipam.parse_prefix(p, "addressSpace")
            for p in vnet["properties"]["addressSpace"]["addressPrefixes"]
        ]
        if not ipam.within_any(ip, space):
            raise bad_request(
                "BackendAddressIpAddressNotInVirtualNetwork",
                f"IP address {ip} of backend address {where} is not within the address space of "
                f"virtual network {vnet['id']}.",
            )
        stored_props: dict[str, Any] = {"ipAddress": str(ip), "virtualNetwork": {"id": vnet["id"]}}
        if subnet_id is not None:
            subnet = self._subnet(subnet_id)
            if subnet is None or id_key(vnet_of_subnet(subnet_id)) != id_key(vnet["id"]):
                raise invalid_reference(subnet_id, where)
            if not ipam.within_any(ip, [ipam.parse_prefix(subnet["properties"]["addressPrefix"], "subnet")]):
                raise bad_request(
                    "BackendAddressIpAddressNotInSubnet",
                    f"IP address {ip} of backend address {where} is not within subnet {subnet['id']}.",
                )
            stored_props["subnet"] = {"id": subnet["id"]}
        admin_state = props.get("adminState")
        if admin_state is not None:
            if admin_state not in ADMIN_STATES:
                raise bad_request(
                    "InvalidRequestFormat",
                    f"adminState {admin_state!r} of {where} is not one of {ADMIN_STATES}.",
                )
            stored_props["adminState"] = admin_state
        return {"name": name, "properties": stored_props}


def pool_ip_addresses(pool: dict[str, Any]) -> list[str]:
    """IP-based members of a stored pool."""
    return [
        a["properties"]["ipAddress"]
        for a in pool.get("properties", {}).get("loadBalancerBackendAddresses", [])
        if a.get("properties", {}).get("ipAddress")
    ]


def mixed_pool(pool_id: str) -> ArmError:
    return bad_request(
        "BackendAddressPoolCannotMixNicAndIpBasedMembers",
        f"Backend address pool {pool_id} cannot contain both network interface IP configurations "
        "and IP addresses.",
    )


def referenced_resource_busy(lb_id: str, referencing_id: str) -> ArmError:
    """NRP's answer when a write depends on a resource another operation is updating."""
    return ArmError(
        429,
        "RetryableError",
        "A retryable error occurred.",
        details=[
            {
                "code": "ReferencedResourceNotProvisioned",
                "message": f"Cannot proceed with operation because resource {lb_id} used by resource "
                f"{referencing_id} is not in Succeeded state. Resource is in Updating state and the last "
                "operation that updated/is updating the resource is PutLoadBalancerOperation.",
            }
        ],
    )


def nic_member_entry(ipconfig_id: str) -> dict[str, Any]:
    """How NRP lists a NIC-based member among a pool's addresses: no ipAddress, the ipconfig instead."""
    parts = ipconfig_id.rstrip("/").split("/")
    return {
        "name": f"{parts[-3]}-{parts[-1]}",
        "properties": {"networkInterfaceIPConfiguration": {"id": ipconfig_id}},
    }
