"""Backend addresses in requests: IP checks (format, VNet range, Azure-reserved), the address objects of
POST .../addresses (az's --backend-address-config-file shape), and `{address}` route references."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shared.api.http import (
    JSON,
    ApiError,
    bad_request,
)
from shared.core.ids import InvalidResourceId, ResourceId, id_key, vnet_of_subnet
from shared.core.models import ADMIN_NONE, PoolAddress, PoolSnapshot, normal_ip
from shared.core.naming import AZURE_NAME_RE, PREFIX
from shared.core.plan import ADMIN_STATES

MAX_ADDRESSES_PER_REQUEST = 1000

# --- IP addresses --------------------------------------------------------------------------------

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(value: JSON, target: str) -> IpAddress:
    """A single, usable unicast address in canonical form; CIDRs, zone ids and special ranges refused."""
    if not isinstance(value, str) or not value:
        raise bad_request("InvalidIpAddress", "must be an IPv4 or IPv6 address string", target)
    if len(value) > 45 or any(ch in value for ch in "/% \t\r\n"):
        raise bad_request(
            "InvalidIpAddress", f"{value[:60]!r} is not one IP address (no prefix length or zone)", target
        )
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise bad_request("InvalidIpAddress", f"{value!r} is not an IPv4 or IPv6 address", target) from None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        raise bad_request(
            "InvalidIpAddress", f"{value!r} is an IPv4-mapped IPv6 address; use {address.ipv4_mapped}", target
        )
    if (
        address.is_unspecified
        or address.is_loopback
        or address.is_multicast
        or address.is_link_local
        or address == ipaddress.IPv4Address("255.255.255.255")
    ):
        raise bad_request("InvalidIpAddress", f"{value!r} cannot be a backend address", target)
    return address


def _networks(prefixes: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    networks = []
    for prefix in prefixes:
        try:
            networks.append(ipaddress.ip_network(prefix, strict=False))
        except ValueError:
            continue
    return networks


def check_ip_in_vnet(address: IpAddress, vnet: Mapping[str, JSON], target: str) -> None:
    """Inside the VNet's address space, and not one of the addresses Azure reserves in an IPv4 subnet."""
    props = vnet.get("properties") or {}
    space = _networks((props.get("addressSpace") or {}).get("addressPrefixes") or [])
    if not any(address.version == net.version and address in net for net in space):
        shown = ", ".join(map(str, space)) or "empty"
        raise bad_request(
            "IpOutsideVirtualNetwork",
            f"{address} is not in the address space of virtual network {vnet.get('name')} ({shown})",
            target,
        )
    for subnet in props.get("subnets") or []:
        subnet_props = subnet.get("properties") or {}
        prefixes = subnet_props.get("addressPrefixes") or [subnet_props.get("addressPrefix") or ""]
        for net in _networks(prefixes):
            if net.version != 4 or address not in net or net.prefixlen > 29:
                continue
            offset = int(address) - int(net.network_address)
            if offset < 4 or address == net.broadcast_address:
                raise bad_request(
                    "ReservedIpAddress",
                    f"{address} is reserved by Azure in subnet {subnet.get('name')} ({net}): the first four "
                    "addresses and the last one of a subnet cannot be assigned",
                    target,
                )


def default_address_name(address: IpAddress) -> str:
    """`manual-10-0-0-5` / `manual-fd00--5`: readable, valid for Azure, never poolsync's own shape."""
    return "manual-" + re.sub(r"[.:]", "-", str(address)).strip("-")


def parse_address_ref(value: str | None) -> tuple[str | None, str | None]:
    """`{address}` route segment: (canonical IP, None) or (None, name)."""
    value = value or ""
    try:
        return str(parse_ip(value, "address")), None
    except ApiError:
        pass
    if AZURE_NAME_RE.match(value):
        return None, value
    raise bad_request(
        "InvalidAddress", f"{value[:100]!r} is neither an IP address nor an address name", "address"
    )


def find_entry(snapshot: PoolSnapshot, ip: str | None, name: str | None) -> PoolAddress | None:
    for entry in snapshot.addresses:
        if name is not None and entry.name.lower() == name.lower():
            return entry
        if ip is not None and normal_ip(entry.ip_address) == ip:
            return entry
    return None


@dataclass(frozen=True)
class RequestedAddress:
    name: str
    ip: IpAddress
    admin_state: str
    vnet_id: str | None
    subnet_id: str | None
    target: str  # where in the body it came from, for errors


