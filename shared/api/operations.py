"""The HTTP API for runbooks: request parsing and validation, authorization, and the operations.

No azure.functions types here: `handlers/http_api.py` turns a `func.HttpRequest` into an `ApiRequest`,
calls `handle(operation, request)` and turns the `ApiResponse` back. Every error leaves as
`{"error": {"code", "message", "target"}}` with its status (see shared/api/openapi.json).

What may be touched: pools named by the rules, plus pools listed in POOLSYNC_MANUAL_POOLS (writable
here, never reconciled). Everything else is 403 before any Azure call, so a path parameter can
never steer a request at another resource. Manual adds/removes/admin changes go through
`PoolWriter.apply(pool_id, plan_manual...)`, so ETags, retries and the blast-radius guard behave
exactly as for the reconciler.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import logging
import re
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, HttpResponseError, ResourceNotFoundError
from azure.core.rest import HttpRequest

from shared import settings as app_settings
from shared.app.health import SingleFlightCache, health_cache_seconds
from shared.app.runtime import Runtime, get_runtime
from shared.audit.collect import AuditSettings, run_audit
from shared.audit.jobs import audit_store
from shared.azure.retry import RetrySettings, call_with_retry, classify
from shared.core.arm_json import pool_from_json
from shared.core.ids import _GUID, _NAME, _SEGMENT, InvalidResourceId, ResourceId, id_key, vnet_of_subnet
from shared.core.models import ADMIN_DOWN, ADMIN_NONE, PoolAddress, PoolSnapshot, normal_ip
from shared.core.naming import AZURE_NAME_RE, PREFIX, is_managed_name
from shared.core.plan import ADMIN_STATES, GuardRefused, PlanInputError, PoolPlan, plan_manual
from shared.core.rules import RulesError
from shared.errors import PoolsyncError
from shared.storage.account import StorageNotConfigured
from shared.storage.audit_jobs import is_job_id
from shared.storage.report_store import DrainLedger

log = logging.getLogger("poolsync.http")

MAX_BODY_BYTES = 256 * 1024
MAX_ADDRESSES_PER_REQUEST = 1000
MANUAL_POOLS_ENV = app_settings.MANUAL_POOLS.name
REQUIRED_ROLE_ENV = app_settings.REQUIRED_ROLE.name
VERSION_ENV = app_settings.VERSION.name
PRINCIPAL_HEADER = "x-ms-client-principal"
OPENAPI_PATH = Path(__file__).with_name("openapi.json")
DEFAULT_RETRY_AFTER = 30  # seconds, when Azure throttled us without saying for how long
POOL_ROUTE_PARAMS = ("subscriptionId", "resourceGroup", "loadBalancer", "pool")
ROLE_CLAIM_TYPES = frozenset({"roles", "role", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})

JSON = Any


# --- request / response / error ------------------------------------------------------------------


@dataclass(frozen=True)
class ApiRequest:
    method: str
    route_params: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # keys lower-cased
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class ApiResponse:
    status: int
    body: JSON
    headers: dict[str, str] = field(default_factory=dict)

    def json_text(self) -> str:
        return json.dumps(self.body, indent=2, sort_keys=False)


class ApiError(PoolsyncError):
    """An answer other than success; `extra` goes next to `error` in the body (e.g. the refused plan)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        target: str | None = None,
        *,
        extra: Mapping[str, JSON] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})

    def response(self) -> ApiResponse:
        body = {"error": {"code": self.code, "message": self.message, "target": self.target}, **self.extra}
        return ApiResponse(self.status, body, self.headers)


def bad_request(code: str, message: str, target: str | None) -> ApiError:
    return ApiError(400, code, message, target)


# --- parsing helpers -----------------------------------------------------------------------------


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, JSON]]) -> dict[str, JSON]:
    result: dict[str, JSON] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def parse_json_body(request: ApiRequest, *, required: bool) -> JSON:
    """The body as JSON; strict (no duplicate keys, no NaN). None when empty and not required."""
    if not request.body.strip():
        if required:
            raise bad_request("MissingBody", "a JSON request body is required", "body")
        return None
    try:
        text = request.body.decode("utf-8-sig")
        return json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except UnicodeDecodeError:
        raise bad_request("InvalidJson", "the body is not UTF-8 text", "body") from None
    except json.JSONDecodeError as error:
        raise bad_request(
            "InvalidJson", f"invalid JSON at line {error.lineno} column {error.colno}: {error.msg}", "body"
        ) from None
    except ValueError as error:
        raise bad_request("InvalidJson", f"invalid JSON: {error}", "body") from None
    except RecursionError:
        raise bad_request("InvalidJson", "the JSON is nested too deeply", "body") from None


def _check_fields(document: Mapping[str, JSON], allowed: Iterable[str], prefix: str = "") -> None:
    allowed = list(allowed)
    for key in document:
        if key not in allowed:
            raise bad_request(
                "UnknownField", f"unknown field {key!r} (allowed: {', '.join(sorted(allowed))})", prefix + key
            )


def _bool_field(document: Mapping[str, JSON], key: str, default: bool, prefix: str = "") -> bool:
    value = document.get(key, default)
    if not isinstance(value, bool):
        raise bad_request("InvalidField", f"{key} must be true or false", prefix + key)
    return value


