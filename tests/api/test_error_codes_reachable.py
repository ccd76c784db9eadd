"""Every documented error code is reachable (issue 21): the codes no other test provokes, each provoked
through the API as a caller would meet it, and a check that every code in ERROR_CODES is asserted by some
test under tests/, so a new documented code without a test fails."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from emulator import Emulator, faults
from shared.api import pools as pools_api
from shared.api.models import ERROR_CODES
from tests.api.conftest import Configure
from tests.api.helpers import LOOSE_POOL, MANUAL_POOL, ApiClient, manual_pools, pool_path
from tests.fixtures.arm import POOL, ids

TESTS = Path(__file__).resolve().parents[1]


def test_a_short_pool_name_two_load_balancers_share_is_ambiguous(
    world: Emulator, configure: Configure
) -> None:
    configure(POOLSYNC_MANUAL_POOLS=manual_pools() + "," + ids.pool(MANUAL_POOL, "lb-second"))

    answer = ApiClient().call("POST", "/api/reconcile", {"pool": MANUAL_POOL, "dryRun": True})

    assert answer.status == 400
    assert (answer.error["code"], answer.error["target"]) == ("AmbiguousPool", "pool")
    assert "lb-second/" + MANUAL_POOL in answer.error["message"]  # the candidates are named


def test_azure_refusing_a_manual_write_is_azure_rejected(world: Emulator, api: ApiClient) -> None:
    world.set_profile("default", strict_resources=True, max_addresses_per_pool=1)
    assert api.call("POST", pool_path(MANUAL_POOL) + "/addresses", {"ipAddress": "10.0.5.10"}).status == 200

    answer = api.call("POST", pool_path(MANUAL_POOL) + "/addresses", {"ipAddress": "10.0.5.11"})

    assert answer.status == 409
    assert (answer.error["code"], answer.error["target"]) == ("AzureRejected", "pool")
    assert "LoadBalancerBackendAddressPoolSizeLimitExceeded" in answer.error["message"]


def test_azure_answering_503_past_the_retry_budget_is_azure_unavailable(
    world: Emulator, configure: Configure
) -> None:
    configure(POOLSYNC_RETRY_MAX_ATTEMPTS="2")
    world.faults.add(faults.UNAVAILABLE, method="GET", retry_after=2)

    answer = ApiClient().call("GET", pool_path())

    assert answer.status == 503
    assert answer.error["code"] == "AzureUnavailable"
    assert int(answer.headers["Retry-After"]) >= 1


def test_an_unexpected_exception_is_internal_error_without_its_details(
    api: ApiClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object) -> None:
        raise RuntimeError("secret-detail at /srv/internal/path")

    monkeypatch.setattr(pools_api, "_read_lb", broken)

    answer = api.call("GET", "/api/pools")

    assert answer.status == 500
    assert answer.error["code"] == "InternalError"
    assert answer.error.get("target") is None
    text = str(answer.body)
    assert "secret-detail" not in text and "/srv/internal" not in text and "RuntimeError" not in text


def test_additions_over_azures_pool_limit_are_pool_write_rejected(world: Emulator, api: ApiClient) -> None:
    world.set_profile("default", strict_resources=True, max_addresses_per_pool=2)

    answer = api.call("POST", "/api/reconcile", {"pool": ids.pool()})

    assert answer.status == 422
    assert (answer.error["code"], answer.error["target"]) == ("PoolWriteRejected", "pool")
    assert "LoadBalancerBackendAddressPoolSizeLimitExceeded" in answer.error["message"]
    [outcome] = answer.body["pools"]
    assert (outcome["pool"], outcome["status"]) == (ids.pool(POOL), "rejected")


def test_an_address_for_a_virtual_network_that_does_not_exist_is_virtual_network_not_found(
    api: ApiClient,
) -> None:
    missing = ids.vnet().rsplit("/", 1)[0] + "/vnet-missing"

    answer = api.call("POST", pool_path(LOOSE_POOL) + "/addresses",
                      {"ipAddress": "10.9.0.10", "virtualNetwork": missing})

    assert answer.status == 404
    assert (answer.error["code"], answer.error["target"]) == ("VirtualNetworkNotFound", "virtualNetwork")
    assert "vnet-missing" in answer.error["message"]


def test_every_documented_error_code_is_asserted_by_a_test() -> None:
    sources = "\n".join(path.read_text(encoding="utf-8") for path in sorted(TESTS.rglob("test_*.py")))
    untested = [code for code in ERROR_CODES if not re.search(rf"""["']{code}["']""", sources)]
    assert not untested, f"documented error codes no test asserts: {untested}"
