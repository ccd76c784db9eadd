"""Virtual networks and their subnets: address spaces, subnet ranges, in-use refusals."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from emulator import ipam
from emulator.errors import bad_request, parent_not_found
from emulator.ids import ResourceId, id_key, vnet_of_subnet
from emulator.resources.base import SUCCEEDED, WorldState, new_etag, props_of, unique_names

VNET_TYPE = "Microsoft.Network/virtualNetworks"
SUBNET_TYPE = "Microsoft.Network/virtualNetworks/subnets"


class Networks(WorldState):
    def render_vnet(self, vnet: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(vnet)
        for subnet in out["properties"].get("subnets", []):
            subnet["etag"] = vnet["etag"]  # NRP children carry their parent's etag
        return out

    def render_subnet(self, vnet: dict[str, Any], subnet: dict[str, Any]) -> dict[str, Any]:
        return {**copy.deepcopy(subnet), "etag": vnet["etag"]}

    def get_vnet(self, vnet_id: str) -> dict[str, Any] | None:
        with self.lock:
            vnet = self._vnet(vnet_id)
            return self.render_vnet(vnet) if vnet else None

    def get_subnet(self, subnet_id: str) -> dict[str, Any] | None:
        with self.lock:
            subnet = self._subnet(subnet_id)
            vnet = self._vnet(vnet_of_subnet(subnet_id)) if subnet else None
            return self.render_subnet(vnet, subnet) if vnet and subnet else None

    def list_subnets(self, vnet_id: str) -> list[dict[str, Any]] | None:
        with self.lock:
            vnet = self._vnet(vnet_id)
            if vnet is None:
                return None
            return [self.render_subnet(vnet, subnet) for subnet in vnet["properties"].get("subnets", [])]

    def put_vnet(
        self, vnet_id: str, body: dict[str, Any], state: str = SUCCEEDED
    ) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(vnet_id)
        props = props_of(body)
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
            unique_names(subnets, vnet_id, "subnets")
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
        props = props_of(body)
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
            self.refuse_vnet_delete(vnet_id)
            del self.vnets[id_key(vnet_id)]
            return True

    def refuse_subnet_delete(self, subnet_id: str) -> None:
        subnet = self._subnet(subnet_id)
        if subnet is not None:
            self._refuse_subnet_in_use(subnet)

    def refuse_vnet_delete(self, vnet_id: str) -> None:
        vnet = self._vnet(vnet_id)
        for subnet in (vnet or {}).get("properties", {}).get("subnets", []):
            self._refuse_subnet_in_use(subnet)
