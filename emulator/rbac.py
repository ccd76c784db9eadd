"""Role assignments: which scopes a principal may read or write.

Off by default (every caller may do everything). Once any assignment exists, a
principal may act only inside its scopes, as with Azure RBAC:

* a scope is a subscription, a resource group or a resource id, and covers
  everything below it (ids compare case-insensitively);
* `write` scopes also grant read, as the Contributor role includes `*/read`;
* list calls silently return only the items the caller may read (ARM filters, it
  does not fail); GET / PUT / PATCH / DELETE outside the scopes -> 403
  `AuthorizationFailed` in ARM's message shape.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from emulator.errors import ArmError

READ = "read"
WRITE = "write"
DELETE = "delete"


def _scope_key(scope: str) -> str:
    key = scope.strip().rstrip("/").lower()
    if not key.startswith("/subscriptions/"):
        raise ValueError(f"a role assignment scope must start with /subscriptions/: {scope!r}")
    return key


def covers(scope_key: str, resource_id: str) -> bool:
    key = resource_id.rstrip("/").lower()
    return key == scope_key or key.startswith(scope_key + "/")


@dataclass(frozen=True)
class Assignment:
    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()

    def allows(self, access: str, resource_id: str) -> bool:
        scopes = self.write if access != READ else self.read + self.write
        return any(covers(scope, resource_id) for scope in scopes)


def action_name(full_type: str, access: str) -> str:
    """ARM's action for an access, e.g. `Microsoft.Network/loadBalancers/backendAddressPools/write`."""
    return f"{full_type}/{access}"


def access_for(method: str) -> str:
    return {"GET": READ, "HEAD": READ, "DELETE": DELETE}.get(method.upper(), WRITE)


@dataclass
class RoleAssignments:
    _by_principal: dict[str, Assignment] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def enabled(self) -> bool:
        return bool(self._by_principal)

    def assign(self, principal: str, read: Iterable[str] = (), write: Iterable[str] = ()) -> None:
        """Give `principal` these scopes (replacing what it had)."""
        if not principal:
            raise ValueError("a role assignment needs a principal")
        assignment = Assignment(tuple(_scope_key(s) for s in read), tuple(_scope_key(s) for s in write))
        with self._lock:
            self._by_principal[principal] = assignment

    def clear(self) -> None:
        """Back to no RBAC: everything allowed."""
        with self._lock:
            self._by_principal.clear()

    def allows(self, principal: str, access: str, resource_id: str) -> bool:
        with self._lock:
            if not self._by_principal:
                return True
            assignment = self._by_principal.get(principal)
        return assignment is not None and assignment.allows(access, resource_id)

    def can_read(self, principal: str, resource_id: str) -> bool:
        return self.allows(principal, READ, resource_id)

    def describe(self) -> dict[str, dict[str, list[str]]]:
        with self._lock:
            return {
                principal: {"read": list(a.read), "write": list(a.write)}
                for principal, a in self._by_principal.items()
            }

    def check(self, principal: str, client: str, method: str, full_type: str, resource_id: str) -> None:
        """Raise 403 AuthorizationFailed unless the principal may do `method` on `resource_id`."""
        access = access_for(method)
        if self.allows(principal, access, resource_id):
            return
        raise ArmError(
            403,
            "AuthorizationFailed",
            f"The client '{client}' with object id '{principal}' does not have authorization to perform "
            f"action '{action_name(full_type, access)}' over scope '{resource_id}' or the scope is "
            "invalid. If access was recently granted, please refresh your credentials.",
        )


def guarded_scope(action: str, resource_id: str) -> str | None:
    """The scope a request must be authorized on, or None when ARM filters (top-level lists) or
    does not check per resource (operation polls)."""
    if action in ("resource", "tags", "action") or (action == "collection" and resource_id):
        return resource_id
    return None
