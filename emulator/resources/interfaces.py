"""Network interfaces: IP configurations, private IP allocation in a subnet, pool references."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from typing import Any

from emulator import ipam
from emulator.errors import bad_request, invalid_reference
from emulator.ids import ResourceId, id_key, vnet_of_subnet
from emulator.resources.base import SUCCEEDED, WorldState, new_etag, props_of, ref_id, unique_names
from emulator.resources.load_balancers import mixed_pool, pool_ip_addresses, referenced_resource_busy

NIC_TYPE = "Microsoft.Network/networkInterfaces"
IPCONFIG_TYPE = "Microsoft.Network/networkInterfaces/ipConfigurations"


class Interfaces(WorldState):
    def render_nic(self, nic: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(nic)
        for config in out["properties"]["ipConfigurations"]:
            config["etag"] = nic["etag"]
        return out

    def get_nic(self, nic_id: str) -> dict[str, Any] | None:
        with self.lock:
            nic = self.nics.get(id_key(nic_id))
            return self.render_nic(nic) if nic else None

    def put_nic(
        self,
        nic_id: str,
        body: dict[str, Any],
        state: str = SUCCEEDED,
        busy_lb: Callable[[str], bool] | None = None,
        private_endpoint_id: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(nic_id)
        props = props_of(body)
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
            unique_names(configs, str(rid), "ipConfigurations")
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
                "macAddress": old_props.get("macAddress") or mac_for(rid.key()),
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
            subnet_id = ref_id(cprops.get("subnet"))
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
        props = props_of(raw)
        subnet_id = ref_id(props.get("subnet"))
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
            pool_id = ref_id(pool_ref)
            if not pool_id:
                raise bad_request(
                    "InvalidRequestFormat", "loadBalancerBackendAddressPools entries need an id."
                )
            lb, pool = self._lb_and_pool(pool_id)
            if pool is None or lb is None:
                raise invalid_reference(pool_id, f"{nic_id}/ipConfigurations/{name}")
            if pool_ip_addresses(pool):
                raise mixed_pool(pool["id"])
            if busy_lb is not None and busy_lb(lb["id"]):
                raise referenced_resource_busy(lb["id"], nic_id)
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
            subnet_id = ref_id(cprops.get("subnet"))
            ip = cprops.get("privateIPAddress")
            if subnet_id and ip:
                self._subnet_used.setdefault(id_key(subnet_id), set()).add(ip)
                self._ip_owner[(id_key(vnet_of_subnet(subnet_id)), ip)] = config["id"]
            for pool in cprops.get("loadBalancerBackendAddressPools", []):
                self._pool_members.setdefault(id_key(pool["id"]), {})[id_key(config["id"])] = config["id"]

    def _unindex_nic(self, nic: dict[str, Any]) -> None:
        for config in nic["properties"]["ipConfigurations"]:
            cprops = config["properties"]
            subnet_id = ref_id(cprops.get("subnet"))
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
            self.refuse_nic_delete(nic_id)
            self._unindex_nic(nic)
            del self.nics[id_key(nic_id)]
            return True

    def refuse_nic_delete(self, nic_id: str) -> None:
        nic = self.nics.get(id_key(nic_id))
        vm_id = ref_id(nic["properties"].get("virtualMachine")) if nic else None
        if nic and vm_id and id_key(vm_id) in self.vms:
            raise bad_request(
                "NicInUse",
                f"Network Interface {nic['id']} is used by existing resource {vm_id}. "
                "In order to delete the network interface, it must be dissociated from the resource.",
            )


def mac_for(key: str) -> str:
    digest = uuid.uuid5(uuid.NAMESPACE_URL, key).hex[:10].upper()
    return "00-" + "-".join(digest[i : i + 2] for i in range(0, 10, 2))
