"""A Runtime aimed at the ARM emulator and Azurite, and the seeded audit topology."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any

from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.network.models import InboundNatRule, SubResource

from devstack.settings import local_settings
from emulator import Emulator
from shared.app.runtime import Runtime
from shared.azure.retry import RetryStats
from shared.core.naming import address_name
from tests.fixtures.arm import RESOURCE_GROUP, ids


def make_runtime(
    arm: Emulator, storage_connection_string: str, rules: Mapping[str, Any], **settings: str
) -> Runtime:
    defaults = {"POOLSYNC_RETRY_DEADLINE": "60", "POOLSYNC_RETRY_BASE_BACKOFF": "0.05",
                "POOLSYNC_RETRY_MAX_BACKOFF": "0.5",
                "POOLSYNC_REMOVALS_TABLE": "removals" + uuid.uuid4().hex[:12]}  # the guard's window per test
    env = local_settings(arm.url, arm.ca_path, storage_connection_string, rules=rules,
                         **{**defaults, **settings})
    return Runtime.from_env(env, retry_stats=RetryStats())


def managed(nic: str, ipconfig: str = "ipconfig1") -> str:
    """The name poolsync gives a NIC's ipconfig in a pool."""
    return address_name(ids.nic(nic), ipconfig)


def current_name(arm: Emulator, nic: str, ipconfig: str = "ipconfig1") -> str:
    """The name poolsync gives the ipconfig of the NIC the emulator holds now (its resourceGuid included).

    The seeded pools carry `managed` (legacy) names, as pools written before the guid was in the name do.
    """
    raw = arm.world.get_nic(ids.nic(nic))
    assert raw is not None, f"{nic} does not exist"
    return address_name(ids.nic(nic), ipconfig, raw["properties"].get("resourceGuid"))


def rule(name: str, pool: str, cidrs: list[str], vnet: str = "vnet-app", **extra: Any) -> dict[str, Any]:
    vnet_id = vnet if vnet.startswith("/") else ids.vnet(vnet)
    lb, _, pool_name = pool.partition("/")
    return {"name": name, "pool": ids.pool(pool_name, lb), "virtualNetwork": vnet_id, "cidrs": cidrs, **extra}


SELECTED = {"poolsync": "true"}
FRONTEND_IP = "10.0.0.250"


def _vm(name: str, ip: str, tags: Mapping[str, str] | None = None, vnet: str = "vnet-app",
        **extra: Any) -> dict[str, Any]:
    return {"name": name, "subnet": f"{vnet}/default", "ip": ip, "tags": dict(tags or {}), **extra}


# One instance of every finding, in pool-app unless named otherwise:
#   web-1 present but drained 10 days ago (drain_overdue), web-2 missing, web-3's IP under a name
#   made for NIC old-nic (owner_changed), web-4 no longer tagged (not_selected), gone-nic's entry
#   (stale), dup-web-1 = web-1's IP in another VNet (duplicate + outside the LB's VNet), a private
#   endpoint's and the LB frontend's IPs (non_vm_backend), hand-added pointing at nothing; pool-basic
#   on a Basic LB, pool-nic with NIC-based members, pool-nat targeted by a NAT rule; rules: a missing
#   pool and VNet, a CIDR outside the VNet, and overlapping CIDRs of two pools.
SEEDED_TOPOLOGY: dict[str, Any] = {
    "virtual_networks": [
        {"name": "vnet-app", "address_space": ["10.0.0.0/16"],
         "subnets": [{"name": "default", "prefix": "10.0.0.0/24"}]},
        {"name": "vnet-other", "address_space": ["10.0.0.0/16"],
         "subnets": [{"name": "default", "prefix": "10.0.0.0/24"}]},
    ],
    "load_balancers": [
        {
            "name": "lb-app",
            "frontends": [{"name": "internal", "subnet": "vnet-app/default", "private_ip": FRONTEND_IP}],
            "pools": [
                {
                    "name": "pool-app",
                    "addresses": [
                        {"name": managed("web-1-nic"), "ip": "10.0.0.11", "virtual_network": "vnet-app",
                         "admin_state": "Down"},
                        {"name": managed("web-5-nic"), "ip": "10.0.0.15", "virtual_network": "vnet-app"},
                        {"name": managed("web-6-nic"), "ip": "10.0.0.16", "virtual_network": "vnet-app"},
                        {"name": managed("web-7-nic"), "ip": "10.0.0.17", "virtual_network": "vnet-app"},
                        {"name": managed("old-nic"), "ip": "10.0.0.13", "virtual_network": "vnet-app"},
                        {"name": managed("web-4-nic"), "ip": "10.0.0.14", "virtual_network": "vnet-app"},
                        {"name": managed("gone-nic"), "ip": "10.0.0.40", "virtual_network": "vnet-app"},
                        {"name": "dup-web-1", "ip": "10.0.0.11", "virtual_network": "vnet-other"},
                        {"name": "pe-entry", "ip": "10.0.0.30", "virtual_network": "vnet-app"},
                        {"name": "lb-frontend", "ip": FRONTEND_IP, "virtual_network": "vnet-app"},
                        {"name": "hand-added", "ip": "10.0.0.50", "virtual_network": "vnet-app"},
                        {"name": "ops-1", "ip": "10.0.0.60", "virtual_network": "vnet-app",
                         "admin_state": "Down"},
                    ],
                },
                {"name": "pool-nic", "nics": ["legacy-1-nic"]},
                {"name": "pool-nat"},
            ],
            "rules": [{"name": "http", "pool": "pool-app"}],
        },
        {"name": "lb-basic", "sku": "Basic", "pools": [{"name": "pool-basic"}]},
    ],
    "network_interfaces": [
        {"name": "pe-nic", "subnet": "vnet-app/default", "ip": "10.0.0.30", "private_endpoint": True},
    ],
    "virtual_machines": [
        _vm("web-1", "10.0.0.11", SELECTED),
        _vm("web-2", "10.0.0.12", SELECTED),
        _vm("web-3", "10.0.0.13"),
        _vm("web-4", "10.0.0.14"),
        _vm("web-5", "10.0.0.15", SELECTED),
        _vm("web-6", "10.0.0.16", SELECTED),
        _vm("web-7", "10.0.0.17", SELECTED),
        _vm("ops-1", "10.0.0.60"),
        _vm("legacy-1", "10.0.0.70"),
        _vm("other-1", "10.0.0.11", vnet="vnet-other"),
    ],
}

