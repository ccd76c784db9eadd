"""Seeding the world from a topology document (dict, JSON or YAML file).

Everything goes through the same `World.put_*` calls (and validation) as HTTP writes, so
a seeded world is one Azure could hold. Names refer to resources of the same
subscription/resource group unless given as full ids; `vnet/subnet` names a subnet and
`lb/pool` a backend pool. See docs/emulator.md for the format and examples/topologies/.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from emulator.world import DEFAULT_LOCATION, DEFAULT_SUBSCRIPTION, World

DEFAULT_RESOURCE_GROUP = "rg-poolsync"


def read(source: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(source, dict):
        return source
    text = Path(source).read_text()
    data = json.loads(text) if str(source).endswith(".json") else yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"topology {source} must be a mapping")
    return data


class _Scope:
    """Subscription / resource group / location an entry lives in, and id builders."""

    def __init__(self, entry: dict[str, Any], defaults: dict[str, Any]) -> None:
        self.subscription = entry.get("subscription") or defaults["subscription"]
        self.resource_group = entry.get("resource_group") or defaults["resource_group"]
        self.location = entry.get("location") or defaults["location"]

    def id(self, type_path: str, name: str) -> str:
        if name.startswith("/subscriptions/"):
            return name
        group = f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"
        return f"{group}/providers/{type_path}/{name}"

    def subnet(self, ref: str) -> str:
        if ref.startswith("/subscriptions/"):
            return ref
        vnet, _, subnet = ref.partition("/")
        return f"{self.id('Microsoft.Network/virtualNetworks', vnet)}/subnets/{subnet or 'default'}"

    def vnet(self, ref: str) -> str:
        return self.id("Microsoft.Network/virtualNetworks", ref)

    def pool(self, ref: str) -> str:
        if ref.startswith("/subscriptions/"):
            return ref
        lb, _, pool = ref.partition("/")
        return f"{self.id('Microsoft.Network/loadBalancers', lb)}/backendAddressPools/{pool}"


def load(world: World, source: dict[str, Any] | str | Path) -> dict[str, int]:
    doc = read(source)
    defaults = {
        "subscription": DEFAULT_SUBSCRIPTION,
        "resource_group": DEFAULT_RESOURCE_GROUP,
        "location": DEFAULT_LOCATION,
        **(doc.get("defaults") or {}),
    }
    counts = {"virtual_networks": 0, "load_balancers": 0, "network_interfaces": 0, "virtual_machines": 0}
    for subscription in doc.get("subscriptions") or []:
        world.add_subscription(subscription)
    for entry in doc.get("virtual_networks") or []:
        _vnet(world, entry, defaults)
        counts["virtual_networks"] += 1
    nic_based_pools: list[tuple[_Scope, str, dict[str, Any]]] = []
    for entry in doc.get("load_balancers") or []:
        nic_based_pools += _load_balancer(world, entry, defaults)
        counts["load_balancers"] += 1
    for entry in _expand(doc.get("network_interfaces") or []):
        _nic(world, entry, _Scope(entry, defaults), entry["name"])
        counts["network_interfaces"] += 1
    for entry in _expand(doc.get("virtual_machines") or []):
        _vm(world, entry, defaults)
        counts["virtual_machines"] += 1
    for scope, pool_id, member in nic_based_pools:
        _join_pool(world, scope, pool_id, member)
    for entry in doc.get("scale_sets") or []:
        _scale_set(world, entry, defaults)
        counts["scale_sets"] = counts.get("scale_sets", 0) + 1
    return counts


def _expand(entries: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Generators: an entry with `count` stands for that many, `{i}` in strings numbered from `start`."""
    for entry in entries:
        if "count" not in entry:
            yield entry
            continue
        start = int(entry.get("start", 1))
        template = {k: v for k, v in entry.items() if k not in ("count", "start")}
        for index in range(start, start + int(entry["count"])):
            yield _fill(template, index)


def _fill(value: Any, index: int) -> Any:
    if isinstance(value, str):
        return value.format(i=index) if "{i" in value else value
    if isinstance(value, list):
        return [_fill(v, index) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, index) for k, v in value.items()}
    return value


def _vnet(world: World, entry: dict[str, Any], defaults: dict[str, Any]) -> None:
    scope = _Scope(entry, defaults)
    world.add_subscription(scope.subscription)
    space = entry.get("address_space") or ["10.0.0.0/16"]
    subnets = [
        {"name": s["name"], "properties": {"addressPrefix": s["prefix"]}} for s in entry.get("subnets") or []
    ]
    body = {
        "location": scope.location,
        "tags": entry.get("tags") or {},
        "properties": {"addressSpace": {"addressPrefixes": list(space)}, "subnets": subnets},
    }
    world.put_vnet(scope.vnet(entry["name"]), body)


