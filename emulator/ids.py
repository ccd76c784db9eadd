"""The emulator's own ARM resource-id parsing (it shares no code with poolsync's `shared/`,
so a parsing bug in one cannot hide in the other).

Two levels are served: `/subscriptions/S/resourceGroups/G/providers/NS/type/name` and one
child `.../childType/childName`. Literal segments compare case-insensitively; `key()` is the
lower-cased form used as dictionary key, `str()` keeps the caller's spelling of names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# resource group: letters, digits, '.', '_', '-', '(', ')', up to 90; resource names: up to 80
_GROUP = r"[\w.()\-]{1,90}"
_NAME = r"[\w.\-]{1,80}"
_PATTERN = re.compile(
    rf"/subscriptions/(?P<subscription>[\w\-]+)/resourcegroups/(?P<group>{_GROUP})"
    rf"/providers/(?P<namespace>\w+\.\w+)/(?P<type>\w+)/(?P<name>{_NAME})"
    rf"(?:/(?P<child_type>\w+)/(?P<child_name>{_NAME}))?",
    re.IGNORECASE | re.ASCII,
)


class InvalidResourceId(ValueError):
    """Not a resource id the emulator serves."""


@dataclass(frozen=True)
class ResourceId:
    subscription: str
    resource_group: str
    namespace: str
    type: str
    name: str
    child_type: str | None = None
    child_name: str | None = None

    @classmethod
    def parse(cls, text: str) -> ResourceId:
        if not isinstance(text, str):
            raise InvalidResourceId(f"a resource id is a string, not {type(text).__name__}")
        match = _PATTERN.fullmatch(text.rstrip("/"))
        if match is None:
            raise InvalidResourceId(f"not a resource id: {text[:200]!r}")
        parts = match.groupdict()
        return cls(
            parts["subscription"],
            parts["group"],
            parts["namespace"],
            parts["type"],
            parts["name"],
            parts["child_type"],
            parts["child_name"],
        )

    @property
    def full_type(self) -> str:
        types = [self.namespace, self.type] + ([self.child_type] if self.child_type else [])
        return "/".join(t for t in types if t)

    @property
    def parent(self) -> ResourceId:
        """The top-level resource (for a pool: its load balancer; for a top-level id: itself)."""
        return ResourceId(self.subscription, self.resource_group, self.namespace, self.type, self.name)

    def key(self) -> str:
        return str(self).lower()

    def __str__(self) -> str:
        text = (
            f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
            f"/providers/{self.namespace}/{self.type}/{self.name}"
        )
        return f"{text}/{self.child_type}/{self.child_name}" if self.child_type else text


def id_key(resource_id: str) -> str:
    """What two spellings of one id have in common (ARM ids are case-insensitive)."""
    return resource_id.rstrip("/").lower()


def vnet_of_subnet(subnet_id: str) -> str:
    """`.../virtualNetworks/v/subnets/s` -> `.../virtualNetworks/v` (in the caller's spelling)."""
    index = subnet_id.lower().rfind("/subnets/")
    if index < 0:
        raise InvalidResourceId(f"not a subnet id: {subnet_id[:200]!r}")
    return subnet_id[:index]
