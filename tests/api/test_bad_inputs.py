"""A table of bad requests: each gets the documented status and an error naming what is wrong.

Every row goes through the registered function against the emulator; `ApiClient.call` also checks the
answer against the OpenAPI document. Nothing in Azure may change for any of them.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
from azure.mgmt.network import NetworkManagementClient

from tests.api.helpers import (
    BASIC_LB,
    BASIC_POOL,
    GONE_POOL,
    MANUAL_POOL,
    NIC_LB,
    NIC_POOL,
    UNLISTED_POOL,
    ApiClient,
    azure_addresses,
    pool_path,
)
from tests.fixtures.arm import SUBSCRIPTION, ids

OTHER_SUBSCRIPTION = "99999999-8888-7777-6666-555555555555"
ADD = pool_path(MANUAL_POOL) + "/addresses"
NO_BODY = object()


@dataclass(frozen=True)
class Bad:
    method: str
    path: str
    body: Any = NO_BODY
    raw: bytes | None = None
    query: tuple[tuple[str, str], ...] = ()
    status: int = 400
    code: str = ""
    target: str | None = None


def add(body: Any, status: int = 400, code: str = "InvalidIpAddress", target: str | None = "ipAddress",
        path: str = ADD) -> Bad:
    return Bad("POST", path, body, status=status, code=code, target=target)


def add_ip(ip: Any, status: int = 400, code: str = "InvalidIpAddress") -> Bad:
    return add({"ipAddress": ip}, status, code)


def raw_add(raw: bytes, status: int = 400, code: str = "InvalidJson", target: str = "body") -> Bad:
    return Bad("POST", ADD, raw=raw, status=status, code=code, target=target)


def reconcile(body: Any, status: int = 400, code: str = "InvalidField", target: str | None = "pool") -> Bad:
    return Bad("POST", "/api/reconcile", body, status=status, code=code, target=target)


def token(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


OPERATION = "/providers/Microsoft.Network/locations/westeurope/operations/0b7e3f5c-1d2a-4b7e-9c55-3e6f2f0a9d1"
FOREIGN_OPERATION = f"/subscriptions/{OTHER_SUBSCRIPTION}{OPERATION}?api-version=2024-05-01"
UNKNOWN_OPERATION = f"/subscriptions/{SUBSCRIPTION}{OPERATION}?api-version=2024-05-01"

CASES = {
    # --- the body ---
    "malformed JSON": raw_add(b'{"ipAddress": "10.0.5.10"'),
    "not UTF-8": raw_add(b'{"ipAddress": "\xff"}'),
    "duplicate key": raw_add(b'{"ipAddress": "10.0.5.10", "ipAddress": "10.0.5.11"}'),
    "NaN": raw_add(b'{"ipAddress": NaN}'),
    "empty body": raw_add(b"", code="MissingBody"),
    "a bare string": add("10.0.5.10", code="InvalidBody", target="body"),
    "an empty list": add([], code="InvalidBody", target="body"),
    "too many addresses": add([{"ipAddress": "10.0.5.10"}] * 1001, code="InvalidBody", target="body"),
    "body over 256 KiB": raw_add(b"[" + b" " * (256 * 1024) + b"]", status=413, code="PayloadTooLarge"),
    "missing ipAddress": add({"name": "x"}, code="MissingField"),
    "unknown field": add({"ipAddress": "10.0.5.10", "port": 80}, code="UnknownField", target="port"),
    "field and its alias": add({"ipAddress": "10.0.5.10", "ip-address": "10.0.5.11"}, code="InvalidField",
                               target="ip-address"),
    "bad item in a list names its index": add([{"ipAddress": "10.0.5.10"}, {"ipAddress": "10.0.5"}],
                                              target="[1].ipAddress"),
    "same IP twice in one request": add([{"ipAddress": "10.0.5.10"}, {"ipAddress": "10.0.5.10", "name": "b"}],
                                        code="DuplicateInRequest", target="[1].ipAddress"),
    "reserved name prefix": add({"ipAddress": "10.0.5.10", "name": "psync-mine"}, code="InvalidField",
                                target="name"),
    "name with a space": add({"ipAddress": "10.0.5.10", "name": "my box"}, code="InvalidField",
                             target="name"),
    "name with a trailing line break": add({"ipAddress": "10.0.5.10", "name": "box\n"}, code="InvalidField",
                                           target="name"),
    "name ending in a hyphen": add({"ipAddress": "10.0.5.10", "name": "box-"}, code="InvalidField",
                                   target="name"),
    "unknown admin state": add({"ipAddress": "10.0.5.10", "adminState": "Drained"}, code="InvalidField",
                               target="adminState"),
    "virtualNetwork not an id": add({"ipAddress": "10.0.5.10", "virtualNetwork": "vnet-app"},
                                    code="InvalidResourceId", target="virtualNetwork"),
    "subnet outside virtualNetwork": add(
        {"ipAddress": "10.0.5.10", "virtualNetwork": ids.vnet(), "subnet": ids.subnet("vnet-other")},
        code="InvalidField", target="subnet"),
    "another virtual network": add({"ipAddress": "10.0.5.10", "virtualNetwork": ids.vnet("vnet-other")},
                                   status=409, code="VirtualNetworkMismatch", target="virtualNetwork"),
    # --- IPv4 edge cases ---
    "IPv4 leading zero": add_ip("10.0.5.010"),
    "IPv4 three octets": add_ip("10.0.5"),
    "IPv4 octet over 255": add_ip("10.0.5.256"),
    "IPv4 with prefix length": add_ip("10.0.5.10/32"),
    "IPv4 with spaces": add_ip(" 10.0.5.10"),
    "IP as a number": add_ip(167773450),
    "empty IP": add_ip(""),
    "IPv4 loopback": add_ip("127.0.0.1"),
    "IPv4 unspecified": add_ip("0.0.0.0"),
    "IPv4 multicast": add_ip("224.0.0.1"),
    "IPv4 link-local": add_ip("169.254.10.10"),
    "IPv4 broadcast": add_ip("255.255.255.255"),
    "IPv4 outside the VNet": add_ip("10.1.0.5", code="IpOutsideVirtualNetwork"),
    "subnet network address": add_ip("10.0.5.0", code="ReservedIpAddress"),
    "subnet gateway address": add_ip("10.0.5.1", code="ReservedIpAddress"),
    "subnet DNS address": add_ip("10.0.5.3", code="ReservedIpAddress"),
    "subnet broadcast address": add_ip("10.0.5.255", code="ReservedIpAddress"),
    # --- IPv6 edge cases ---
    "IPv6 with zone": add_ip("fe80::1%eth0"),
    "IPv6 link-local": add_ip("fe80::1"),
    "IPv4-mapped IPv6": add_ip("::ffff:10.0.5.10"),
    "IPv6 loopback": add_ip("::1"),
    "IPv6 multicast": add_ip("ff02::1"),
    "IPv6 prefix": add_ip("fd00:1::/64"),
    "IPv6 bad digit": add_ip("fd00:1::g"),
    "IPv6 triple colon": add_ip("fd00:1:::1"),
    "IPv6 outside the VNet": add_ip("fd00:2::5", code="IpOutsideVirtualNetwork"),
    # --- the rules ---
    "IP the rules put in this pool": add({"ipAddress": "10.0.0.50"}, status=409, code="ConflictsWithRule",
                                         path=pool_path() + "/addresses"),
    "IP in another pool's CIDR": add({"ipAddress": "10.0.6.5"}, status=409, code="ConflictsWithRule"),
    # --- the pool ---
    "Basic SKU pool": add({"ipAddress": "10.0.5.10"}, 409, "UnsupportedLoadBalancerSku", "pool",
                          pool_path(BASIC_POOL, BASIC_LB) + "/addresses"),
    "NIC-based pool": add({"ipAddress": "10.0.5.10"}, 409, "NicBasedPool", "pool",
                          pool_path(NIC_POOL, NIC_LB) + "/addresses"),
    "unknown pool": add({"ipAddress": "10.0.5.10"}, 404, "PoolNotFound", "pool",
                        pool_path(GONE_POOL) + "/addresses"),
    "pool not configured": add({"ipAddress": "10.0.5.10"}, 403, "PoolNotManaged", "pool",
                               pool_path(UNLISTED_POOL) + "/addresses"),
    "subscription not configured": Bad("GET", pool_path(sub=OTHER_SUBSCRIPTION), status=403,
                                       code="SubscriptionNotConfigured", target="pool"),
    "subscription not a GUID": Bad("GET", pool_path(sub="not-a-guid"), code="InvalidResourceId",
                                   target="subscriptionId"),
    "resource group ..": Bad("GET", pool_path(rg=".."), code="InvalidResourceId", target="resourceGroup"),
    "load balancer with $": Bad("GET", pool_path(lb="lb$"), code="InvalidResourceId", target="loadBalancer"),
    "pool name ending in .": Bad("GET", pool_path("pool-app."), code="InvalidResourceId", target="pool"),
    "subscription with a trailing line break": Bad("GET", pool_path(sub=SUBSCRIPTION + "\n"),
                                                   code="InvalidResourceId", target="subscriptionId"),
    "pool name with a trailing line break": Bad("GET", pool_path(MANUAL_POOL + "\n"),
                                                code="InvalidResourceId", target="pool"),
    # --- addresses in the path, query parameters ---
    "address name with a trailing line break": Bad("DELETE", ADD + "/x\n", code="InvalidAddress",
                                                   target="address"),
    "address neither IP nor name": Bad("DELETE", ADD + "/a b", code="InvalidAddress", target="address"),
    "unknown address": Bad("POST", ADD + "/10.0.5.99/drain", status=404, code="AddressNotFound",
                           target="address"),
    "wait not a boolean": Bad("POST", ADD, {"ipAddress": "10.0.5.10"}, query=(("wait", "maybe"),),
                              code="InvalidQueryParameter", target="wait"),
    "force without a reason": Bad("DELETE", ADD + "/x", query=(("force", "true"),), code="MissingField",
                                  target="reason"),
    "reason with a line break": Bad("DELETE", ADD + "/x", query=(("force", "true"), ("reason", "ok\nFORGED")),
                                    code="InvalidField", target="reason"),
    # --- reconcile ---
    "reconcile without pool": reconcile({"dryRun": True}, code="MissingField"),
    "reconcile pool not a string": reconcile({"pool": 5}),
    # "pool-app" and "lb-app/pool-app" name a managed pool (test_reconcile_api.py); this names nothing
    "reconcile pool not an id": reconcile({"pool": "rg/lb-app/pool-app"}, code="InvalidResourceId"),
    "reconcile a VNet id": reconcile({"pool": ids.vnet()}, code="InvalidResourceId"),
    "reconcile an unconfigured pool": reconcile({"pool": ids.pool(UNLISTED_POOL)}, 403, "PoolNotManaged"),
    "reconcile list with a bad entry": reconcile({"pool": [ids.pool(), "x/y/z"]}, code="InvalidResourceId",
                                                 target="pool[1]"),
    "reconcile dryRun not a boolean": reconcile({"pool": "all", "dryRun": "yes"}, target="dryRun"),
    "reconcile unknown field": reconcile({"pool": "all", "dry_run": True}, code="UnknownField",
                                         target="dry_run"),
    "reconcile body a list": reconcile(["all"], code="InvalidBody", target="body"),
    # --- operations ---
    "operation id with bad characters": Bad("GET", "/api/operations/abc!def", code="InvalidOperationId",
                                            target="operationId"),
    "operation id of another path": Bad("GET", f"/api/operations/{token('/etc/passwd')}",
                                        code="InvalidOperationId", target="operationId"),
    "operation id escaping the path": Bad(
        "GET", f"/api/operations/{token(f'/subscriptions/{SUBSCRIPTION}/../../admin')}",
        code="InvalidOperationId", target="operationId"),
    "operation of another subscription": Bad("GET", f"/api/operations/{token(FOREIGN_OPERATION)}", status=403,
                                             code="SubscriptionNotConfigured", target="operationId"),
    "operation id without api-version": Bad(
        "GET", f"/api/operations/{token(UNKNOWN_OPERATION.split('?')[0])}",
        code="InvalidOperationId", target="operationId"),
    "operation id with an api-version Azure refuses": Bad(
        "GET", f"/api/operations/{token(UNKNOWN_OPERATION.split('?')[0] + '?api-version=1')}",
        code="InvalidOperationId", target="operationId"),
    "operation id with a trailing line break": Bad(
        "GET", f"/api/operations/{token(UNKNOWN_OPERATION + chr(10))}",
        code="InvalidOperationId", target="operationId"),
    "unknown operation": Bad("GET", f"/api/operations/{token(UNKNOWN_OPERATION)}", status=404,
                             code="OperationNotFound", target="operationId"),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_bad_request(api: ApiClient, network: NetworkManagementClient, case: Bad) -> None:
    before = {pool: azure_addresses(network, pool) for pool in (MANUAL_POOL, "pool-app")}

    answer = api.call(case.method, case.path, None if case.body is NO_BODY else case.body, raw_body=case.raw,
                      query=dict(case.query))

    got = (answer.status, answer.error["code"], answer.error["target"])
    assert got == (case.status, case.code, case.target), json.dumps(answer.body)
    assert answer.error["message"]
    assert {pool: azure_addresses(network, pool) for pool in before} == before
