"""Rules by virtual network and CIDR range: one ipconfig costs a dict lookup plus a bisect.

Per network and IP version the CIDR ranges are cut into elementary intervals (sorted boundaries), each
listing the rules covering it. Generic over anything shaped like a rule, so the rules module can build
it without importing the membership engine (that import used to be a cycle).
"""

from __future__ import annotations

import socket
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Sequence
from ipaddress import IPv4Network, IPv6Network
from typing import Generic, Protocol, TypeVar


class IndexableRule(Protocol):
    @property
    def index(self) -> int: ...

    @property
    def vnet_key(self) -> str: ...

    @property
    def cidrs(self) -> tuple[IPv4Network | IPv6Network, ...]: ...


R = TypeVar("R", bound=IndexableRule)


class _RangeIndex(Generic[R]):
    """Rules covering each elementary interval of one IP version in one virtual network."""

    def __init__(self, ranges: Sequence[tuple[int, int, R]]) -> None:
        starts: dict[int, list[R]] = defaultdict(list)
        stops: dict[int, list[R]] = defaultdict(list)
        for first, last, rule in ranges:
            starts[first].append(rule)
            stops[last + 1].append(rule)
        self.boundaries = sorted(starts.keys() | stops.keys())
        self.covering: list[tuple[R, ...]] = []
        active: dict[int, list[R]] = {}  # rule index -> one entry per covering CIDR of that rule
        shared: dict[tuple[int, ...], tuple[R, ...]] = {}
        for boundary in self.boundaries:
            for rule in stops.get(boundary, ()):
                active[rule.index].pop()
                if not active[rule.index]:
                    del active[rule.index]
            for rule in starts.get(boundary, ()):
                active.setdefault(rule.index, []).append(rule)
            key = tuple(sorted(active))
            if key not in shared:  # many intervals share a rule list: keep one tuple per distinct list
                shared[key] = tuple(active[index][0] for index in key)
            self.covering.append(shared[key])

    def find(self, value: int) -> tuple[R, ...]:
        position = bisect_right(self.boundaries, value) - 1
        return self.covering[position] if position >= 0 else ()


class MembershipIndex(Generic[R]):
    """Rules by virtual network key, then by IP version. Built once per RuleSet (`membership_index`)."""

    def __init__(self, rules: Iterable[R]) -> None:
        by_vnet: dict[str, dict[int, list[tuple[int, int, R]]]] = defaultdict(lambda: {4: [], 6: []})
        for rule in rules:
            for cidr in rule.cidrs:
                by_vnet[rule.vnet_key][cidr.version].append(
                    (int(cidr.network_address), int(cidr.broadcast_address), rule)
                )
        self._by_vnet = {
            vnet: {version: _RangeIndex(ranges) for version, ranges in versions.items() if ranges}
            for vnet, versions in by_vnet.items()
        }

    def rules_for(self, vnet_key: str, ip_address: str) -> tuple[R, ...]:
        """Rules whose virtual network and CIDRs contain this address (filters not yet applied)."""
        versions = self._by_vnet.get(vnet_key)
        if versions is None:
            return ()
        parsed = _ip_to_int(ip_address)
        if parsed is None:
            return ()
        version, value = parsed
        ranges = versions.get(version)
        return ranges.find(value) if ranges is not None else ()


def _ip_to_int(text: str) -> tuple[int, int] | None:
    # inet_pton is several times faster than ipaddress.ip_address on the hot path
    family, version = (socket.AF_INET6, 6) if ":" in text else (socket.AF_INET, 4)
    try:
        return version, int.from_bytes(socket.inet_pton(family, text), "big")
    except OSError:
        return None
