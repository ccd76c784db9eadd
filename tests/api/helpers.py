"""Calling the registered HTTP functions in-process, and checking answers against shared/openapi.json.

`ApiClient.call` builds a real `func.HttpRequest`, finds the function whose route and method match (as
the Functions host would), calls its user function and validates the answer against the OpenAPI
response schema for that path, method and status: every test call is also a contract check.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func
import jsonschema

from devstack.settings import local_settings
from handlers import http_api
from shared.api.health import openapi_document
from shared.core.naming import address_name
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, SUBSCRIPTION, ids

ROUTE_PREFIX = "/api"


@dataclass(frozen=True)
class RegisteredRoute:
    function_name: str
    route: str  # as registered, without the /api prefix
    methods: tuple[str, ...]
    auth_level: str
    user_function: Any

    @property
    def openapi_path(self) -> str:
        return "/" + self.route


def registered_routes() -> list[RegisteredRoute]:
    """The HTTP functions as the Function app registers them (the blueprint in a FunctionApp)."""
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(http_api.bp)
    routes = []
    for function in app.get_functions():
        trigger = function.get_trigger()
        assert trigger is not None
        binding = trigger.get_dict_repr()
        routes.append(
            RegisteredRoute(
                function_name=str(function.get_function_name()),
                route=binding["route"],
                methods=tuple(str(getattr(m, "value", m)).upper() for m in binding["methods"]),
                auth_level=str(getattr(binding["authLevel"], "value", binding["authLevel"])).lower(),
                user_function=function.get_user_function(),
            )
        )
    return routes


def _template_regex(route: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(route))
    return re.compile(f"^{pattern}$", re.IGNORECASE)


@dataclass
class Answer:
    status: int
    body: Any
    headers: Mapping[str, str]
    route: RegisteredRoute

    @property
    def error(self) -> dict[str, Any]:
        return self.body["error"]


def principal_header(roles: list[str], name: str = "operator@example.com") -> str:
    """What App Service Authentication puts in x-ms-client-principal for an Entra ID caller."""
    claims = [{"typ": "name", "val": name}] + [{"typ": "roles", "val": role} for role in roles]
    document = {"auth_typ": "aad", "claims": claims, "name_typ": "name",
                "role_typ": "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"}
    return base64.b64encode(json.dumps(document).encode()).decode()


@dataclass
class ApiClient:
    routes: list[RegisteredRoute] = field(default_factory=registered_routes)
    document: dict[str, Any] = field(default_factory=openapi_document)
    default_headers: dict[str, str] = field(default_factory=dict)

    def match(self, method: str, path: str) -> tuple[RegisteredRoute, dict[str, str]]:
        relative = path[len(ROUTE_PREFIX):] if path.startswith(ROUTE_PREFIX + "/") else path
        for route in self.routes:
            found = _template_regex(route.route).match(relative.lstrip("/"))
            if found and method.upper() in route.methods:
                return route, found.groupdict()
        raise AssertionError(f"no function serves {method} {path}")

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw_body: bytes | None = None,
        query: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Answer:
        route, params = self.match(method, path)
        data = raw_body if raw_body is not None else (b"" if body is None else json.dumps(body).encode())
        request = func.HttpRequest(
            method=method.upper(),
            url=f"http://localhost{path}",
            headers={"content-type": "application/json", **self.default_headers, **(headers or {})},
            params=dict(query or {}),
            route_params=params,
            body=data,
        )
        response = route.user_function(request)
        assert isinstance(response, func.HttpResponse)
        if response.mimetype != "application/json":  # a page: its status and media type are documented
            answer = Answer(response.status_code, response.get_body().decode(), dict(response.headers), route)
            documented = self.document["paths"][route.openapi_path][method.lower()]["responses"]
            assert response.mimetype in documented[str(answer.status)]["content"], response.mimetype
            return answer
        answer = Answer(response.status_code, json.loads(response.get_body()), dict(response.headers), route)
        self.check_contract(answer, method, body if raw_body is None else None)
        return answer

    def _problems(self, schema: dict[str, Any], instance: Any) -> list[str]:
        validator = jsonschema.Draft202012Validator({**schema, "components": self.document["components"]})
        return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]

    def check_contract(self, answer: Answer, method: str, request_body: Any = None) -> None:
        """The status is documented for this operation and the body matches its schema; a request body
        the API accepted (2xx) is one the document allows."""
        operation = self.document["paths"][answer.route.openapi_path][method.lower()]
        documented = operation["responses"]
        where = f"{method} {answer.route.route} {answer.status}"
        assert str(answer.status) in documented, (
            f"{where} is not documented ({sorted(documented)}); body: {answer.body}"
        )
        schema = documented[str(answer.status)]["content"]["application/json"]["schema"]
        problems = self._problems(schema, answer.body)
        assert not problems, f"{where}: the answer breaks the schema: {problems}"
        if request_body is not None and answer.status < 300 and "requestBody" in operation:
            request_schema = operation["requestBody"]["content"]["application/json"]["schema"]
            problems = self._problems(request_schema, request_body)
            assert not problems, f"{where}: accepted a request the document forbids: {problems}"


def pool_path(pool: str = POOL, lb: str = LB, rg: str = RESOURCE_GROUP, sub: str = SUBSCRIPTION) -> str:
    return f"{ROUTE_PREFIX}/pools/{sub}/{rg}/{lb}/{pool}"


MANUAL_POOL = "pool-manual"
OTHER_RULE_POOL = "pool-other"
UNLISTED_POOL = "pool-unlisted"
BASIC_LB, BASIC_POOL = "lb-basic", "pool-basic"
NIC_LB, NIC_POOL = "lb-nic", "pool-nic"
LOOSE_POOL = "pool-loose"  # manual, and nothing says which virtual network it serves yet
GONE_POOL = "pool-gone"  # listed in POOLSYNC_MANUAL_POOLS, absent from Azure
MANUAL_SUBNET = "manual"  # 10.0.5.0/24: no rule covers it


def http_topology(vms: int = 3) -> dict[str, Any]:
    """VNet 10.0.0.0/16 + fd00:1::/48 (subnets default 10.0.0.0/24 and manual 10.0.5.0/24); lb-app
    (Standard) with the rule pools, manual pools (one bound to the VNet) and an unlisted pool; lb-basic
    (Basic); lb-nic whose pool has a NIC-based member; `vms` VMs web-N tagged for the rules."""
    return {
        "virtual_networks": [
            {
                "name": "vnet-app",
                "address_space": ["10.0.0.0/16", "fd00:1::/48"],
                "subnets": [
                    {"name": "default", "prefix": "10.0.0.0/24"},
                    {"name": MANUAL_SUBNET, "prefix": "10.0.5.0/24"},
                ],
            }
        ],
        "load_balancers": [
            {
                "name": LB,
                "sku": "Standard",
                "pools": [
                    {"name": POOL},
                    {"name": OTHER_RULE_POOL},
                    {"name": UNLISTED_POOL},
                    {"name": LOOSE_POOL},
                    {"name": MANUAL_POOL, "virtual_network": "vnet-app"},
                ],
                "rules": [{"name": "http", "pool": POOL}],
            },
            {"name": BASIC_LB, "sku": "Basic", "pools": [{"name": BASIC_POOL}]},
            {"name": NIC_LB, "sku": "Standard", "pools": [{"name": NIC_POOL, "nics": ["spare-nic"]}]},
        ],
        "network_interfaces": [{"name": "spare-nic", "subnet": "vnet-app/manual", "ip": "10.0.5.200"}],
        "virtual_machines": [
            {
                "count": vms,
                "name": "web-{i}",
                "subnet": "vnet-app/default",
                "tags": {"poolsync": "true"},
                "delete_option": "Delete",
            }
        ]
        if vms
        else [],
    }


def http_rules() -> dict[str, Any]:
    return {
        "version": 1,
        "rules": [
            {"name": "web", "pool": ids.pool(), "virtualNetwork": ids.vnet(), "cidrs": ["10.0.0.0/24"],
             "tags": {"poolsync": "true"}},
            {"name": "other", "pool": ids.pool(OTHER_RULE_POOL), "virtualNetwork": ids.vnet(),
             "cidrs": ["10.0.6.0/24"]},
        ],
    }


def manual_pools() -> str:
    """The manual pools, including one listed but absent from Azure."""
    pools = [ids.pool(MANUAL_POOL), ids.pool(BASIC_POOL, BASIC_LB), ids.pool(NIC_POOL, NIC_LB),
             ids.pool(LOOSE_POOL), ids.pool(GONE_POOL)]
    return ",".join(pools)


def runtime_env(arm_url: str, ca_path: str, storage: str, **overrides: str) -> dict[str, str]:
    defaults = {
        "POOLSYNC_MANUAL_POOLS": manual_pools(), "POOLSYNC_RETRY_DEADLINE": "120",
        "POOLSYNC_RETRY_MAX_ATTEMPTS": "50", "POOLSYNC_RETRY_BASE_BACKOFF": "0.02",
        "POOLSYNC_RETRY_MAX_BACKOFF": "0.2", "POOLSYNC_RETRY_AFTER_CAP": "0.2",
    }
    return local_settings(arm_url, ca_path, storage, rules=http_rules(), **{**defaults, **overrides})


def managed_name(world: Any, nic_name: str, ipconfig: str = "ipconfig1") -> str:
    """The name poolsync gives a NIC's ipconfig: it includes the resourceGuid the emulator gave the NIC."""
    nic = world.world.get_nic(ids.nic(nic_name))
    assert nic is not None, f"{nic_name} does not exist"
    return address_name(ids.nic(nic_name), ipconfig, nic["properties"].get("resourceGuid"))


def nic_ip(world: Any, nic_name: str) -> str:
    """The private IP the emulator gave a NIC's first ipconfig."""
    nic = world.world.get_nic(ids.nic(nic_name))
    return str(nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"])


def azure_addresses(network: Any, pool: str = POOL, lb: str = LB) -> dict[str, dict[str, Any]]:
    """The pool's backend addresses as Azure holds them (read with the SDK), by name."""
    raw = network.load_balancer_backend_address_pools.get(RESOURCE_GROUP, lb, pool).as_dict()
    entries = (raw.get("properties") or {}).get("loadBalancerBackendAddresses") or []
    return {entry["name"]: entry for entry in entries}
