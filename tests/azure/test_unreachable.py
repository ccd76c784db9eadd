"""An ARM endpoint that cannot be reached at all, through the real SDK clients and transport: a refused
connection or an unresolvable name ends after `unreachable_attempts` and says which endpoint and why;
a server that answers nothing keeps the normal budget (a timeout mid-request may be a blip)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from azure.core.exceptions import AzureError

from devstack.settings import STATIC_TOKEN
from shared.azure.clients import ArmSettings, AzureClients
from shared.azure.retry import RetrySettings, RetryStats, call_with_retry, classify, unreachable
from tests.fixtures.arm import SUBSCRIPTION
from tests.fixtures.ports import refused_port

FAST = RetrySettings(deadline_seconds=60, max_attempts=30, base_backoff=0.01, max_backoff=0.05)


def get_vnet(endpoint: str, retry: RetrySettings, stats: RetryStats, timeout: float = 60.0) -> AzureError:
    clients = AzureClients(ArmSettings(endpoint=endpoint, static_token=STATIC_TOKEN, timeout=timeout))
    operations = clients.network(SUBSCRIPTION).virtual_networks
    with pytest.raises(AzureError) as failed:
        call_with_retry(lambda: operations.get("rg", "vnet"), settings=retry, stats=stats,
                        operation="GET VNet")
    return failed.value


def test_a_refused_connection_ends_after_three_attempts_naming_the_endpoint() -> None:
    stats = RetryStats()
    with refused_port() as port:
        error = get_vnet(f"https://127.0.0.1:{port}", FAST, stats)
    down = unreachable(error)
    assert down is not None
    assert down.message() == (
        f"Azure Resource Manager unreachable at https://127.0.0.1:{port}: connection refused")
    assert classify(error).reason == "unreachable:refused"
    assert stats.snapshot()["retries"] == {"unreachable": 2}
    assert stats.snapshot()["gave_up"] == {"unreachable": 1}


def test_an_unresolvable_name_ends_the_same_way() -> None:
    stats = RetryStats()
    two_attempts = RetrySettings(**{**FAST.__dict__, "unreachable_attempts": 2})
    error = get_vnet("https://arm.poolsync.invalid", two_attempts, stats)
    down = unreachable(error)
    assert down is not None
    assert down.message() == (
        "Azure Resource Manager unreachable at https://arm.poolsync.invalid:443: name not resolved")
    assert stats.snapshot()["retries"] == {"unreachable": 1}


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"https://127.0.0.1:{server.getsockname()[1]}"  # the kernel accepts; nobody ever answers
    server.close()


def test_a_silent_server_is_not_unreachable_and_keeps_retrying(silent_endpoint: str) -> None:
    stats = RetryStats()
    retry = RetrySettings(deadline_seconds=60, max_attempts=4, base_backoff=0.01, max_backoff=0.05)
    error = get_vnet(silent_endpoint, retry, stats, timeout=0.5)
    assert unreachable(error) is None
    assert classify(error).reason == "connection"
    assert stats.snapshot()["retries"] == {"connection": 3}  # every attempt the policy allows
