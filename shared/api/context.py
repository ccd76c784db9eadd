"""What the API may touch: pools named by the rules plus POOLSYNC_MANUAL_POOLS (writable here, never
reconciled), their subscriptions, and pool ids from route segments or the short names operators use.
Everything else is 403 before any Azure call, so a path parameter can never steer a request elsewhere."""

from __future__ import annotations

import re
from collections.abc import Mapping

from shared import settings as app_settings
from shared.api.http import (
    JSON,
    ApiError,
    ApiRequest,
    bad_request,
)
from shared.app.runtime import Runtime
from shared.core.ids import _GUID, _NAME, _SEGMENT, InvalidResourceId, ResourceId, id_key

MANUAL_POOLS_ENV = app_settings.MANUAL_POOLS.name
POOL_ROUTE_PARAMS = ("subscriptionId", "resourceGroup", "loadBalancer", "pool")


def parse_manual_pools(raw: str | None) -> dict[str, str]:
    """POOLSYNC_MANUAL_POOLS: comma-separated backend pool ids, strictly parsed."""
    pools: dict[str, str] = {}
    for position, text in enumerate((raw or "").split(",")):
        text = text.strip()
        if not text:
            continue
        try:
            rid = ResourceId.parse(text)
        except InvalidResourceId as error:
            raise ValueError(f"{MANUAL_POOLS_ENV} entry {position + 1}: {error}") from None
        if rid.full_type.lower() != "microsoft.network/loadbalancers/backendaddresspools":
            raise ValueError(f"{MANUAL_POOLS_ENV} entry {position + 1} is a {rid.full_type} id, not a pool")
        pools.setdefault(rid.key(), str(rid))
    return pools


class ApiContext:
    """The runtime plus what the API derives from settings: allowed pools and subscriptions."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings
        self.rule_pools = {id_key(pool): pool for pool in runtime.rules.managed_pool_ids()}
        try:
            manual = parse_manual_pools(app_settings.MANUAL_POOLS.raw(settings))
        except ValueError as error:
            raise ApiError(503, "ConfigurationError", str(error), MANUAL_POOLS_ENV) from None
        # A pool named by the rules is reconciled, whatever the manual list says.
        self.manual_pools = {key: pool for key, pool in manual.items() if key not in self.rule_pools}
        ids = [*self.rule_pools.values(), *self.manual_pools.values()]
        ids += [rule.virtual_network_id for rule in runtime.rules.rules]
        self.subscriptions = {ResourceId.parse(value).subscription.lower() for value in ids}

    def all_pools(self) -> list[tuple[str, str]]:
        """(pool id, "rules" | "manual") in a stable order: rule order, then the manual list."""
        return [(pool, "rules") for pool in self.rule_pools.values()] + [
            (pool, "manual") for pool in self.manual_pools.values()
        ]

    def check_subscription(self, subscription: str, target: str) -> None:
        if subscription.lower() not in self.subscriptions:
            raise ApiError(
                403,
                "SubscriptionNotConfigured",
                f"subscription {subscription} is not configured for poolsync",
                target,
            )

    def allowed_pool(self, rid: ResourceId, target: str) -> tuple[str, str]:
        """(canonical pool id, "rules" | "manual"), or 403."""
        self.check_subscription(rid.subscription, target)
        key = rid.key()
        if key in self.rule_pools:
            return self.rule_pools[key], "rules"
        if key in self.manual_pools:
            return self.manual_pools[key], "manual"
        raise ApiError(
            403,
            "PoolNotManaged",
            f"pool {rid} is neither named by the rules nor listed in {MANUAL_POOLS_ENV}",
            target,
        )

    def pool_from_route(self, request: ApiRequest) -> tuple[str, str]:
        return self.allowed_pool(pool_id_from_route(request.route_params), "pool")

    def resolve_short_name(self, text: str, target: str) -> str:
        """The managed pool `<load balancer>/<pool>` or a unique `<pool>` names, as operators write it."""
        wanted = text.strip("/").lower()
        known = [pool for pool, _ in self.all_pools()]
        matches = [p for p in known
                   if wanted in (short_pool_name(p).lower(), (ResourceId.parse(p).child_name or "").lower())]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            names = ", ".join(short_pool_name(p) for p in known) or "none"
            raise ApiError(403, "PoolNotManaged",
                           f"no managed pool is called {text[:100]!r} (managed: {names})", target)
        raise bad_request("AmbiguousPool", f"{text[:100]!r} names several pools; use <load balancer>/<pool>: "
                          + ", ".join(short_pool_name(p) for p in matches), target)

    def parse_pool_id(self, value: JSON, target: str) -> tuple[str, str]:
        """A pool id, `<load balancer>/<pool>` or a unique `<pool>`: (canonical id, source), or 4xx."""
        if not isinstance(value, str):
            raise bad_request("InvalidField", "must be a backend pool resource id", target)
        if value and not value.startswith("/") and value.count("/") <= 1:
            value = self.resolve_short_name(value, target)
        try:
            rid = ResourceId.parse(value)
        except InvalidResourceId as error:
            raise bad_request("InvalidResourceId", str(error), target) from None
        if rid.full_type.lower() != "microsoft.network/loadbalancers/backendaddresspools":
            raise bad_request("InvalidResourceId", f"is a {rid.full_type} id, not a backend pool id", target)
        return self.allowed_pool(rid, target)


_ROUTE_PATTERNS = {  # \Z, not $: "$" also matches before a trailing line break
    "subscriptionId": re.compile(rf"^{_GUID}\Z"),
    "resourceGroup": re.compile(rf"^{_SEGMENT}\Z"),
    "loadBalancer": re.compile(rf"^{_NAME}\Z"),
    "pool": re.compile(rf"^{_NAME}\Z"),
}


def short_pool_name(pool_id: str) -> str:
    rid = ResourceId.parse(pool_id)
    return f"{rid.name}/{rid.child_name}"


def pool_id_from_route(params: Mapping[str, str]) -> ResourceId:
    """The pool id the four route segments spell, each segment checked on its own (no traversal)."""
    values = []
    for name in POOL_ROUTE_PARAMS:
        value = params.get(name) or ""
        # Azure names never end with "."; refusing it also rules out "." and ".." segments.
        if not _ROUTE_PATTERNS[name].match(value) or value.endswith("."):
            raise bad_request("InvalidResourceId", f"{value[:100]!r} is not a valid {name}", name)
        values.append(value)
    sub, rg, lb, pool = values
    return ResourceId(sub, rg, "Microsoft.Network", "loadBalancers", lb, "backendAddressPools", pool)