_ADDRESS_FIELD_ALIASES = {
    "name": "name",
    "ipAddress": "ipAddress", "ip_address": "ipAddress", "ip-address": "ipAddress",
    "virtualNetwork": "virtualNetwork",
    "virtual_network": "virtualNetwork",
    "virtual-network": "virtualNetwork",
    "subnet": "subnet",
    "adminState": "adminState", "admin_state": "adminState", "admin-state": "adminState",
}


def _ref_id(value: JSON, target: str, want_type: str, want_child: str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict) and set(value) == {"id"}:
        value = value["id"]
    if not isinstance(value, str):
        raise bad_request("InvalidField", "must be a resource id (or {\"id\": ...})", target)
    try:
        rid = ResourceId.parse(value)
    except InvalidResourceId as error:
        raise bad_request("InvalidResourceId", str(error), target) from None
    if rid.type.lower() != want_type.lower() or (rid.child_type or "").lower() != (want_child or "").lower():
        raise bad_request("InvalidResourceId", f"is a {rid.full_type} id", target)
    return str(rid)


def parse_addresses(document: JSON) -> list[RequestedAddress]:
    """One address object, or a list of them (the shape of az's --backend-address-config-file)."""
    single = isinstance(document, dict)
    items = [document] if single else document
    if not isinstance(items, list):
        raise bad_request("InvalidBody", "expected an address object or a list of them", "body")
    if not items:
        raise bad_request("InvalidBody", "the list of addresses is empty", "body")
    if len(items) > MAX_ADDRESSES_PER_REQUEST:
        raise bad_request("InvalidBody", f"at most {MAX_ADDRESSES_PER_REQUEST} addresses per request", "body")
    result: list[RequestedAddress] = []
    seen_names: dict[str, str] = {}
    seen_ips: dict[str, str] = {}
    for position, item in enumerate(items):
        prefix = "" if single else f"[{position}]."
        if not isinstance(item, dict):
            raise bad_request("InvalidBody", "each address must be an object", prefix.rstrip(".") or "body")
        fields: dict[str, tuple[str, JSON]] = {}
        for key, value in item.items():
            canonical = _ADDRESS_FIELD_ALIASES.get(key)
            if canonical is None:
                raise bad_request(
                    "UnknownField",
                    f"unknown field {key!r} (allowed: name, ipAddress, virtualNetwork, subnet, adminState)",
                    prefix + key,
                )
            if canonical in fields:
                raise bad_request("InvalidField", f"{key!r} repeats {fields[canonical][0]!r}", prefix + key)
            fields[canonical] = (key, value)
        if "ipAddress" not in fields:
            raise bad_request("MissingField", "ipAddress is required", prefix + "ipAddress")
        ip = parse_ip(fields["ipAddress"][1], prefix + "ipAddress")
        name = fields.get("name", ("name", None))[1]
        if name is None:
            name = default_address_name(ip)
        elif not isinstance(name, str) or not AZURE_NAME_RE.match(name):
            raise bad_request(
                "InvalidField",
                "name must be 1-80 letters, digits, _ . -, start with a letter or digit and end with a "
                "letter, digit or _",
                prefix + "name",
            )
        elif name.lower().startswith(PREFIX):
            raise bad_request("InvalidField", f"names starting with {PREFIX!r} are reserved for poolsync",
                              prefix + "name")
        admin_state = fields.get("adminState", ("adminState", ADMIN_NONE))[1]
        if admin_state not in ADMIN_STATES:
            raise bad_request("InvalidField", f"adminState must be one of {', '.join(ADMIN_STATES)}",
                              prefix + "adminState")
        vnet_id = _ref_id(fields.get("virtualNetwork", ("", None))[1], prefix + "virtualNetwork",
                          "virtualNetworks", None)
        subnet_id = _ref_id(fields.get("subnet", ("", None))[1], prefix + "subnet",
                            "virtualNetworks", "subnets")
        if vnet_id and subnet_id and id_key(vnet_of_subnet(subnet_id)) != id_key(vnet_id):
            raise bad_request("InvalidField", "subnet is not in virtualNetwork", prefix + "subnet")
        for seen, key, label in ((seen_names, name.lower(), "name"), (seen_ips, str(ip), "ipAddress")):
            if key in seen:
                raise bad_request("DuplicateInRequest", f"{label} {key} appears twice in the request",
                                  prefix + label)
            seen[key] = prefix + label
        result.append(RequestedAddress(name, ip, admin_state, vnet_id, subnet_id, prefix))
    return result
