"""The emulated ARM world: resources, their derived read-only views, and validation.

Resources are stored as ARM JSON (original id casing) in dicts keyed by the lower-cased
id. Read-only properties that Azure derives from other resources (a pool's
`backendIPConfigurations`, an address's `networkInterfaceIPConfiguration`, a NIC's
`virtualMachine`) are computed when rendering, from indexes kept in step on every write.
All public methods take `self.lock`, so HTTP threads and tests may call them freely.
"""

from __future__ import annotations

import copy
import threading
import uuid
from collections.abc import Callable
from typing import Any

from emulator import ipam, validation
from emulator.errors import (
    ArmError,
    bad_request,
    invalid_reference,
    nested_not_found,
    parent_not_found,
    resource_not_found,
)
from emulator.ids import ResourceId, id_key, vnet_of_subnet

DEFAULT_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
DEFAULT_LOCATION = "westeurope"

VNET_TYPE = "Microsoft.Network/virtualNetworks"
SUBNET_TYPE = "Microsoft.Network/virtualNetworks/subnets"
NIC_TYPE = "Microsoft.Network/networkInterfaces"
IPCONFIG_TYPE = "Microsoft.Network/networkInterfaces/ipConfigurations"
LB_TYPE = "Microsoft.Network/loadBalancers"
POOL_TYPE = "Microsoft.Network/loadBalancers/backendAddressPools"
VM_TYPE = "Microsoft.Compute/virtualMachines"

LB_CHILD_TYPES = {
    "frontendIPConfigurations": "Microsoft.Network/loadBalancers/frontendIPConfigurations",
    "loadBalancingRules": "Microsoft.Network/loadBalancers/loadBalancingRules",
    "inboundNatRules": "Microsoft.Network/loadBalancers/inboundNatRules",
    "probes": "Microsoft.Network/loadBalancers/probes",
    "outboundRules": "Microsoft.Network/loadBalancers/outboundRules",
}

SUCCEEDED = "Succeeded"
FAILED_STATE = "Failed"


def new_etag() -> str:
    return f'W/"{uuid.uuid4()}"'


def _ref(value: Any) -> str | None:
    """The id of a `{"id": ...}` sub-resource reference, if any."""
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None