def _load_balancer(
    world: World, entry: dict[str, Any], defaults: dict[str, Any]
) -> list[tuple[_Scope, str, dict[str, Any]]]:
    scope = _Scope(entry, defaults)
    world.add_subscription(scope.subscription)
    lb_id = scope.id("Microsoft.Network/loadBalancers", entry["name"])
    frontends = [_frontend(scope, fe) for fe in entry.get("frontends") or [{"name": "frontend"}]]
    fe_id = {fe["name"]: f"{lb_id}/frontendIPConfigurations/{fe['name']}" for fe in frontends}
    first_fe = next(iter(fe_id.values()))
    pools = entry.get("pools") or []
    rules = [
        {
            "name": rule["name"],
            "properties": {
                "frontendIPConfiguration": {"id": fe_id.get(rule.get("frontend", ""), first_fe)},
                "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/{rule['pool']}"},
                "protocol": rule.get("protocol", "Tcp"),
                "frontendPort": rule.get("frontend_port", 80),
                "backendPort": rule.get("backend_port", 80),
            },
        }
        for rule in entry.get("rules") or []
    ]
    nat_rules = [
        {
            "name": rule["name"],
            "properties": {
                "frontendIPConfiguration": {"id": fe_id.get(rule.get("frontend", ""), first_fe)},
                "protocol": rule.get("protocol", "Tcp"),
                "frontendPort": rule.get("frontend_port", 50000),
                "backendPort": rule.get("backend_port", 22),
            },
        }
        for rule in entry.get("inbound_nat_rules") or []
    ]
    body = {
        "location": scope.location,
        "sku": {"name": entry.get("sku", "Standard")},
        "tags": entry.get("tags") or {},
        "properties": {
            "frontendIPConfigurations": frontends,
            "backendAddressPools": [{"name": p["name"]} for p in pools],
            "loadBalancingRules": rules,
            "inboundNatRules": nat_rules,
        },
    }
    world.put_lb(lb_id, body)
    nic_members = []
    for pool in pools:
        pool_id = f"{lb_id}/backendAddressPools/{pool['name']}"
        pool_props = _pool_properties(scope, pool)
        if pool_props:
            world.put_pool(pool_id, {"properties": pool_props})
        for member in pool.get("nics") or []:
            nic_members.append((scope, pool_id, member if isinstance(member, dict) else {"nic": member}))
    return nic_members


