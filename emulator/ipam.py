"""Address arithmetic: parsing, containment and dynamic allocation inside subnets."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from emulator.errors import ArmError, bad_request

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Azure reserves the network address, the next three (gateway, DNS) and the broadcast address.
RESERVED_AT_START = 4


def parse_prefix(text: object, field: str) -> IpNetwork:
    if not isinstance(text, str):
        raise bad_request("InvalidAddressPrefixFormat", f"Address prefix in {field} must be a string.")
    try:
        return ipaddress.ip_network(text, strict=True)
    except ValueError as exc:
        raise bad_request(
            "InvalidAddressPrefixFormat", f"Address prefix {text} in {field} does not have a valid format."
        ) from exc


def parse_ip(text: object, field: str) -> IpAddress:
    if not isinstance(text, str):
        raise bad_request("InvalidIPAddressFormat", f"IP address in {field} must be a string.")
    try:
        return ipaddress.ip_address(text)
    except ValueError as exc:
        raise bad_request(
            "InvalidIPAddressFormat", f"IP address '{text}' in {field} is not a valid IP address."
        ) from exc


def within_any(ip: IpAddress, networks: Iterable[IpNetwork]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def usable_range(network: IpNetwork) -> tuple[int, int]:
    """First and last assignable host (as ints) of a subnet."""
    first = int(network.network_address) + RESERVED_AT_START
    last = int(network.broadcast_address) - (1 if network.version == 4 else 0)
    return first, last


def allocate(network: IpNetwork, used: set[str], hint: int | None) -> tuple[str, int]:
    """Next free address of `network` at or after `hint` (wrapping); returns (ip, next hint)."""
    first, last = usable_range(network)
    if last < first:
        raise subnet_full(network)
    start = hint if hint is not None and first <= hint <= last else first
    size = last - first + 1
    for step in range(size):
        candidate = first + (start - first + step) % size
        text = str(ipaddress.ip_address(candidate))
        if text not in used:
            return text, candidate + 1
    raise subnet_full(network)


def subnet_full(network: IpNetwork) -> ArmError:
    return bad_request("SubnetIsFull", f"Subnet with address prefix {network} does not have enough capacity.")