def _props(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties")
    if props is None:
        return {}
    if not isinstance(props, dict):
        raise bad_request("InvalidRequestFormat", "Cannot parse the request: 'properties' must be an object.")
    return props


class World:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        # `azure` profile: NIC-based members also appear in loadBalancerBackendAddresses, as NRP shows them
        self.echo_nic_members = False
        self.clear()

    # ------------------------------------------------------------------ state
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

    def add_subscription(self, subscription_id: str) -> None:
        with self.lock:
            self.subscriptions[id_key(subscription_id)] = subscription_id

    def has_subscription(self, subscription_id: str) -> bool:
        return id_key(subscription_id) in self.subscriptions

    # ------------------------------------------------------------ lookups
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

    # ------------------------------------------------------------ rendering
    def render_vnet(self, vnet: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(vnet)
        for subnet in out["properties"].get("subnets", []):
            subnet["etag"] = vnet["etag"]  # NRP children carry their parent's etag
        return out

    def render_subnet(self, vnet: dict[str, Any], subnet: dict[str, Any]) -> dict[str, Any]:
        return {**copy.deepcopy(subnet), "etag": vnet["etag"]}

    def render_nic(self, nic: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(nic)
        for config in out["properties"]["ipConfigurations"]:
            config["etag"] = nic["etag"]
        return out

    def render_vm(self, vm: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(vm)

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
            vnet_id = _ref(aprops.get("virtualNetwork")) or _ref(props.get("virtualNetwork"))
            if not vnet_id and _ref(aprops.get("subnet")):
                vnet_id = vnet_of_subnet(_ref(aprops.get("subnet")) or "")
            owner = self._ip_owner.get((id_key(vnet_id), aprops.get("ipAddress"))) if vnet_id else None
            if owner:
                aprops["networkInterfaceIPConfiguration"] = {"id": owner}
        rules = [
            {"id": rule["id"]}
            for rule in lb["properties"].get("loadBalancingRules", [])
            if id_key(_ref(rule.get("properties", {}).get("backendAddressPool")) or "") == id_key(pool["id"])
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

    # --------------------------------------------------------------- reads
    def get_vnet(self, vnet_id: str) -> dict[str, Any] | None:
        with self.lock:
            vnet = self._vnet(vnet_id)
            return self.render_vnet(vnet) if vnet else None

    def get_subnet(self, subnet_id: str) -> dict[str, Any] | None:
        with self.lock:
            subnet = self._subnet(subnet_id)
            vnet = self._vnet(vnet_of_subnet(subnet_id)) if subnet else None
            return self.render_subnet(vnet, subnet) if vnet and subnet else None

    def get_nic(self, nic_id: str) -> dict[str, Any] | None:
        with self.lock:
            nic = self.nics.get(id_key(nic_id))
            return self.render_nic(nic) if nic else None

    def get_vm(self, vm_id: str) -> dict[str, Any] | None:
        with self.lock:
            vm = self.vms.get(id_key(vm_id))
            return self.render_vm(vm) if vm else None

    def get_lb(self, lb_id: str) -> dict[str, Any] | None:
        with self.lock:
            lb = self.lbs.get(id_key(lb_id))
            return self.render_lb(lb) if lb else None

    def get_pool(self, pool_id: str) -> dict[str, Any] | None:
        with self.lock:
            lb, pool = self._lb_and_pool(pool_id)
            return self.render_pool(lb, pool) if lb and pool else None

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

    def list_pools(self, lb_id: str) -> list[dict[str, Any]] | None:
        with self.lock:
            lb = self.lbs.get(id_key(lb_id))
            if lb is None:
                return None
            return [self.render_pool(lb, pool) for pool in lb["properties"].get("backendAddressPools", [])]

    def list_subnets(self, vnet_id: str) -> list[dict[str, Any]] | None:
        with self.lock:
            vnet = self._vnet(vnet_id)
            if vnet is None:
                return None
            return [self.render_subnet(vnet, subnet) for subnet in vnet["properties"].get("subnets", [])]

    def _collection(self, kind: str) -> tuple[dict[str, dict[str, Any]], Callable[[Any], dict[str, Any]]]:
        return {
            "vnet": (self.vnets, self.render_vnet),
            "nic": (self.nics, self.render_nic),
            "vm": (self.vms, self.render_vm),
            "lb": (self.lbs, self.render_lb),
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
            }

    # -------------------------------------------------------- etag helpers
    def _top_store(self, resource_type: str) -> dict[str, dict[str, Any]] | None:
        """Where top-level resources of a type ('loadBalancers', ...) are kept."""
        return {
            "virtualnetworks": self.vnets,
            "networkinterfaces": self.nics,
            "loadbalancers": self.lbs,
            "virtualmachines": self.vms,
        }.get(resource_type.lower())

    def current_etag(self, resource_id: str) -> str | None:
        """Etag of any addressable resource (children report their parent's)."""
        with self.lock:
            rid = ResourceId.parse(resource_id)
            parent_key = rid.parent.key()
            store = self._top_store(rid.type)
            if store is None or parent_key not in store:
                return None
            if rid.child_type:
                exists = (
                    self._lb_and_pool(resource_id)[1] is not None
                    if rid.type.lower() == "loadbalancers"
                    else self._subnet(resource_id) is not None
                )
                if not exists:
                    return None
            return store[parent_key].get("etag")

    # ---------------------------------------------------------------- vnets
    def put_vnet(
        self, vnet_id: str, body: dict[str, Any], state: str = SUCCEEDED
    ) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(vnet_id)
        props = _props(body)
        prefixes = (props.get("addressSpace") or {}).get("addressPrefixes") or []
        if not prefixes:
            raise bad_request(
                "InvalidRequestFormat", "Cannot parse the request: addressSpace.addressPrefixes is required."
            )
        networks = [ipam.parse_prefix(p, "addressSpace.addressPrefixes") for p in prefixes]
        with self.lock:
            old = self._vnet(vnet_id)
            subnets_in = props.get("subnets")
            if subnets_in is None and old is not None:
                subnets_in = old["properties"].get("subnets", [])
            subnets = [self._build_subnet(vnet_id, s, networks) for s in subnets_in or []]
            validation.unique_names(subnets, vnet_id, "subnets")
            if old is not None:
                kept = {s["name"].lower() for s in subnets}
                for gone in old["properties"].get("subnets", []):
                    if gone["name"].lower() not in kept:
                        self._refuse_subnet_in_use(gone)
            vnet = {
                "id": str(rid),
                "name": rid.name,
                "type": VNET_TYPE,
                "location": self._location(body, old),
                "tags": body.get("tags") or {},
                "etag": new_etag(),
                "properties": {
                    "provisioningState": state,
                    "resourceGuid": (old or {}).get("properties", {}).get("resourceGuid")
                    or str(uuid.uuid4()),
                    "addressSpace": {"addressPrefixes": [str(n) for n in networks]},
                    "subnets": subnets,
                },
            }
            self.vnets[rid.key()] = vnet
            return self.render_vnet(vnet), old is None

    def _build_subnet(
        self, vnet_id: str, body: dict[str, Any], networks: list[ipam.IpNetwork]
    ) -> dict[str, Any]:
        name = body.get("name")
        if not isinstance(name, str) or not name:
            raise bad_request("InvalidRequestFormat", "Cannot parse the request: subnet name is required.")
        props = _props(body)
        prefix_text = props.get("addressPrefix") or (props.get("addressPrefixes") or [None])[0]
        prefix = ipam.parse_prefix(prefix_text, f"subnet {name}")
        if not any(prefix.version == n.version and prefix.subnet_of(n) for n in networks):  # type: ignore[arg-type]
            raise bad_request(
                "NetcfgSubnetRangeOutsideVnet",
                f"Subnet '{name}' is not valid because its IP address range is outside the IP address range "
                f"of virtual network '{vnet_id.rsplit('/', 1)[-1]}'.",
            )
        return {
            "id": f"{vnet_id}/subnets/{name}",
            "name": name,
            "type": SUBNET_TYPE,
            "properties": {"provisioningState": SUCCEEDED, "addressPrefix": str(prefix)},
        }

    def _refuse_subnet_in_use(self, subnet: dict[str, Any]) -> None:
        if self._subnet_used.get(id_key(subnet["id"])):
            raise bad_request(
                "InUseSubnetCannotBeDeleted",
                f"Subnet {subnet['name']} is in use by network interface IP configurations "
                "and cannot be deleted.",
            )

    def put_subnet(self, subnet_id: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        vnet_id = vnet_of_subnet(subnet_id)
        with self.lock:
            vnet = self._vnet(vnet_id)
            if vnet is None:
                raise parent_not_found(vnet_id.rsplit("/", 1)[-1])
            networks = [
                ipam.parse_prefix(p, "addressSpace")
                for p in vnet["properties"]["addressSpace"]["addressPrefixes"]
            ]
            subnet = self._build_subnet(
                str(vnet["id"]), {**body, "name": subnet_id.rsplit("/", 1)[-1]}, networks
            )
            subnets = vnet["properties"].setdefault("subnets", [])
            created = True
            for index, existing in enumerate(subnets):
                if existing["name"].lower() == subnet["name"].lower():
                    subnet["name"], subnet["id"] = existing["name"], existing["id"]
                    subnets[index] = subnet
                    created = False
                    break
            else:
                subnets.append(subnet)
            vnet["etag"] = new_etag()
            return self.render_subnet(vnet, subnet), created

    def delete_subnet(self, subnet_id: str) -> bool:
        with self.lock:
            vnet = self._vnet(vnet_of_subnet(subnet_id))
            subnet = self._subnet(subnet_id)
            if vnet is None or subnet is None:
                return False
            self._refuse_subnet_in_use(subnet)
            vnet["properties"]["subnets"].remove(subnet)
            vnet["etag"] = new_etag()
            return True

    def delete_vnet(self, vnet_id: str) -> bool:
        with self.lock:
            if self._vnet(vnet_id) is None:
                return False
            self.check_delete("vnet", vnet_id)
            del self.vnets[id_key(vnet_id)]
            return True

    # ---------------------------------------------------------------- NICs
    def put_nic(
        self,
        nic_id: str,
        body: dict[str, Any],
        state: str = SUCCEEDED,
        busy_lb: Callable[[str], bool] | None = None,
        private_endpoint_id: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(nic_id)
        props = _props(body)
        configs_in = props.get("ipConfigurations")
        if not isinstance(configs_in, list) or not configs_in:
            raise bad_request(
                "NetworkInterfaceMustHaveAtLeastOneIpConfiguration",
                f"Network interface {nic_id} must have at least one IP configuration.",
            )
        with self.lock:
            old = self.nics.get(rid.key())
            # validate against the world without this NIC's own old addresses
            old_ips = self._nic_ips(old) if old else {}
            configs = []
            taken: set[tuple[str, str]] = set()
            for index, raw in enumerate(configs_in):
                config = self._build_ipconfig(str(rid), raw, index, old_ips, taken, busy_lb)
                configs.append(config)
            validation.unique_names(configs, str(rid), "ipConfigurations")
            primaries = [c for c in configs if c["properties"]["primary"]]
            if len(configs) > 1 and len(primaries) != 1:
                raise bad_request(
                    "NetworkInterfaceMustHaveOnePrimaryIpConfiguration"
                    if not primaries
                    else "OnlyOnePrimaryIpConfigurationAllowedPerNetworkInterface",
                    f"Network interface {nic_id} must have exactly one primary IP configuration.",
                )
            if len(configs) == 1:
                configs[0]["properties"]["primary"] = True
            old_props = (old or {}).get("properties", {})
            nic_props: dict[str, Any] = {
                "provisioningState": state,
                "resourceGuid": old_props.get("resourceGuid") or str(uuid.uuid4()),
                "ipConfigurations": configs,
                "enableAcceleratedNetworking": bool(props.get("enableAcceleratedNetworking", False)),
                "enableIPForwarding": bool(props.get("enableIPForwarding", False)),
                "nicType": "Standard",
                "macAddress": old_props.get("macAddress") or _mac_for(rid.key()),
            }
            for kept in ("virtualMachine", "primary", "privateEndpoint"):
                if kept in old_props:
                    nic_props[kept] = old_props[kept]
            if private_endpoint_id:
                nic_props["privateEndpoint"] = {"id": private_endpoint_id}
            nic = {
                "id": str(rid),
                "name": rid.name,
                "type": NIC_TYPE,
                "location": self._location(body, old),
                "tags": body.get("tags") or {},
                "etag": new_etag(),
                "properties": nic_props,
            }
            for config in configs:
                config["etag"] = nic["etag"]
            if old is not None:
                self._unindex_nic(old)
            self.nics[rid.key()] = nic
            self._index_nic(nic)
            return self.render_nic(nic), old is None

    def _nic_ips(self, nic: dict[str, Any]) -> dict[str, tuple[str, str]]:
        """ipconfig name (lower) -> (subnet key, ip) of a stored NIC."""
        out = {}
        for config in nic["properties"]["ipConfigurations"]:
            cprops = config["properties"]
            subnet_id = _ref(cprops.get("subnet"))
            if subnet_id and cprops.get("privateIPAddress"):
                out[config["name"].lower()] = (id_key(subnet_id), cprops["privateIPAddress"])
        return out

    def _build_ipconfig(
        self,
        nic_id: str,
        raw: Any,
        index: int,
        old_ips: dict[str, tuple[str, str]],
        taken: set[tuple[str, str]],
        busy_lb: Callable[[str], bool] | None,
    ) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise bad_request("InvalidRequestFormat", "Cannot parse the request: ipConfigurations.")
        name = raw.get("name") or f"ipconfig{index + 1}"
        props = _props(raw)
        subnet_id = _ref(props.get("subnet"))
        if not subnet_id:
            raise bad_request(
                "SubnetReferenceMissing" if index == 0 else "InvalidRequestFormat",
                f"IP configuration {nic_id}/ipConfigurations/{name} must reference a subnet.",
            )
        subnet = self._subnet(subnet_id)
        if subnet is None:
            raise invalid_reference(subnet_id, f"{nic_id}/ipConfigurations/{name}")
        subnet_id = subnet["id"]
        network = ipam.parse_prefix(subnet["properties"]["addressPrefix"], "subnet")
        subnet_key = id_key(subnet_id)
        used = self._subnet_used.setdefault(subnet_key, set())
        mine = old_ips.get(name.lower())
        method = props.get("privateIPAllocationMethod") or (
            "Static" if props.get("privateIPAddress") else "Dynamic"
        )
        if method not in ("Static", "Dynamic"):
            raise bad_request("InvalidRequestFormat", f"privateIPAllocationMethod {method!r} is not valid.")
        requested = props.get("privateIPAddress")
        if requested:
            ip = ipam.parse_ip(requested, f"{name}.privateIPAddress")
            if not ipam.within_any(ip, [network]):
                raise bad_request(
                    "PrivateIPAddressNotInSubnet",
                    f"IP configuration {nic_id}/ipConfigurations/{name} references the private IP address "
                    f"{ip} which is not within the address prefix {network} of subnet {subnet['name']}.",
                )
            ip_text = str(ip)
            in_use = ip_text in used and mine != (subnet_key, ip_text)
            if in_use or (subnet_key, ip_text) in taken:
                raise bad_request(
                    "PrivateIPAddressInUse",
                    f"IP configuration {nic_id}/ipConfigurations/{name} is using the private IP address "
                    f"{ip_text} which is already allocated to resource {self._owner_of(subnet_id, ip_text)}.",
                )
        elif mine and mine[0] == subnet_key:
            ip_text = mine[1]  # a dynamic address sticks while the subnet stays the same
        else:
            excluded = used | {ip for key, ip in taken if key == subnet_key}
            ip_text, self._subnet_hint[subnet_key] = ipam.allocate(
                network, excluded, self._subnet_hint.get(subnet_key)
            )
        taken.add((subnet_key, ip_text))
        pools = []
        for pool_ref in props.get("loadBalancerBackendAddressPools") or []:
            pool_id = _ref(pool_ref)
            if not pool_id:
                raise bad_request(
                    "InvalidRequestFormat", "loadBalancerBackendAddressPools entries need an id."
                )
            lb, pool = self._lb_and_pool(pool_id)
            if pool is None or lb is None:
                raise invalid_reference(pool_id, f"{nic_id}/ipConfigurations/{name}")
            if validation.pool_ip_addresses(pool):
                raise validation.mixed_pool(pool["id"])
            if busy_lb is not None and busy_lb(lb["id"]):
                raise validation.referenced_resource_busy(lb["id"], nic_id)
            pools.append({"id": pool["id"]})
        return {
            "id": f"{nic_id}/ipConfigurations/{name}",
            "name": name,
            "type": IPCONFIG_TYPE,
            "properties": {
                "provisioningState": SUCCEEDED,
                "privateIPAddress": ip_text,
                "privateIPAllocationMethod": method,
                "privateIPAddressVersion": "IPv6" if ":" in ip_text else "IPv4",
                "subnet": {"id": subnet_id},
                "primary": bool(props.get("primary", False)),
                "loadBalancerBackendAddressPools": pools,
            },
        }

    def _owner_of(self, subnet_id: str, ip: str) -> str:
        return self._ip_owner.get((id_key(vnet_of_subnet(subnet_id)), ip), "another resource")

    def _index_nic(self, nic: dict[str, Any]) -> None:
        for config in nic["properties"]["ipConfigurations"]:
            cprops = config["properties"]
            subnet_id = _ref(cprops.get("subnet"))
            ip = cprops.get("privateIPAddress")
            if subnet_id and ip:
                self._subnet_used.setdefault(id_key(subnet_id), set()).add(ip)
                self._ip_owner[(id_key(vnet_of_subnet(subnet_id)), ip)] = config["id"]
            for pool in cprops.get("loadBalancerBackendAddressPools", []):
                self._pool_members.setdefault(id_key(pool["id"]), {})[id_key(config["id"])] = config["id"]

    def _unindex_nic(self, nic: dict[str, Any]) -> None:
        for config in nic["properties"]["ipConfigurations"]:
            cprops = config["properties"]
            subnet_id = _ref(cprops.get("subnet"))
            ip = cprops.get("privateIPAddress")
            if subnet_id and ip:
                self._subnet_used.get(id_key(subnet_id), set()).discard(ip)
                self._ip_owner.pop((id_key(vnet_of_subnet(subnet_id)), ip), None)
            for pool in cprops.get("loadBalancerBackendAddressPools", []):
                self._pool_members.get(id_key(pool["id"]), {}).pop(id_key(config["id"]), None)

    def delete_nic(self, nic_id: str) -> bool:
        with self.lock:
            nic = self.nics.get(id_key(nic_id))
            if nic is None:
                return False
            self.check_delete("nic", nic_id)
            self._unindex_nic(nic)
            del self.nics[id_key(nic_id)]
            return True

    # ----------------------------------------------------------------- VMs
    def put_vm(self, vm_id: str, body: dict[str, Any], state: str = SUCCEEDED) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(vm_id)
        props = _props(body)
        nic_refs = (props.get("networkProfile") or {}).get("networkInterfaces") or []
        with self.lock:
            old = self.vms.get(rid.key())
            refs = []
            for raw in nic_refs:
                nic_id = _ref(raw)
                nic = self.nics.get(id_key(nic_id or ""))
                if nic is None:
                    raise ArmError(
                        400,
                        "InvalidParameter" if nic_id is None else "NotFound",
                        f"Network interface '{nic_id}' referenced by virtual machine {rid} was not found.",
                    )
                owner = _ref(nic["properties"].get("virtualMachine"))
                if owner and id_key(owner) != rid.key() and id_key(owner) in self.vms:
                    raise ArmError(
                        400,
                        "NicInUse",
                        f"Network Interface {nic['id']} is used by existing VM {owner}.",
                    )
                if "privateEndpoint" in nic["properties"]:
                    raise bad_request(
                        "InvalidParameter",
                        f"Network interface {nic['id']} belongs to a private endpoint.",
                    )
                ref_props = (raw.get("properties") or {}) if isinstance(raw, dict) else {}
                refs.append(
                    {
                        "id": nic["id"],
                        "properties": {
                            "primary": bool(ref_props.get("primary", len(nic_refs) == 1)),
                            "deleteOption": ref_props.get("deleteOption", "Detach"),
                        },
                    }
                )
            if len(refs) > 1 and sum(r["properties"]["primary"] for r in refs) != 1:
                raise bad_request(
                    "InvalidParameter",
                    "Virtual machine must have exactly one primary network interface "
                    "when it has more than one.",
                )
            if old is not None:
                self._detach_vm_nics(old, keep={id_key(r["id"]) for r in refs})
            vm_props = copy.deepcopy(props)
            vm_props.pop("instanceView", None)
            vm_props["networkProfile"] = {"networkInterfaces": refs}
            vm_props["provisioningState"] = state
            vm_props["vmId"] = (old or {}).get("properties", {}).get("vmId") or str(uuid.uuid4())
            vm_props.setdefault("hardwareProfile", {"vmSize": "Standard_B1s"})
            vm = {
                "id": str(rid),
                "name": rid.name,
                "type": VM_TYPE,
                "location": self._location(body, old),
                "tags": body.get("tags") or {},
                "etag": new_etag(),
                "properties": vm_props,
            }
            if body.get("zones"):
                vm["zones"] = body["zones"]
            self.vms[rid.key()] = vm
            for ref in refs:
                nic = self.nics[id_key(ref["id"])]
                nic["properties"]["virtualMachine"] = {"id": str(rid)}
                nic["properties"]["primary"] = ref["properties"]["primary"]
                nic["etag"] = new_etag()
            return self.render_vm(vm), old is None

    def _detach_vm_nics(self, vm: dict[str, Any], keep: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
        """Clear the back-reference of the VM's NICs not in `keep`; returns the NIC ids touched."""
        touched = []
        for ref in vm["properties"]["networkProfile"]["networkInterfaces"]:
            nic = self.nics.get(id_key(ref["id"]))
            if nic is None or id_key(ref["id"]) in keep:
                continue
            if id_key(_ref(nic["properties"].get("virtualMachine")) or "") == id_key(vm["id"]):
                nic["properties"].pop("virtualMachine", None)
                nic["properties"].pop("primary", None)
                nic["etag"] = new_etag()
                touched.append(nic["id"])
        return touched

    def delete_vm(self, vm_id: str) -> tuple[list[str], list[str]] | None:
        """Remove a VM like Compute does: NICs with deleteOption Delete go, the others are detached.

        Returns (deleted NIC ids, detached NIC ids), or None when the VM does not exist.
        """
        with self.lock:
            vm = self.vms.get(id_key(vm_id))
            if vm is None:
                return None
            doomed = [
                ref["id"]
                for ref in vm["properties"]["networkProfile"]["networkInterfaces"]
                if ref["properties"].get("deleteOption") == "Delete" and id_key(ref["id"]) in self.nics
            ]
            del self.vms[id_key(vm_id)]
            detached = self._detach_vm_nics(vm, keep={id_key(n) for n in doomed})
            deleted = []
            for nic_id in doomed:
                nic = self.nics.pop(id_key(nic_id))
                self._unindex_nic(nic)
                deleted.append(nic["id"])
            return deleted, detached

    # ------------------------------------------------------ load balancers
    def put_lb(self, lb_id: str, body: dict[str, Any], state: str = SUCCEEDED) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(lb_id)
        props = _props(body)
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
                validation.unique_names(children, str(rid), kind)
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
            validation.unique_names(pools, str(rid), "backendAddressPools")
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
        props = copy.deepcopy(_props(raw))
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

    # --------------------------------------------------------------- pools
    def put_pool(
        self, pool_id: str, body: dict[str, Any], state: str = SUCCEEDED
    ) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(pool_id)
        props = _props(body)
        with self.lock:
            lb = self.lbs.get(rid.parent.key())
            if lb is None:
                raise parent_not_found(rid.name)
            _, old = self._lb_and_pool(pool_id)
            name = old["name"] if old else rid.child_name
            real_id = f"{lb['id']}/backendAddressPools/{name}"
            addresses = validation.pool_addresses(
                self, lb, real_id, props, nic_members=len(self._pool_members.get(id_key(real_id), {}))
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

    def check_delete(self, kind: str, resource_id: str) -> None:
        """Raise the error Azure gives when this delete is refused; mutate nothing."""
        with self.lock:
            if kind == "nic":
                nic = self.nics.get(id_key(resource_id))
                vm_id = _ref(nic["properties"].get("virtualMachine")) if nic else None
                if nic and vm_id and id_key(vm_id) in self.vms:
                    raise bad_request(
                        "NicInUse",
                        f"Network Interface {nic['id']} is used by existing resource {vm_id}. "
                        "In order to delete the network interface, it must be dissociated from the resource.",
                    )
            elif kind == "pool":
                _, pool = self._lb_and_pool(resource_id)
                if pool is not None:
                    self._refuse_pool_in_use(pool)
            elif kind == "lb":
                lb = self.lbs.get(id_key(resource_id))
                for pool in (lb or {}).get("properties", {}).get("backendAddressPools", []):
                    self._refuse_pool_in_use(pool)
            elif kind == "subnet":
                subnet = self._subnet(resource_id)
                if subnet is not None:
                    self._refuse_subnet_in_use(subnet)
            elif kind == "vnet":
                vnet = self._vnet(resource_id)
                for subnet in (vnet or {}).get("properties", {}).get("subnets", []):
                    self._refuse_subnet_in_use(subnet)

    # ------------------------------------------ provisioning-state updates
    def set_provisioning_state(self, resource_id: str, state: str) -> bool:
        """Used by the LRO engine when an operation ends; False if the resource is gone."""
        with self.lock:
            rid = ResourceId.parse(resource_id)
            if rid.child_type and rid.type.lower() == "loadbalancers":
                _, target = self._lb_and_pool(resource_id)
            elif rid.child_type:
                target = self._subnet(resource_id)
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
                len(validation.pool_ip_addresses(pool))
                for pool in lb["properties"].get("backendAddressPools", [])
                if except_pool is None or id_key(pool["id"]) != id_key(except_pool)
            )

    # ------------------------------------------------ direct test helpers
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

    # ---------------------------------------------------------------- misc
    def _location(self, body: dict[str, Any], old: dict[str, Any] | None) -> str:
        location = body.get("location") or (old or {}).get("location")
        if not location:
            raise bad_request("LocationRequired", "The location property is required for this definition.")
        return str(location)


def nic_member_entry(ipconfig_id: str) -> dict[str, Any]:
    """How NRP lists a NIC-based member among a pool's addresses: no ipAddress, the ipconfig instead."""
    parts = ipconfig_id.rstrip("/").split("/")
    return {
        "name": f"{parts[-3]}-{parts[-1]}",
        "properties": {"networkInterfaceIPConfiguration": {"id": ipconfig_id}},
    }


def missing(resource_id: str) -> ArmError:
    """The 404 ARM/NRP answers for a resource id that does not exist."""
    rid = ResourceId.parse(resource_id)
    if rid.child_type:
        return nested_not_found(str(rid))
    return resource_not_found(f"{rid.namespace}/{rid.type}", rid.name, rid.resource_group)


def _mac_for(key: str) -> str:
    digest = uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:10].upper()
    return "00-" + "-".join(digest[i : i + 2] for i in range(0, 10, 2))