SEEDED_RULES: dict[str, Any] = {
    "version": 1,
    "rules": [
        rule("web", "lb-app/pool-app", ["10.0.0.0/24"], tags=SELECTED),
        rule("basic", "lb-basic/pool-basic", ["10.0.1.0/24"]),
        rule("nic", "lb-app/pool-nic", ["10.0.2.0/24"]),
        rule("nat", "lb-app/pool-nat", ["10.0.0.0/25"], tags={"role": "nat"}),
        rule("nat-outside", "lb-app/pool-nat", ["10.9.0.0/24"]),
        rule("gone", "lb-app/pool-gone", ["10.0.4.0/24"], vnet="vnet-gone"),
    ],
}


def add_nat_rule_on_pool(network: NetworkManagementClient, lb: str, pool: str) -> None:
    """A NAT rule (v2) that targets a backend pool, the way the portal creates one."""
    balancer = network.load_balancers.get(RESOURCE_GROUP, lb)
    frontend = balancer.frontend_ip_configurations[0].id
    balancer.inbound_nat_rules = [
        InboundNatRule(
            name="ssh", frontend_ip_configuration=SubResource(id=frontend),
            backend_address_pool=SubResource(id=ids.pool(pool, lb)), protocol="Tcp",
            frontend_port_range_start=50000, frontend_port_range_end=50099, backend_port=22,
        )
    ]
    network.load_balancers.begin_create_or_update(RESOURCE_GROUP, lb, balancer).result()


class ReportPage(HTMLParser):
    """What a reader of the HTML report sees: summary counts, code counts, per-pool finding rows."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.code_counts: dict[str, int] = {}
        self.pool_rows: dict[str, list[tuple[str, str]]] = {}  # pool id -> [(severity class, code)]
        self.title = ""
        self._capture: tuple[str, str] | None = None
        self._pool: str | None = None
        self._in_title = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "title":
            self._in_title = True
        if tag == "section" and attributes.get("data-pool") is not None:
            self._pool = attributes["data-pool"] or ""
            self.pool_rows.setdefault(self._pool, [])
        if tag == "td" and attributes.get("data-count"):
            self._capture = ("count", attributes["data-count"] or "")
        if tag == "td" and attributes.get("data-code-count"):
            self._capture = ("code", attributes["data-code-count"] or "")
        if tag == "tr" and attributes.get("data-code") and self._pool is not None:
            self.pool_rows[self._pool].append((attributes.get("class") or "", attributes["data-code"] or ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._pool = None
        if tag == "title":
            self._in_title = False
        if tag == "td":
            self._capture = None

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._capture is not None and data.strip():
            kind, key = self._capture
            (self.counts if kind == "count" else self.code_counts)[key] = int(data.strip())