def _frontend(scope: _Scope, fe: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if fe.get("subnet"):
        props["subnet"] = {"id": scope.subnet(fe["subnet"])}
        props["privateIPAllocationMethod"] = "Static" if fe.get("private_ip") else "Dynamic"
        if fe.get("private_ip"):
            props["privateIPAddress"] = fe["private_ip"]
    if fe.get("public_ip"):
        props["publicIPAddress"] = {"id": scope.id("Microsoft.Network/publicIPAddresses", fe["public_ip"])}
    return {"name": fe["name"], "properties": props}


def _pool_properties(scope: _Scope, pool: dict[str, Any]) -> dict[str, Any]:
    """Pool-level virtualNetwork and IP-based addresses of a `pools[]` entry (empty: nothing to write)."""
    props: dict[str, Any] = {}
    if pool.get("virtual_network"):
        props["virtualNetwork"] = {"id": scope.vnet(pool["virtual_network"])}
    addresses = []
    for address in _expand(pool.get("addresses") or []):
        aprops: dict[str, Any] = {"ipAddress": address["ip"]}
        if address.get("virtual_network"):
            aprops["virtualNetwork"] = {"id": scope.vnet(address["virtual_network"])}
        if address.get("subnet"):
            aprops["subnet"] = {"id": scope.subnet(address["subnet"])}
        if address.get("admin_state"):
            aprops["adminState"] = address["admin_state"]
        addresses.append({"name": address["name"], "properties": aprops})
    if addresses:
        props["loadBalancerBackendAddresses"] = addresses
    return props


def _nic_body(scope: _Scope, entry: dict[str, Any]) -> dict[str, Any]:
    configs_in = entry.get("ip_configurations") or [
        {
            "name": entry.get("ipconfig", "ipconfig1"),
            "subnet": entry["subnet"],
            "ip": entry.get("ip"),
            "pools": entry.get("pools"),
        }
    ]
    configs = []
    for index, config in enumerate(configs_in):
        props: dict[str, Any] = {
            "subnet": {"id": scope.subnet(config["subnet"])},
            "primary": config.get("primary", index == 0),
            "privateIPAllocationMethod": "Static" if config.get("ip") else "Dynamic",
        }
        if config.get("ip"):
            props["privateIPAddress"] = config["ip"]
        if config.get("pools"):
            props["loadBalancerBackendAddressPools"] = [{"id": scope.pool(p)} for p in config["pools"]]
        configs.append({"name": config.get("name", f"ipconfig{index + 1}"), "properties": props})
    return {
        "location": scope.location,
        "tags": entry.get("tags") or {},
        "properties": {"ipConfigurations": configs},
    }


def _nic(world: World, entry: dict[str, Any], scope: _Scope, name: str) -> str:
    world.add_subscription(scope.subscription)
    nic_id = scope.id("Microsoft.Network/networkInterfaces", name)
    private_endpoint = entry.get("private_endpoint")
    pe_id = None
    if private_endpoint:
        pe_name = private_endpoint if isinstance(private_endpoint, str) else f"pe-{name}"
        pe_id = scope.id("Microsoft.Network/privateEndpoints", pe_name)
    world.put_nic(nic_id, _nic_body(scope, entry), private_endpoint_id=pe_id)
    return nic_id


def _vm(world: World, entry: dict[str, Any], defaults: dict[str, Any]) -> None:
    scope = _Scope(entry, defaults)
    world.add_subscription(scope.subscription)
    nics = entry.get("nics") or [
        {
            "name": entry.get("nic_name") or f"{entry['name']}-nic",
            "subnet": entry["subnet"],
            "ip": entry.get("ip"),
            "pools": entry.get("pools"),
            "delete_option": entry.get("delete_option", "Detach"),
        }
    ]
    refs = []
    for index, nic in enumerate(nics):
        nic_id = _nic(world, nic, scope, nic["name"])
        refs.append(
            {
                "id": nic_id,
                "properties": {
                    "primary": nic.get("primary", index == 0),
                    "deleteOption": nic.get("delete_option", entry.get("delete_option", "Detach")),
                },
            }
        )
    body = {
        "location": scope.location,
        "tags": entry.get("tags") or {},
        "properties": {
            "hardwareProfile": {"vmSize": entry.get("size", "Standard_B1s")},
            "networkProfile": {"networkInterfaces": refs},
        },
    }
    world.put_vm(scope.id("Microsoft.Compute/virtualMachines", entry["name"]), body)


def scale_set_body(
    location: str,
    subnet_id: str,
    capacity: int,
    mode: str = "Uniform",
    pool_ids: list[str] | None = None,
    nic_name: str = "nic",
    upgrade_mode: str = "Manual",
    tags: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A scale-set PUT body with one NIC configuration in `subnet_id` (as the REST spec shapes it)."""
    ipconfig: dict[str, Any] = {"subnet": {"id": subnet_id}, "primary": True}
    if pool_ids:
        ipconfig["loadBalancerBackendAddressPools"] = [{"id": p} for p in pool_ids]
    network_profile: dict[str, Any] = {
        "networkInterfaceConfigurations": [
            {
                "name": nic_name,
                "properties": {
                    "primary": True,
                    "ipConfigurations": [{"name": "ipconfig1", "properties": ipconfig}],
                },
            }
        ]
    }
    if mode == "Flexible":
        network_profile["networkApiVersion"] = "2020-11-01"  # Flexible sets create their NICs themselves
    return {
        "location": location,
        "tags": tags or {},
        "sku": {"name": "Standard_B1s", "tier": "Standard", "capacity": capacity},
        "properties": {
            "orchestrationMode": mode,
            "upgradePolicy": {"mode": upgrade_mode},
            "virtualMachineProfile": {"networkProfile": network_profile},
        },
    }


def _scale_set(world: World, entry: dict[str, Any], defaults: dict[str, Any]) -> None:
    scope = _Scope(entry, defaults)
    world.add_subscription(scope.subscription)
    body = scale_set_body(
        scope.location,
        scope.subnet(entry["subnet"]),
        int(entry.get("capacity", 0)),
        mode=entry.get("mode", "Uniform"),
        pool_ids=[scope.pool(p) for p in entry.get("pools") or []],
        nic_name=entry.get("nic_name", f"{entry['name']}-nic"),
        upgrade_mode=entry.get("upgrade_mode", "Manual"),
        tags=entry.get("tags"),
    )
    world.put_scale_set(scope.id("Microsoft.Compute/virtualMachineScaleSets", entry["name"]), body)


def _join_pool(world: World, scope: _Scope, pool_id: str, member: dict[str, Any]) -> None:
    """A `pools[].nics` entry: add the pool to that NIC ipconfig's loadBalancerBackendAddressPools."""
    nic_id = scope.id("Microsoft.Network/networkInterfaces", member["nic"])
    nic = world.get_nic(nic_id)
    if nic is None:
        raise ValueError(f"topology: pool {pool_id} lists unknown NIC {member['nic']}")
    wanted = member.get("ipconfig")
    for config in nic["properties"]["ipConfigurations"]:
        if (wanted and config["name"] == wanted) or (not wanted and config["properties"].get("primary")):
            config["properties"].setdefault("loadBalancerBackendAddressPools", []).append({"id": pool_id})
    world.put_nic(nic_id, nic)
