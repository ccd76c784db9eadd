"""Platform validation the network RP applies, as pure checks over request bodies.

Error codes: where the public record (REST spec, SDK, issue threads) shows the code Azure
uses, it is used; otherwise the code is descriptive and listed in docs/emulator.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from emulator import ipam
from emulator.errors import ArmError, bad_request, invalid_reference
from emulator.ids import id_key, vnet_of_subnet

if TYPE_CHECKING:
    from emulator.world import World

ADMIN_STATES = ("None", "Up", "Down")


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


def pool_addresses(
    world: World, lb: dict[str, Any], pool_id: str, props: dict[str, Any], nic_members: int
) -> list[dict[str, Any]]:
    """Validate `loadBalancerBackendAddresses` of a pool PUT; returns the stored form."""
    raw_addresses = props.get("loadBalancerBackendAddresses") or []
    if not isinstance(raw_addresses, list):
        raise bad_request("InvalidRequestFormat", "loadBalancerBackendAddresses must be an array.")
    pool_vnet_id = _ref_id(props.get("virtualNetwork"))
    if pool_vnet_id and world.get_vnet(pool_vnet_id) is None:
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
        stored.append(_address(world, pool_id, pool_vnet_id, raw))
    unique_names(stored, pool_id, "loadBalancerBackendAddresses")
    seen_ips: set[tuple[str, str]] = set()
    for address in stored:
        aprops = address["properties"]
        key = (id_key(_ref_id(aprops.get("virtualNetwork")) or pool_vnet_id or ""), aprops["ipAddress"])
        if key in seen_ips:
            raise bad_request(
                "DuplicateBackendAddressIpAddress",
                f"Backend address pool {pool_id} contains the IP address {aprops['ipAddress']} "
                "more than once.",
            )
        seen_ips.add(key)
    return stored


def _address(world: World, pool_id: str, pool_vnet_id: str | None, raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str) or not raw["name"]:
        raise bad_request("InvalidRequestFormat", "Every loadBalancerBackendAddresses entry needs a name.")
    name = raw["name"]
    props = raw.get("properties") or {}
    where = f"{pool_id}/loadBalancerBackendAddresses/{name}"
    if "ipAddress" not in props or props.get("ipAddress") in (None, ""):
        raise bad_request("InvalidRequestFormat", f"Backend address {where} must specify an ipAddress.")
    ip = ipam.parse_ip(props["ipAddress"], where)
    vnet_id = _ref_id(props.get("virtualNetwork"))
    subnet_id = _ref_id(props.get("subnet"))
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
    vnet = world.get_vnet(vnet_id)
    if vnet is None:
        raise invalid_reference(vnet_id, where)
    space = [
        ipam.parse_prefix(p, "addressSpace") for p in vnet["properties"]["addressSpace"]["addressPrefixes"]
    ]
    if not ipam.within_any(ip, space):
        raise bad_request(
            "BackendAddressIpAddressNotInVirtualNetwork",
            f"IP address {ip} of backend address {where} is not within the address space of virtual network "
            f"{vnet['id']}.",
        )
    stored_props: dict[str, Any] = {"ipAddress": str(ip), "virtualNetwork": {"id": vnet["id"]}}
    if subnet_id is not None:
        subnet = world.get_subnet(subnet_id)
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
                "InvalidRequestFormat", f"adminState {admin_state!r} of {where} is not one of {ADMIN_STATES}."
            )
        stored_props["adminState"] = admin_state
    return {"name": name, "properties": stored_props}


def _ref_id(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("id"), str):
        return value["id"]
    return None