def query_bool(request: ApiRequest, name: str, default: bool) -> bool:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise bad_request("InvalidQueryParameter", f"{name} must be true or false, got {raw[:40]!r}", name)


@dataclass(frozen=True)
class WriteOptions:
    wait: bool = True
    force: bool = False
    reason: str | None = None

    @classmethod
    def from_query(cls, request: ApiRequest) -> WriteOptions:
        return cls(
            query_bool(request, "wait", True),
            query_bool(request, "force", False),
            _force_reason(query_bool(request, "force", False), request.query.get("reason")),
        )


def _force_reason(force: bool, reason: JSON) -> str | None:
    # The reason goes into logs verbatim: no control characters, so it cannot forge log lines.
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500 or not reason.isprintable()):
        raise bad_request(
            "InvalidField", "reason must be at most 500 characters of text without control characters",
            "reason",
        )
    reason = (reason or "").strip() or None
    if force and reason is None:
        raise bad_request("MissingField", "force needs a reason (it is logged with the override)", "reason")
    return reason


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


# --- the caller ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Principal:
    name: str
    roles: frozenset[str]


def client_principal(request: ApiRequest) -> Principal | None:
    """The caller App Service Authentication vouches for (base64 JSON in x-ms-client-principal).

    Only meaningful when App Service Authentication is enabled: it strips this header from incoming
    requests and sets its own, so callers cannot forge it.
    """
    raw = request.header(PRINCIPAL_HEADER)
    if not raw:
        return None
    try:
        padded = raw.strip() + "=" * (-len(raw.strip()) % 4)
        document = json.loads(base64.b64decode(padded, validate=True))
    except (binascii.Error, ValueError, RecursionError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("claims"), list):
        return None
    role_types = set(ROLE_CLAIM_TYPES)
    if isinstance(document.get("role_typ"), str):
        role_types.add(document["role_typ"])
    name_types = {"name", "preferred_username"}
    if isinstance(document.get("name_typ"), str):
        name_types.add(document["name_typ"])
    roles: set[str] = set()
    name = "unknown"
    for claim in document["claims"]:
        if not isinstance(claim, dict) or not isinstance(claim.get("val"), str) or not isinstance(
            claim.get("typ"), str
        ):
            continue
        if claim.get("typ") in role_types:
            roles.add(claim["val"])
        elif claim.get("typ") in name_types and name == "unknown" and claim["val"].isprintable():
            name = claim["val"]  # logged with every change: no control characters (cf. _force_reason)
    return Principal(name, frozenset(roles))


def authorize(request: ApiRequest, required_role: str | None) -> Principal | None:
    principal = client_principal(request)
    if not required_role:
        return principal
    if principal is None:
        raise ApiError(
            401,
            "Unauthenticated",
            f"this API requires a signed-in caller with the app role {required_role!r} "
            "(App Service Authentication must be enabled)",
            PRINCIPAL_HEADER,
        )
    if required_role not in principal.roles:
        raise ApiError(403, "Forbidden", f"the caller lacks the app role {required_role!r}", "role")
    return principal


# --- configuration: which pools the API may touch -----------------------------------------------


def required_role(settings: Mapping[str, str]) -> str | None:
    return app_settings.REQUIRED_ROLE.text(settings) or None


AUTH_ENABLED_ENV = app_settings.AUTH_ENABLED.name  # App Service sets it when App Service Authentication is on


def enforced_role(settings: Mapping[str, str]) -> str | None:
    """The required role, only where the principal header can be trusted: App Service Authentication strips
    a forged x-ms-client-principal; without it anyone with a key could claim any role, so fail closed."""
    role = required_role(settings)
    if role and app_settings.AUTH_ENABLED.text(settings).lower() != "true":
        raise ApiError(503, "AuthenticationNotConfigured",
                       f"{REQUIRED_ROLE_ENV} is set but App Service Authentication is not enabled "
                       f"({AUTH_ENABLED_ENV}), so the caller's identity cannot be trusted", None)
    return role


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
    """The runtime plus what the API derives from settings: allowed pools, subscriptions, role."""

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
        self.required_role = required_role(settings)
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


def _find_entry(snapshot: PoolSnapshot, ip: str | None, name: str | None) -> PoolAddress | None:
    for entry in snapshot.addresses:
        if name is not None and entry.name.lower() == name.lower():
            return entry
        if ip is not None and normal_ip(entry.ip_address) == ip:
            return entry
    return None


# --- ARM operations (wait=false) -----------------------------------------------------------------

_OPERATION_PATH_RE = re.compile(
    rf"^/subscriptions/(?P<sub>{_GUID})/providers/Microsoft\.(?:Network|Compute)/locations/[A-Za-z0-9]{{1,40}}"
    r"/(?:operations|operationResults)/[A-Za-z0-9-]{1,64}(?:\?api-version=[0-9A-Za-z.-]{1,32})?\Z"
)
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,600}$")


