"""Start-up: the process runtime checks the rules against Azure before serving anything."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devstack.settings import local_settings
from shared.app.runtime import get_runtime, set_runtime
from shared.core.rules import RulesError
from tests.app.test_reconciler import rules_document
from tests.fixtures.arm import ids, topology
from tests.fixtures.ports import refused_port


@pytest.fixture(autouse=True)
def fresh_runtime() -> Iterator[None]:
    set_runtime(None)
    yield
    set_runtime(None)


def use_settings(monkeypatch: pytest.MonkeyPatch, settings: dict[str, str]) -> None:
    for key, value in settings.items():
        monkeypatch.setenv(key, value)


def test_rules_that_azure_contradicts_stop_the_app_naming_rule_and_field(arm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    arm.reset(topology(sku="Basic"))
    use_settings(monkeypatch, local_settings(arm.url, arm.ca_path, rules=rules_document(
        cidrs=["10.0.0.0/24", "172.16.0.0/24"])))
    with pytest.raises(RulesError) as failed:
        get_runtime()
    text = str(failed.value)
    assert "rule 'web' (rules[0].cidrs[1])" in text and "172.16.0.0/24" in text
    assert "Basic" in text
    assert arm.stats.requests("PUT") == 0


def test_valid_rules_start_and_are_checked_once(arm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    arm.reset(topology(vms=2))
    use_settings(monkeypatch, local_settings(arm.url, arm.ca_path, rules=rules_document()))
    runtime = get_runtime()
    reads = arm.stats.requests("GET")
    assert reads > 0  # the VNet and the load balancer were read
    assert get_runtime() is runtime
    assert arm.stats.requests("GET") == reads


def test_unreachable_azure_does_not_block_start_up(arm, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    with refused_port() as port:
        closed = f"https://127.0.0.1:{port}"
        use_settings(monkeypatch, local_settings(closed, arm.ca_path, rules=rules_document(),
                                                 POOLSYNC_RETRY_DEADLINE="1",
                                                 POOLSYNC_RETRY_MAX_ATTEMPTS="1"))
        assert get_runtime().rules.rules[0].name == "web"
    assert "not checked against Azure" in caplog.text


def test_start_up_against_a_refused_endpoint_says_so_without_waiting_out_the_deadline(  # type: ignore[no-untyped-def]
    arm, monkeypatch, caplog
) -> None:
    with refused_port() as port:
        # The default retry budget (120 s, 30 attempts): only the short one for a refused connection applies.
        use_settings(monkeypatch, local_settings(f"https://127.0.0.1:{port}", arm.ca_path,
                                                 rules=rules_document(), POOLSYNC_RETRY_BASE_BACKOFF="0.05"))
        assert get_runtime().rules.rules[0].name == "web"
    assert (f"not checked against Azure (unreachable): Azure Resource Manager unreachable at "
            f"https://127.0.0.1:{port}: connection refused") in caplog.text
    assert caplog.text.count("poolsync.retry ") == 2  # attempts 1 and 2 retried; the third gives up


def test_a_pool_with_sync_mode_automatic_stops_the_app(arm, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    arm.reset(topology())
    arm.world.put_pool(ids.pool(), {"properties": {"syncMode": "Automatic"}})  # as Azure returns it
    use_settings(monkeypatch, local_settings(arm.url, arm.ca_path, rules=rules_document()))
    with pytest.raises(RulesError) as failed:
        get_runtime()
    assert (f"rule 'web' (rules[0].pool): pool {ids.pool()} has syncMode Automatic; "
            "poolsync can only manage Manual/unspecified pools") in str(failed.value)
    assert arm.stats.requests("PUT") == 0
