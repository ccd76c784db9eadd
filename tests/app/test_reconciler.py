"""Full reconciles through Runtime against the emulator: rules in, pools out."""

from __future__ import annotations

import pytest

from devstack.settings import local_settings
from shared.app.reconciler import UnmanagedPool
from shared.app.runtime import Runtime
from shared.azure.retry import RetryStats
from tests.fixtures.arm import RESOURCE_GROUP, SUBSCRIPTION, ids, topology


def rules_document(**overrides: object) -> dict:
    rule = {"name": "web", "pool": ids.pool(), "virtualNetwork": ids.vnet(), "cidrs": ["10.0.0.0/24"],
            "tags": {"poolsync": "true"}}
    rule.update(overrides)
    return {"version": 1, "rules": [rule]}


def runtime_for(arm, rules: dict) -> Runtime:  # type: ignore[no-untyped-def]
    env = local_settings(arm.url, arm.ca_path, rules=rules, POOLSYNC_RETRY_AFTER_CAP="0.2",
                         POOLSYNC_RETRY_BASE_BACKOFF="0.02")
    return Runtime.from_env(env, retry_stats=RetryStats())


def test_reconcile_fills_pool_with_matching_vms_only(arm) -> None:  # type: ignore[no-untyped-def]
    arm.reset(topology(vms=5))
    arm.load_topology({"virtual_machines": [
        {"name": "db-1", "subnet": "vnet-app/default", "tags": {"role": "db"}}]})
    runtime = runtime_for(arm, rules_document())
    outcomes = runtime.reconciler.reconcile()
    assert [o.status for o in outcomes] == ["written"]
    pool = runtime.writer.read(ids.pool())
    web_ips = {ip.private_ip for nic in runtime.inventory.subscription(SUBSCRIPTION).nics.values()
               if nic.name.startswith("web") for ip in nic.ip_configurations}
    assert {a.ip_address for a in pool.addresses} == web_ips
    assert len(web_ips) == 5
    # A second reconcile has nothing to do and writes nothing.
    writes = arm.stats.pool_writes(ids.pool())
    assert [o.status for o in runtime.reconciler.reconcile()] == ["unchanged"]
    assert arm.stats.pool_writes(ids.pool()) == writes


def test_dry_run_plans_without_writing(arm) -> None:  # type: ignore[no-untyped-def]
    arm.reset(topology(vms=3))
    runtime = runtime_for(arm, rules_document())
    [outcome] = runtime.reconciler.reconcile(dry_run=True)
    assert outcome.status == "planned" and len(outcome.plan.adds) == 3
    assert "+ psync-" in outcome.as_dict()["diff"]
    assert arm.stats.requests("PUT") == 0


def test_unmanaged_pool_is_refused(arm) -> None:  # type: ignore[no-untyped-def]
    arm.reset(topology(lbs=[{"name": "lb-app", "sku": "Standard", "pools": [{"name": "pool-app"},
                                                                                {"name": "other"}]}]))
    runtime = runtime_for(arm, rules_document())
    with pytest.raises(UnmanagedPool):
        runtime.reconciler.reconcile([ids.pool("other")])
    assert arm.stats.requests("PUT") == 0


def test_scale_in_beyond_the_guard_is_refused(arm, compute) -> None:  # type: ignore[no-untyped-def]
    arm.reset(topology(vms=4))
    runtime = runtime_for(arm, rules_document())
    runtime.reconciler.reconcile()
    for name in ("web-1", "web-2", "web-3"):
        compute.virtual_machines.begin_delete(RESOURCE_GROUP, name).result()
    [outcome] = runtime.reconciler.reconcile()
    assert outcome.status == "refused"
    assert len(runtime.writer.read(ids.pool()).addresses) == 4  # untouched
    [forced] = runtime.reconciler.reconcile(force=True, force_reason="planned scale-in")
    assert forced.status == "written"
    assert len(runtime.writer.read(ids.pool()).addresses) == 1


def test_startup_validation_reports_basic_sku_and_cidr_outside_vnet(arm) -> None:  # type: ignore[no-untyped-def]
    arm.reset(topology(sku="Basic"))
    runtime = runtime_for(arm, rules_document(cidrs=["10.0.0.0/24", "172.16.0.0/24"]))
    problems = [str(p) for p in runtime.reconciler.validate_against_azure()]
    assert any("Basic" in p for p in problems), problems
    assert any("172.16.0.0/24" in p for p in problems), problems