def operation_token(url: str | None, endpoint: str) -> str | None:
    """An opaque id for an LRO URL of the configured ARM endpoint (None for anything else)."""
    if not url:
        return None
    parsed, base = urlsplit(url), urlsplit(endpoint)
    if (parsed.scheme.lower(), parsed.netloc.lower()) != (base.scheme.lower(), base.netloc.lower()):
        return None
    path = parsed.path[len(base.path.rstrip("/")):] if base.path.strip("/") else parsed.path
    path_and_query = path + (f"?{parsed.query}" if parsed.query else "")
    if not _OPERATION_PATH_RE.match(path_and_query):
        return None
    return base64.urlsafe_b64encode(path_and_query.encode()).decode().rstrip("=")


def operation_path(token: str) -> tuple[str, str]:
    """(path and query, subscription) of a token made by `operation_token`, or 400."""
    error = bad_request("InvalidOperationId", "not an operation id issued by this API", "operationId")
    if not _TOKEN_RE.match(token or ""):
        raise error
    try:
        path = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode("ascii")
    except (binascii.Error, ValueError):
        raise error from None
    match = _OPERATION_PATH_RE.match(path)
    if not match:
        raise error
    return path, match["sub"]


def operation_link(token: str | None) -> dict[str, JSON] | None:
    if token is None:
        return None
    return {"id": token, "href": f"/api/operations/{token}", "status": "InProgress"}


# --- Azure errors --------------------------------------------------------------------------------


def azure_error(error: AzureError, target: str | None = None) -> ApiError:
    """What an Azure failure (after the retry policy gave up) means for the API's caller."""
    decision = classify(error)
    status = getattr(error, "status_code", None)
    code = getattr(getattr(error, "error", None), "code", None) or type(error).__name__
    message = (getattr(getattr(error, "error", None), "message", None) or str(error)).splitlines()[0][:500]
    if status == 404:
        return ApiError(404, "NotFound", f"Azure: {message}", target)
    if decision.retry:
        retry_after = int(decision.retry_after) if decision.retry_after else DEFAULT_RETRY_AFTER
        label = "AzureThrottled" if status in (429, 409) else "AzureUnavailable"
        return ApiError(
            503,
            label,
            f"Azure is busy or throttling ({code}); the retry deadline passed. Try again later.",
            target,
            headers={"Retry-After": str(max(retry_after, 1))},
        )
    if status in (400, 409):
        return ApiError(409, "AzureRejected", f"Azure refused the change ({code}): {message}", target)
    return ApiError(502, "AzureError", f"Azure call failed ({code}): {message}", target)


def _pool_not_found(error: AzureError, pool_id: str) -> ApiError:
    mapped = azure_error(error, "pool")
    if mapped.status == 404:
        return ApiError(404, "PoolNotFound", f"pool {pool_id} does not exist in Azure", "pool")
    return mapped


# --- rendering -----------------------------------------------------------------------------------


def plan_json(plan: PoolPlan) -> dict[str, JSON]:
    counts = plan.summary()
    return {
        "pool": counts.pop("pool"),
        "counts": counts,
        "diff": plan.render().splitlines(),
        "conflicts": [
            {"name": c.name, "ipAddress": c.ip_address, "reason": c.reason} for c in plan.conflicts
        ],
    }


def pool_path(pool_id: str) -> str:
    rid = ResourceId.parse(pool_id)
    return f"/api/pools/{rid.subscription}/{rid.resource_group}/{rid.name}/{rid.child_name}"


def _address_vnet(entry: PoolAddress, pool_vnet: str | None) -> str | None:
    if entry.vnet_id:
        return entry.vnet_id
    if entry.subnet_id:
        return vnet_of_subnet(entry.subnet_id)
    return pool_vnet


def member_json(entry: PoolAddress, pool_vnet: str | None = None, owner: JSON = None, rule: str | None = None
                ) -> dict[str, JSON]:
    return {
        "name": entry.name,
        "ipAddress": entry.ip_address,
        "adminState": entry.admin_state,
        "managed": is_managed_name(entry.name),
        "virtualNetwork": _address_vnet(entry, pool_vnet),
        "subnet": entry.subnet_id,
        "rule": rule,
        "owner": owner,
    }


# --- the operations ------------------------------------------------------------------------------

Operation = Callable[[ApiContext, ApiRequest], ApiResponse]


