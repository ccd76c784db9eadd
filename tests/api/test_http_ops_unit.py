"""Pure parts of shared.api: operation ids, settings parsing, the caller, names. No I/O."""

from __future__ import annotations

import base64
import json

import pytest

from shared.api.addresses import default_address_name, parse_ip
from shared.api.arm_answers import operation_path, operation_token
from shared.api.context import parse_manual_pools
from shared.api.http import ApiError, ApiRequest
from shared.api.operations import authorize, client_principal
from shared.core.naming import AZURE_NAME_RE, is_managed_name
from tests.fixtures.arm import SUBSCRIPTION, ids

ENDPOINT = "https://127.0.0.1:8443"
OPERATION = (f"/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Network/locations/westeurope/operations/"
             "5d5d2c80-8c1e-4f0e-9a34-52a1b3f5a9e0?api-version=2024-05-01")


def test_operation_ids_round_trip_for_the_configured_endpoint() -> None:
    token = operation_token(ENDPOINT + OPERATION, ENDPOINT)

    assert token is not None
    assert operation_path(token) == (OPERATION, SUBSCRIPTION)


@pytest.mark.parametrize("url", [
    "https://evil.example" + OPERATION,  # another host
    "http://127.0.0.1:8443" + OPERATION,  # another scheme
    "https://127.0.0.1:9999" + OPERATION,  # another port
    ENDPOINT + ids.lb(),  # not an operation
    None,
])
def test_no_operation_id_is_issued_for_other_urls(url: str | None) -> None:
    assert operation_token(url, ENDPOINT) is None


@pytest.mark.parametrize("path", ["https://evil.example" + OPERATION, "//evil.example" + OPERATION,
                                  OPERATION + "&x=1", OPERATION.replace("westeurope", "west/../europe")])
def test_operation_ids_cannot_carry_other_targets(path: str) -> None:
    forged = base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")

    with pytest.raises(ApiError) as refused:
        operation_path(forged)
    assert (refused.value.status, refused.value.code) == (400, "InvalidOperationId")


def test_manual_pools_setting_is_parsed_strictly() -> None:
    parsed = parse_manual_pools(f" {ids.pool('a')} ,, {ids.pool('A')}")
    assert parsed == {ids.pool("a").lower(): ids.pool("a")}
    assert parse_manual_pools("") == {}
    with pytest.raises(ValueError, match=r"entry 2 is a Microsoft\.Network/virtualNetworks id"):
        parse_manual_pools(f"{ids.pool('a')},{ids.vnet()}")
    with pytest.raises(ValueError, match="entry 1"):
        parse_manual_pools("/subscriptions/x/../../pool")


def principal(document: object) -> ApiRequest:
    encoded = base64.b64encode(json.dumps(document).encode()).decode()
    return ApiRequest("GET", headers={"x-ms-client-principal": encoded})


def test_roles_come_from_the_role_claim_type_the_principal_names() -> None:
    request = principal({"claims": [{"typ": "app_role", "val": "Ops"}, {"typ": "name", "val": "ann"}],
                         "role_typ": "app_role"})

    assert client_principal(request) is not None
    assert authorize(request, "Ops") == client_principal(request)
    with pytest.raises(ApiError) as refused:
        authorize(request, "Admin")
    assert refused.value.status == 403


def test_without_a_required_role_anyone_with_a_key_passes() -> None:
    assert authorize(ApiRequest("GET"), None) is None


@pytest.mark.parametrize("ip", ["10.0.5.10", "192.168.255.254", "fd00:1::10", "2001:db8::", "fd00::1:0:0:1"])
def test_default_names_are_valid_azure_names_and_never_poolsyncs(ip: str) -> None:
    name = default_address_name(parse_ip(ip, "ipAddress"))

    assert AZURE_NAME_RE.match(name)
    assert not is_managed_name(name)


def test_ips_are_canonical() -> None:
    assert str(parse_ip("FD00:0:0::A", "ipAddress")) == "fd00::a"
