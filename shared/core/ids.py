"""Strict parsing of Azure Resource Manager resource ids.

ARM ids are case-insensitive; `key()` gives the lower-cased form used for
comparisons and dictionary keys, while `str()` keeps the original spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shared.errors import InputError

_SEGMENT = r"[A-Za-z0-9._()\-]{1,90}"
_NAME = r"[A-Za-z0-9._\-]{1,80}"
_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_ID_RE = re.compile(
    rf"^/subscriptions/(?P<sub>{_GUID})/resourceGroups/(?P<rg>{_SEGMENT})"
    rf"/providers/(?P<ns>[A-Za-z]+\.[A-Za-z]+)/(?P<type>[A-Za-z]+)/(?P<name>{_NAME})"
    rf"(?:/(?P<child_type>[A-Za-z]+)/(?P<child_name>{_NAME}))?$",
    re.IGNORECASE | re.ASCII,  # ARM's literal segments are case-insensitive; ASCII keeps K != Kelvin sign
)


class InvalidResourceId(InputError, ValueError):
    """Raised when a string is not a well-formed ARM resource id."""


@dataclass(frozen=True, slots=True)
class ResourceId:
    subscription: str
    resource_group: str
    namespace: str
    type: str
    name: str
    child_type: str | None = None
    child_name: str | None = None

    @classmethod
    def parse(cls, value: str) -> ResourceId:
        if not isinstance(value, str):
            raise InvalidResourceId(f"resource id must be a string, got {type(value).__name__}")
        match = _ID_RE.match(value.rstrip("/"))
        if not match:
            raise InvalidResourceId(f"not a resource id: {value[:200]!r}")
        return cls(
            subscription=match["sub"],
            resource_group=match["rg"],
            namespace=match["ns"],
            type=match["type"],
            name=match["name"],
            child_type=match["child_type"],
            child_name=match["child_name"],
        )

    @property
    def full_type(self) -> str:
        base = f"{self.namespace}/{self.type}"
        return f"{base}/{self.child_type}" if self.child_type else base

    @property
    def parent(self) -> ResourceId:
        """The top-level resource (e.g. the load balancer of a backend pool)."""
        return ResourceId(self.subscription, self.resource_group, self.namespace, self.type, self.name)

    def key(self) -> str:
        return str(self).lower()

    def __str__(self) -> str:
        text = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{self.namespace}/{self.type}/{self.name}"
        )
        if self.child_type:
            text += f"/{self.child_type}/{self.child_name}"
        return text


def id_key(resource_id: str) -> str:
    """Comparison key of an ARM id (ids are case-insensitive)."""
    return resource_id.rstrip("/").lower()


def vnet_of_subnet(subnet_id: str) -> str:
    """`.../virtualNetworks/v/subnets/s` -> `.../virtualNetworks/v`."""
    marker = "/subnets/"
    index = subnet_id.lower().rfind(marker)
    if index < 0:
        raise InvalidResourceId(f"not a subnet id: {subnet_id[:200]!r}")
    return subnet_id[:index]