@cache
def app_version() -> str:
    explicit = app_settings.VERSION.raw(app_settings.app_settings())
    if explicit:
        return explicit
    try:
        with open(Path(__file__).parents[2] / "pyproject.toml", "rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


HEALTH_CACHE: SingleFlightCache[ApiResponse] = SingleFlightCache()


def health(
    runtime_provider: Callable[[], Runtime] = get_runtime,
    cache: SingleFlightCache[ApiResponse] = HEALTH_CACHE,
) -> ApiResponse:
    """Anonymous: version, whether the configuration loads, whether ARM answers. No ids, no messages.

    Checked at most once per POOLSYNC_HEALTH_CACHE_SECONDS per process (concurrent probes share the
    check in flight), so anonymous probes cannot spend the subscription's ARM read budget."""
    try:
        ttl = health_cache_seconds(app_settings.app_settings())
    except ValueError as error:
        log.error("configuration does not load: %s", error)
        return ApiResponse(503, {**_health_body(), "status": "unhealthy", "detail": "configuration"})
    checked = cache.get(lambda: _check_health(runtime_provider), ttl)
    body = {**checked.value.body, "checkAgeSeconds": round(checked.age_seconds, 1), "cacheSeconds": ttl}
    return ApiResponse(checked.value.status, body)


def _health_body() -> dict[str, JSON]:
    return {"status": "ok", "version": app_version(), "configLoaded": False, "azureReachable": False,
            "managedPools": 0}


def _check_health(runtime_provider: Callable[[], Runtime]) -> ApiResponse:
    body = _health_body()
    try:
        runtime = runtime_provider()
        context = ApiContext(runtime)
    except (RulesError, ValueError, ApiError) as error:
        log.error("configuration does not load: %s", error)
        body.update(status="unhealthy", detail="configuration")
        return ApiResponse(503, body)
    except Exception:
        log.exception("health check failed")
        body.update(status="unhealthy", detail="internal")
        return ApiResponse(503, body)
    body.update(configLoaded=True, managedPools=len(context.rule_pools) + len(context.manual_pools))
    first = next(iter(context.all_pools()), None)
    reachable, detail = True, None
    if first is not None:
        rid = ResourceId.parse(first[0])
        operations = runtime.clients.network(rid.subscription).load_balancers
        try:
            call_with_retry(
                lambda: operations.get(rid.resource_group, rid.name),
                settings=RetrySettings(deadline_seconds=10, max_attempts=1),
                stats=runtime.retry_stats,
                operation="health check",
            )
        except ResourceNotFoundError:
            pass  # ARM answered; a missing load balancer is a configuration matter, not reachability
        except AzureError as error:
            reachable, detail = False, classify(error).reason.split(":")[0]
    body["azureReachable"] = reachable
    if not reachable:
        body.update(status="unhealthy", detail=f"azure:{detail}")
        return ApiResponse(503, body)
    return ApiResponse(200, body)


def openapi_document() -> dict[str, JSON]:
    return json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


def get_openapi(context: ApiContext, request: ApiRequest) -> ApiResponse:
    return ApiResponse(200, openapi_document())


def _read_lb(context: ApiContext, lb_id: str) -> dict[str, JSON] | None:
    return context.runtime.inventory.load_balancer(lb_id)


def _pool_in_lb(lb: Mapping[str, JSON] | None, pool_id: str) -> dict[str, JSON] | None:
    if lb is None:
        return None
    for pool in (lb.get("properties") or {}).get("backendAddressPools") or []:
        if id_key(pool.get("id", "")) == id_key(pool_id):
            return pool
    return None


def list_pools(context: ApiContext, request: ApiRequest) -> ApiResponse:
    last = context.runtime.reconciler.journal.last()
    lbs: dict[str, dict[str, JSON] | None] = {}
    pools = []
    for pool_id, source in context.all_pools():
        rid = ResourceId.parse(pool_id)
        lb_key = rid.parent.key()
        if lb_key not in lbs:  # one GET per load balancer: it carries all its pools and the SKU
            lbs[lb_key] = _read_lb(context, str(rid.parent))
        lb = lbs[lb_key]
        raw = _pool_in_lb(lb, pool_id)
        entry: dict[str, JSON] = {
            "id": pool_id,
            "href": pool_path(pool_id),
            "source": source,
            "rules": [rule.name for rule in context.runtime.rules.rules_for_pool(pool_id)],
            "exists": raw is not None,
            "sku": ((lb or {}).get("sku") or {}).get("name"),
            "memberCount": 0,
            "managedCount": 0,
            "unmanagedCount": 0,
            "drainedCount": 0,
            "nicMemberCount": 0,
            "lastReconcile": last.get(id_key(pool_id)),
        }
        if raw is not None:
            snapshot = pool_from_json(raw)
            managed = sum(1 for a in snapshot.addresses if is_managed_name(a.name))
            entry.update(
                memberCount=len(snapshot.addresses),
                managedCount=managed,
                unmanagedCount=len(snapshot.addresses) - managed,
                drainedCount=sum(1 for a in snapshot.addresses if a.admin_state == ADMIN_DOWN),
                nicMemberCount=snapshot.nic_member_count,
            )
        pools.append(entry)
    return ApiResponse(200, {"pools": pools})


def _owners(context: ApiContext, snapshot: PoolSnapshot) -> dict[tuple[str, str], dict[str, JSON]]:
    """(vnet key, IP) -> the VM / NIC ipconfig holding that IP, from list calls of the VNets' subscriptions.

    List calls (two per subscription) instead of a GET per member: a pool may hold hundreds."""
    subscriptions = set()
    for entry in snapshot.addresses:
        vnet = _address_vnet(entry, snapshot.vnet_id)
        if vnet:
            subscription = ResourceId.parse(vnet).subscription.lower()
            if subscription in context.subscriptions:  # never read subscriptions poolsync is not set up for
                subscriptions.add(subscription)
    if not subscriptions:
        return {}
    inventory = context.runtime.inventory.subscriptions(subscriptions)
    owners: dict[tuple[str, str], dict[str, JSON]] = {}
    for nic in inventory.nics.values():
        vm = inventory.vms.get(id_key(nic.vm_id)) if nic.vm_id else None
        for config in nic.ip_configurations:
            if config.private_ip and config.vnet_id:
                owners[(id_key(config.vnet_id), normal_ip(config.private_ip) or "")] = {
                    "vmId": nic.vm_id,
                    "vmName": vm.name if vm else (nic.vm_id.rsplit("/", 1)[-1] if nic.vm_id else None),
                    "nicId": nic.id,
                    "nicName": nic.name,
                    "ipConfiguration": config.name,
                }
    return owners


def _lb_and_pool(context: ApiContext, pool_id: str) -> tuple[dict[str, JSON], dict[str, JSON]]:
    lb = _read_lb(context, str(ResourceId.parse(pool_id).parent))
    raw = _pool_in_lb(lb, pool_id)
    if lb is None or raw is None:
        raise ApiError(404, "PoolNotFound", f"pool {pool_id} does not exist in Azure", "pool")
    return lb, raw


def get_pool(context: ApiContext, request: ApiRequest) -> ApiResponse:
    pool_id, source = context.pool_from_route(request)
    lb, raw = _lb_and_pool(context, pool_id)
    sku = (lb.get("sku") or {}).get("name")
    snapshot = pool_from_json(raw, lb_sku=sku)
    owners = _owners(context, snapshot)
    index = context.runtime.rules.membership_index
    own_rules = {rule.name for rule in context.runtime.rules.rules_for_pool(pool_id)}
    members = []
    for entry in snapshot.addresses:
        vnet = _address_vnet(entry, snapshot.vnet_id)
        ip = normal_ip(entry.ip_address) or ""
        owner = owners.get((id_key(vnet), ip)) if vnet else None
        covering = [r.name for r in index.rules_for(id_key(vnet), ip) if r.name in own_rules] if vnet else []
        members.append(member_json(entry, snapshot.vnet_id, owner, covering[0] if covering else None))
    body = {
        "id": pool_id,
        "source": source,
        "sku": sku,
        "virtualNetwork": snapshot.vnet_id,
        "etag": snapshot.etag,
        "nicMemberCount": snapshot.nic_member_count,
        "rules": sorted(own_rules),
        "members": members,
    }
    return ApiResponse(200, body)


# -- manual changes --


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


def _pool_vnet(context: ApiContext, pool_id: str, snapshot: PoolSnapshot) -> str | None:
    """The one virtual network this IP-based pool holds addresses of, if anything says so yet."""
    if snapshot.vnet_id:
        return snapshot.vnet_id
    rules = context.runtime.rules.rules_for_pool(pool_id)
    if rules:
        return rules[0].virtual_network_id
    for entry in snapshot.addresses:
        vnet = _address_vnet(entry, None)
        if vnet:
            return vnet
    return None


def _check_pool_accepts_ips(lb: Mapping[str, JSON], snapshot: PoolSnapshot) -> None:
    sku = ((lb.get("sku") or {}).get("name") or "").lower()
    if sku != "standard":
        raise ApiError(
            409, "UnsupportedLoadBalancerSku",
            f"the load balancer is {sku or 'unknown'} SKU; IP-based backend pools need Standard", "pool",
        )
    if snapshot.nic_member_count:
        raise ApiError(
            409, "NicBasedPool",
            f"the pool has {snapshot.nic_member_count} NIC-based member(s); a pool cannot mix NIC- and "
            "IP-based members", "pool",
        )


def _check_rules(context: ApiContext, pool_id: str, vnet_id: str, wanted: RequestedAddress) -> None:
    """409 when the rules already say where this IP goes: poolsync adds and removes it itself."""
    hits = context.runtime.rules.membership_index.rules_for(id_key(vnet_id), str(wanted.ip))
    if not hits:
        return
    rule = hits[0]
    cidr = next((str(c) for c in rule.cidrs if c.version == wanted.ip.version and wanted.ip in c), "?")
    where = "this pool" if id_key(rule.pool_id) == id_key(pool_id) else f"pool {rule.pool_id}"
    raise ApiError(
        409,
        "ConflictsWithRule",
        f"{wanted.ip} is in {cidr} of rule {rule.name!r}, which assigns addresses there to {where}; "
        "poolsync manages it (tag the VM instead of adding it by hand)",
        wanted.target + "ipAddress",
    )


@dataclass
class _PlanProblem:
    """Set by a plan maker that must refuse; the writer then sees an empty plan and writes nothing."""

    error: ApiError | None = None


def _write(
    context: ApiContext,
    pool_id: str,
    make_plan: Callable[[PoolSnapshot, _PlanProblem], PoolPlan],
    options: WriteOptions,
    principal: str,
    action: str,
) -> tuple[ApiResponse, PoolPlan]:
    problem = _PlanProblem()

    def planner(snapshot: PoolSnapshot) -> PoolPlan:
        problem.error = None  # every attempt (after a 412) re-plans from a fresh read
        return make_plan(snapshot, problem)

    if options.force:
        log.warning("%s on %s by %s with force: %s", action, pool_id, principal, options.reason)
    try:
        result = context.runtime.writer.apply(
            pool_id, planner, force=options.force, force_reason=options.reason, wait=options.wait
        )
    except GuardRefused as refused:
        raise ApiError(
            422, "GuardRefused", f"{refused.reason}; repeat with force=true and a reason to override", "pool",
            extra={"plan": plan_json(refused.plan)},
        ) from None
    except PlanInputError as error:
        raise bad_request("InvalidField", str(error), "body") from None
    except AzureError as error:
        raise _pool_not_found(error, pool_id) from None
    if problem.error is not None:
        raise problem.error
    log.info("%s on %s by %s: %s", action, pool_id, principal, result.plan.summary(),
             extra={"pool": pool_id, "principal": principal, "plan": result.plan.summary()})
    body: dict[str, JSON] = {"pool": pool_id, "written": result.written, "plan": plan_json(result.plan)}
    token = operation_token(result.operation_url, context.runtime.clients.settings.endpoint)
    if result.written and not options.wait:
        body["operation"] = operation_link(token)
        headers = {"Location": f"/api/operations/{token}"} if token else {}
        return ApiResponse(202, body, headers), result.plan
    return ApiResponse(200, body), result.plan


def add_addresses(context: ApiContext, request: ApiRequest) -> ApiResponse:
    pool_id, _ = context.pool_from_route(request)
    options = WriteOptions.from_query(request)
    wanted = parse_addresses(parse_json_body(request, required=True))
    lb, raw = _lb_and_pool(context, pool_id)
    current = pool_from_json(raw)
    _check_pool_accepts_ips(lb, current)
    vnet_id = _pool_vnet(context, pool_id, current)
    for item in wanted:
        given = item.vnet_id or (vnet_of_subnet(item.subnet_id) if item.subnet_id else None)
        if given and vnet_id and id_key(given) != id_key(vnet_id):
            raise ApiError(409, "VirtualNetworkMismatch",
                           f"the pool holds addresses of {vnet_id} only", item.target + "virtualNetwork")
        vnet_id = vnet_id or given
    if vnet_id is None:
        raise bad_request("MissingField", "the pool has no virtual network yet: give virtualNetwork",
                          "virtualNetwork")
    context.check_subscription(ResourceId.parse(vnet_id).subscription, "virtualNetwork")
    vnet = context.runtime.inventory.virtual_network(vnet_id)
    if vnet is None:
        raise ApiError(404, "VirtualNetworkNotFound", f"virtual network {vnet_id} does not exist",
                       "virtualNetwork")
    for item in wanted:
        check_ip_in_vnet(item.ip, vnet, item.target + "ipAddress")
        _check_rules(context, pool_id, vnet_id, item)
    additions = [
        PoolAddress(item.name, str(item.ip), None if item.subnet_id else vnet_id, item.subnet_id,
                    item.admin_state)
        for item in wanted
    ]

    def make_plan(snapshot: PoolSnapshot, problem: _PlanProblem) -> PoolPlan:
        present = {entry.name.lower(): entry for entry in snapshot.addresses}
        # Re-sending an address that is already there as asked is a success, not a conflict (retries).
        fresh = [
            a for a in additions
            if not ((old := present.get(a.name.lower())) is not None
                    and normal_ip(old.ip_address) == a.ip_address
                    and old.admin_state == a.admin_state
                    and id_key(_address_vnet(old, snapshot.vnet_id) or "") == id_key(vnet_id))
        ]
        planned = plan_manual(snapshot, add=fresh)
        if planned.conflicts:
            problem.error = ApiError(
                409, "AddressConflict",
                "; ".join(f"{c.name} {c.ip_address or ''}: {c.reason}" for c in planned.conflicts),
                "body", extra={"plan": plan_json(planned)},
            )
            return PoolPlan(pool_id=snapshot.id)
        return planned

    response, _ = _write(context, pool_id, make_plan, options, _who(request), "add addresses")
    response.body["addresses"] = [member_json(a) for a in additions]
    return response


def _who(request: ApiRequest) -> str:
    principal = client_principal(request)
    return principal.name if principal else "function key"


def _existing_entry_plan(
    request: ApiRequest, build: Callable[[PoolSnapshot, PoolAddress], PoolPlan]
) -> Callable[[PoolSnapshot, _PlanProblem], PoolPlan]:
    ip, name = parse_address_ref(request.route_params.get("address"))

    def make_plan(snapshot: PoolSnapshot, problem: _PlanProblem) -> PoolPlan:
        entry = _find_entry(snapshot, ip, name)
        if entry is None:
            problem.error = ApiError(404, "AddressNotFound",
                                     f"no address {ip or name} in pool {snapshot.id}", "address")
            return PoolPlan(pool_id=snapshot.id)
        return build(snapshot, entry)

    return make_plan


def note_drain(runtime: Runtime, pool_id: str, names: Iterable[str], *, drained: bool) -> None:
    """Tell the audit's drain ledger when poolsync drained an address (or that it no longer is), so
    drain ages are exact. Best effort: the change in Azure is done whatever the bookkeeping does."""
    try:
        ledger = DrainLedger(runtime.storage, AuditSettings.from_env(runtime.settings).drain_table)
        for name in names:
            if drained:
                ledger.record_drain(pool_id, name)
            else:
                ledger.forget(pool_id, name)
    except Exception as error:
        log.warning("could not update the drain ledger for %s: %s", pool_id, error)


def remove_address(context: ApiContext, request: ApiRequest) -> ApiResponse:
    pool_id, _ = context.pool_from_route(request)
    options = WriteOptions.from_query(request)
    make_plan = _existing_entry_plan(
        request, lambda snapshot, entry: plan_manual(snapshot, remove=[entry.name])
    )
    response, plan = _write(context, pool_id, make_plan, options, _who(request), "remove address")
    removed = [member_json(entry) for entry in plan.removes]
    if response.body["written"]:
        note_drain(context.runtime, pool_id, [entry.name for entry in plan.removes], drained=False)
    response.body["addresses"] = removed
    if any(item["managed"] for item in removed):
        response.body["warnings"] = [
            "removed a poolsync-managed address: the next reconcile adds it back if the rules still select "
            "its VM"
        ]
    return response


def set_admin_state(state: str) -> Operation:
    """drain (Down) / enable (None): the admin state of one address."""

    def operation(context: ApiContext, request: ApiRequest) -> ApiResponse:
        pool_id, _ = context.pool_from_route(request)
        options = WriteOptions.from_query(request)
        found: list[PoolAddress] = []

        def build(snapshot: PoolSnapshot, entry: PoolAddress) -> PoolPlan:
            found[:] = [entry]
            return plan_manual(snapshot, admin={entry.name: state})

        make_plan = _existing_entry_plan(request, build)
        action = "drain" if state == ADMIN_DOWN else "enable"
        response, _ = _write(context, pool_id, make_plan, options, _who(request), f"{action} address")
        response.body["addresses"] = [member_json(replace(entry, admin_state=state)) for entry in found]
        if response.body["written"]:
            note_drain(context.runtime, pool_id, [entry.name for entry in found], drained=state == ADMIN_DOWN)
        return response

    return operation


drain_address = set_admin_state(ADMIN_DOWN)
enable_address = set_admin_state(ADMIN_NONE)


# -- reconcile and audit --


def _reconcile_targets(context: ApiContext, value: JSON) -> list[str] | None:
    """None for "all"; else the canonical rule-pool ids asked for."""
    if value == "all":
        return None
    values = value if isinstance(value, list) else [value]
    if not values or not all(isinstance(v, str) for v in values):
        raise bad_request("InvalidField", 'pool must be a pool id, a list of pool ids, or "all"', "pool")
    targets: dict[str, str] = {}
    for position, text in enumerate(values):
        target = "pool" if not isinstance(value, list) else f"pool[{position}]"
        pool_id, source = context.parse_pool_id(text, target)
        if source == "manual":
            raise ApiError(
                409,
                "ManualPoolNotReconciled",
                f"pool {pool_id} is a manual pool ({MANUAL_POOLS_ENV}); poolsync does not reconcile it",
                target,
            )
        targets.setdefault(id_key(pool_id), pool_id)
    return list(targets.values())


def reconcile(context: ApiContext, request: ApiRequest) -> ApiResponse:
    document = parse_json_body(request, required=True)
    if not isinstance(document, dict):
        raise bad_request("InvalidBody", "expected a JSON object", "body")
    _check_fields(document, ("pool", "dryRun", "force", "reason", "wait"))
    if "pool" not in document:
        raise bad_request("MissingField", 'pool is required (a pool id or "all")', "pool")
    targets = _reconcile_targets(context, document["pool"])
    dry_run = _bool_field(document, "dryRun", False)
    force = _bool_field(document, "force", False)
    reason = _force_reason(force, document.get("reason"))
    wait = _bool_field(document, "wait", query_bool(request, "wait", True))
    who = _who(request)
    if force:
        log.warning("reconcile by %s with force: %s", who, reason)
    outcomes = context.runtime.reconciler.reconcile(
        targets, dry_run=dry_run, force=force, force_reason=reason, wait=wait, source="http"
    )
    endpoint = context.runtime.clients.settings.endpoint
    pools = []
    pending = False
    for outcome in outcomes:
        item = outcome.as_dict()
        item["plan"] = plan_json(outcome.plan) if outcome.plan is not None else None
        item.pop("diff", None)
        if outcome.result is not None and outcome.result.operation_url and not wait:
            item["operation"] = operation_link(operation_token(outcome.result.operation_url, endpoint))
            pending = True
        pools.append(item)
    body: dict[str, JSON] = {"dryRun": dry_run, "pools": pools}
    log.info("reconcile by %s: %s", who, [(o.pool_id, o.status) for o in outcomes])
    refused = [o for o in outcomes if o.status == "refused"]
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        error = failed[0].error
        mapped = (
            _pool_not_found(error, failed[0].pool_id)
            if error is not None
            else ApiError(502, "AzureError", failed[0].detail)
        )
        raise ApiError(mapped.status, mapped.code, f"{failed[0].pool_id}: {mapped.message}", "pool",
                       extra=body, headers=mapped.headers)
    if refused:
        reasons = "; ".join(o.detail for o in refused)
        raise ApiError(422, "GuardRefused", f"{reasons}; repeat with force=true and a reason to override",
                       "pool", extra=body)
    return ApiResponse(202 if pending else 200, body)


def audit(context: ApiContext, request: ApiRequest) -> ApiResponse:
    """Queue the audit the timer runs (remediating only when POOLSYNC_AUDIT_REMEDIATE is on): 202 and
    where to follow it. It runs in the `audit_requests` queue trigger, which outlives any HTTP timeout."""
    document = parse_json_body(request, required=False)
    if document is not None and not (isinstance(document, dict) and not document):
        raise bad_request("InvalidBody", "POST /api/audit takes no parameters (an empty body or {})", "body")
    try:
        job = audit_store(context.runtime).submit(datetime.now(UTC))
    except (AzureError, StorageNotConfigured) as error:
        log.error("could not queue an audit: %s", error)
        raise ApiError(503, "StorageUnavailable", "the audit request could not be queued; try again later",
                       None, headers={"Retry-After": str(DEFAULT_RETRY_AFTER)}) from None
    log.info("audit %s queued by %s", job["id"], _who(request))
    href = f"/api/audits/{job['id']}"
    return ApiResponse(202, {"id": job["id"], "status": job["status"], "href": href}, {"Location": href})


def audit_status(context: ApiContext, request: ApiRequest) -> ApiResponse:
    job_id = request.route_params.get("auditId") or ""
    if not is_job_id(job_id):
        raise bad_request("InvalidAuditId", "not an audit id issued by this API (32 hex digits)", "auditId")
    try:
        job = audit_store(context.runtime).read(job_id)
    except (AzureError, StorageNotConfigured) as error:
        log.error("could not read audit request %s: %s", job_id, error)
        raise ApiError(503, "StorageUnavailable", "the audit status could not be read; try again later",
                       None, headers={"Retry-After": str(DEFAULT_RETRY_AFTER)}) from None
    if job is None:
        raise ApiError(404, "AuditNotFound", f"no audit request {job_id}", "auditId")
    return ApiResponse(200, {**job, "href": f"/api/audits/{job_id}"})


def run_audit_now(context: ApiContext, request: ApiRequest) -> ApiResponse:
    """The audit, run in this process until done (the CLI; the queue trigger for HTTP callers)."""
    try:
        return ApiResponse(200, dict(run_audit(context.runtime)))
    except AzureError as error:
        mapped = azure_error(error)
        if mapped.status in (404, 409):  # a list call the audit needs failed; the request itself was fine
            raise ApiError(502, "AzureError", mapped.message, None) from None
        raise mapped from None


def operation_status(context: ApiContext, request: ApiRequest) -> ApiResponse:
    token = request.route_params.get("operationId") or ""
    path, subscription = operation_path(token)
    context.check_subscription(subscription, "operationId")
    client = context.runtime.clients.network(subscription)

    def fetch() -> tuple[int, JSON]:
        response = client.send_request(HttpRequest("GET", path))
        if response.status_code == 404:
            raise ResourceNotFoundError(response=response)
        if response.status_code >= 400:
            raise HttpResponseError(response=response)
        try:
            return response.status_code, response.json() if response.content else {}
        except ValueError:
            return response.status_code, {}

    try:
        status_code, payload = call_with_retry(
            fetch, settings=context.runtime.writer.retry, stats=context.runtime.retry_stats,
            operation="GET operation status",
        )
    except ResourceNotFoundError:
        raise ApiError(404, "OperationNotFound", "Azure does not know this operation (any more)",
                       "operationId") from None
    except HttpResponseError as error:
        if error.status_code != 400:  # Azure refusing the GET means the (forged) id is bad, not a conflict
            raise
        detail = (getattr(error.error, "message", None) or str(error)).splitlines()[0][:500]
        raise bad_request("InvalidOperationId", f"Azure refused this operation id: {detail}",
                          "operationId") from None
    # Azure-AsyncOperation answers {"status"}; a Location URL answers 202 while running, 200/204 when done.
    payload = payload if isinstance(payload, dict) else {}
    status = payload.get("status") or ("InProgress" if status_code == 202 else "Succeeded")
    body: dict[str, JSON] = {"id": token, "status": status, "done": status not in ("InProgress", "Running")}
    if isinstance(payload.get("error"), dict):
        body["error"] = {"code": payload["error"].get("code"), "message": payload["error"].get("message")}
    return ApiResponse(200, body)


# --- dispatch ------------------------------------------------------------------------------------


def handle(
    operation: Operation, request: ApiRequest, runtime_provider: Callable[[], Runtime] = get_runtime
) -> ApiResponse:
    """Size limit, configuration, authorization, then the operation; every failure as an error body."""
    try:
        if len(request.body) > MAX_BODY_BYTES:
            raise ApiError(413, "PayloadTooLarge", f"the body exceeds {MAX_BODY_BYTES} bytes", "body")
        try:
            runtime = runtime_provider()
        except (RulesError, ValueError) as error:
            authorize(request, enforced_role(app_settings.app_settings()))
            log.error("configuration does not load: %s", error)
            raise ApiError(503, "ConfigurationError", f"poolsync's configuration does not load: {error}",
                           None) from None
        authorize(request, enforced_role(runtime.settings))  # before anything else reads the settings
        return operation(ApiContext(runtime), request)
    except ApiError as error:
        return error.response()
    except AzureError as error:
        return azure_error(error).response()
    except Exception:
        log.exception("unexpected error in %s", getattr(operation, "__name__", "operation"))
        return ApiError(500, "InternalError", "unexpected error; see the function's logs", None).response()
