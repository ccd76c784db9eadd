"""The audit against a seeded emulator world: exact findings, remediation, the stored report."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from jsonschema import Draft202012Validator

from emulator import Emulator
from shared.audit.collect import run_audit
from shared.audit.report import render_html, report_schema, validate_report
from shared.storage.report_store import DrainLedger, ReportStore, report_location
from tests.audit.helpers import (
    FRONTEND_IP,
    SEEDED_RULES,
    SEEDED_TOPOLOGY,
    ReportPage,
    add_nat_rule_on_pool,
    current_name,
    make_runtime,
    managed,
    rule,
)
from tests.fixtures.arm import POOL, ids, topology

NOW = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
APP = ids.pool("pool-app", "lb-app")


@pytest.fixture
def seeded(arm: Emulator, network, storage_connection_string: str, unique_name: str):
    arm.reset(SEEDED_TOPOLOGY)
    add_nat_rule_on_pool(network, "lb-app", "pool-nat")
    runtime = make_runtime(
        arm,
        storage_connection_string,
        SEEDED_RULES,
        POOLSYNC_DRAIN_TABLE=unique_name,
        POOLSYNC_DRAIN_MAX_AGE="P7D",
    )
    # web-1 was drained through poolsync ten days ago; ops-1 was set Down by hand (no record yet).
    ledger = DrainLedger(runtime.storage, unique_name)
    ledger.record_drain(APP, managed("web-1-nic"), NOW - timedelta(days=10))
    return runtime


def found(report) -> set[tuple[str, str, str | None]]:
    """(code, pool or rule name, address) of every finding."""
    return {
        (
            f["code"],
            (f["pool"] or "").rsplit("/", 1)[-1] if f["rule"] is None else f"rule:{f['rule']}",
            f["address"],
        )
        for f in report["findings"]
    }


def expected(arm: Emulator) -> set[tuple[str, str, str | None]]:
    """The seeded findings; web-2 is missing, so its expected name is the one with its NIC's guid."""
    return {*EXPECTED_SEEDED, ("missing_address", "pool-app", current_name(arm, "web-2-nic"))}


EXPECTED_SEEDED = {
    ("stale_address", "pool-app", managed("gone-nic")),
    ("owner_changed", "pool-app", managed("old-nic")),
    ("not_selected", "pool-app", managed("web-4-nic")),
    ("duplicate_address", "pool-app", managed("web-1-nic")),
    ("address_outside_vnet", "pool-app", "dup-web-1"),
    ("non_vm_backend", "pool-app", "pe-entry"),
    ("non_vm_backend", "pool-app", "lb-frontend"),
    ("unmanaged_orphan", "pool-app", "hand-added"),
    ("drain_overdue", "pool-app", managed("web-1-nic")),
    ("basic_sku", "pool-basic", None),
    ("mixed_members", "pool-nic", None),
    ("nat_rule_on_ip_pool", "pool-nat", None),
    ("rule_pool_missing", "rule:gone", None),
    ("rule_vnet_missing", "rule:gone", None),
    ("rule_cidr_outside_vnet", "rule:nat-outside", None),
    ("rules_cidr_overlap", "rule:nat", None),
}


def test_read_only_audit_reports_exactly_the_seeded_problems(arm: Emulator, seeded):
    report = run_audit(seeded, now=NOW)

    validate_report(report)
    assert found(report) == expected(arm)
    assert len(report["findings"]) == len(expected(arm))
    by_key = {(f["code"], f["address"]): f for f in report["findings"]}
    assert by_key[("non_vm_backend", "pe-entry")]["evidence"]["target"] == "private_endpoint"
    lb_frontend = by_key[("non_vm_backend", "lb-frontend")]
    assert lb_frontend["evidence"]["owner"] == f"{ids.lb('lb-app')}/frontendIPConfigurations/internal"
    assert lb_frontend["ip"] == FRONTEND_IP
    owner = by_key[("owner_changed", managed("old-nic"))]
    assert owner["evidence"]["vm"] == ids.vm("web-3")
    assert owner["evidence"]["expectedName"] == current_name(arm, "web-3-nic")
    drained = by_key[("drain_overdue", managed("web-1-nic"))]["evidence"]
    assert (drained["source"], drained["ageSeconds"]) == ("poolsync", 10 * 86400)
    duplicate = by_key[("duplicate_address", managed("web-1-nic"))]
    assert sorted(duplicate["evidence"]["names"]) == sorted([managed("web-1-nic"), "dup-web-1"])
    assert {f["severity"] for f in report["findings"] if f["category"] == "platform"} <= {"error", "warning"}
    # Drift that remediation fixes is marked so; hand-made problems are not.
    assert {f["address"] for f in report["findings"] if f["remediable"]} == {
        current_name(arm, "web-2-nic"),
        managed("gone-nic"),
        managed("old-nic"),
        managed("web-4-nic"),
    }
    # Read-only: nothing written, and reads were list calls, not a GET per VM or pool.
    assert arm.stats.requests("PUT") == 1  # the NAT rule the fixture added
    assert arm.stats.requests("GET", "Microsoft.Compute/virtualMachines") == 1
    assert arm.stats.requests("GET", "Microsoft.Network/loadBalancers/backendAddressPools") == 0
    summary = report["summary"]
    assert summary["bySeverity"] == {
        "error": sum(1 for f in report["findings"] if f["severity"] == "error"),
        "warning": sum(1 for f in report["findings"] if f["severity"] == "warning"),
        "info": 1,
    }
    assert (summary["pools"], summary["poolsMissing"], report["mode"]) == (5, 1, "read-only")


def test_ages_of_down_entries_are_remembered_between_runs(seeded, unique_name: str):
    run_audit(seeded, now=NOW)
    ledger = DrainLedger(seeded.storage, unique_name).read()
    ops = ledger[(APP.lower(), "ops-1")]
    assert (ops.since, ops.source) == (NOW, "observed")

    later = run_audit(seeded, now=NOW + timedelta(days=8))
    overdue = {f["address"]: f["evidence"] for f in later["findings"] if f["code"] == "drain_overdue"}
    assert overdue["ops-1"]["downSince"] == NOW.isoformat()
    assert overdue["ops-1"]["source"] == "observed"
    assert managed("web-1-nic") in overdue


def test_remediation_fixes_drift_and_leaves_unmanaged_entries_alone(arm: Emulator, seeded):
    report = run_audit(seeded, remediate=True, now=NOW)

    validate_report(report)
    (outcome,) = report["remediation"]["outcomes"]
    assert (outcome["pool"], outcome["status"]) == (APP, "written")
    changes = outcome["changes"]
    assert {c["name"] for c in changes["added"]} == {current_name(arm, "web-2-nic")}
    assert {c["name"] for c in changes["removed"]} == {
        managed("gone-nic"),
        managed("old-nic"),
        managed("web-4-nic"),
    }
    assert report["summary"]["poolsChanged"] == 1
    fixed = {f["address"]: f["remediation"] for f in report["findings"] if f["remediable"]}
    assert set(fixed.values()) == {"written"}

    pool = arm.world.get_pool(APP)
    entries = {a["name"]: a["properties"] for a in pool["properties"]["loadBalancerBackendAddresses"]}
    assert set(entries) == {  # the seeded legacy names are renamed to the NICs' current names
        current_name(arm, "web-1-nic"),
        current_name(arm, "web-2-nic"),
        current_name(arm, "web-5-nic"),
        current_name(arm, "web-6-nic"),
        current_name(arm, "web-7-nic"),
        "dup-web-1",
        "pe-entry",
        "lb-frontend",
        "hand-added",
        "ops-1",
    }
    assert entries[current_name(arm, "web-2-nic")]["ipAddress"] == "10.0.0.12"
    assert entries[current_name(arm, "web-1-nic")]["adminState"] == "Down"  # a drain survives the rename
    assert entries["ops-1"]["adminState"] == "Down"

    after = run_audit(seeded, now=NOW)
    drift = {f["code"] for f in after["findings"] if f["category"] == "drift"}
    assert drift == {"duplicate_address"}  # web-1 and the hand-added dup-web-1: not poolsync's to fix
    assert {f["address"] for f in after["findings"] if f["code"] == "unmanaged_orphan"} == {"hand-added"}


def test_report_is_stored_as_json_and_html_with_the_counts(seeded):
    report = run_audit(seeded, now=NOW)

    location = report_location(report["runId"], NOW)
    assert report["artifacts"] == {
        "container": "audit-reports",
        "json": f"2026/11/25/{report['runId']}.json",
        "html": f"2026/11/25/{report['runId']}.html",
    }
    store = ReportStore(seeded.storage)
    assert store.read_json(location) == report

    page = ReportPage(store.read_html(location))
    summary = report["summary"]
    assert page.counts == {
        "pools": summary["pools"],
        "poolsMissing": summary["poolsMissing"],
        "findings": summary["findings"],
        "error": summary["bySeverity"]["error"],
        "warning": summary["bySeverity"]["warning"],
        "info": summary["bySeverity"]["info"],
        "remediable": summary["remediable"],
        "poolsChanged": 0,
    }
    assert page.code_counts == summary["byCode"]
    assert report["runId"] in page.title
    rows = page.pool_rows[APP]
    assert len(rows) == sum(1 for f in report["findings"] if f["pool"] == APP)
    assert ("sev-error", "owner_changed") in rows
    assert ("sev-warning", "unmanaged_orphan") in rows
    assert page.pool_rows[ids.pool("pool-basic", "lb-basic")] == [("sev-error", "basic_sku")]


def test_remediation_goes_through_the_guard_and_records_the_refusal(
    arm: Emulator, storage_connection_string: str, unique_name: str
):
    # Three of four managed entries belong to VMs that no longer exist: removing them is too much.
    arm.reset(topology(1))
    for number in (2, 3, 4):
        arm.world.add_pool_address(
            ids.pool(), managed(f"web-{number}-nic"), f"10.0.0.{20 + number}", ids.vnet()
        )
    runtime = make_runtime(
        arm,
        storage_connection_string,
        {"version": 1, "rules": [rule("web", f"lb-app/{POOL}", ["10.0.0.0/24"])]},
        POOLSYNC_DRAIN_TABLE=unique_name,
    )
    before = arm.world.pool_address_ips(ids.pool())

    report = run_audit(runtime, remediate=True)

    validate_report(report)
    (outcome,) = report["remediation"]["outcomes"]
    assert outcome["status"] == "refused"
    assert "managed addresses, more than the allowed 0.5" in outcome["detail"]
    # Nothing proves those VMs are gone (no read of theirs, no index row): their removal is held back,
    # and nothing else is taken out of the pool.
    assert outcome["changes"]["removed"] == []
    assert before <= arm.world.pool_address_ips(ids.pool())
    assert "refused" in {f["remediation"] for f in report["findings"] if f["remediable"]}


def test_sync_mode_automatic_and_failed_pools_read_from_azure_are_reported(
    arm: Emulator, storage_connection_string: str, unique_name: str
):
    pools = [{"name": "pool-auto"}, {"name": "pool-failed"}]
    arm.reset(topology(1, lbs=[{"name": "lb-app", "sku": "Standard", "pools": pools}]))
    # As Azure returns them: an Automatic pool, and one a failed operation left in provisioningState Failed.
    arm.world.put_pool(ids.pool("pool-auto"), {"properties": {"syncMode": "Automatic"}})
    arm.world.put_pool(ids.pool("pool-failed"), {"properties": {}}, state="Failed")
    runtime = make_runtime(
        arm,
        storage_connection_string,
        {"version": 1, "rules": [rule("auto", "lb-app/pool-auto", ["10.0.0.0/25"]),
                                 rule("failed", "lb-app/pool-failed", ["10.0.0.128/25"])]},
        POOLSYNC_DRAIN_TABLE=unique_name,
    )

    report = run_audit(runtime, now=NOW)

    validate_report(report)
    assert found(report) == {("sync_mode_automatic", "pool-auto", None),
                             ("pool_provisioning_failed", "pool-failed", None)}
    by_code = {f["code"]: f for f in report["findings"]}
    assert (by_code["sync_mode_automatic"]["severity"], by_code["sync_mode_automatic"]["remediable"]) == (
        "error", False)
    assert (by_code["pool_provisioning_failed"]["severity"],
            by_code["pool_provisioning_failed"]["remediable"]) == ("error", True)
    pools = {pool["id"]: pool for pool in report["pools"]}
    assert (pools[ids.pool("pool-auto")]["syncMode"], pools[ids.pool("pool-auto")]["blocked"]) == (
        "Automatic", True)
    assert pools[ids.pool("pool-failed")]["provisioningState"] == "Failed"
    assert arm.stats.requests("PUT") == 0


def test_the_report_schema_is_a_valid_schema():
    Draft202012Validator.check_schema(report_schema())


def test_the_report_reads_in_half_a_minute(seeded):
    """Members with their VM and admin state, the poolsync command that fixes each finding it can, short
    names with the full id on hover, and a duration rather than timestamps."""
    report = run_audit(seeded, now=NOW)
    validate_report(report)

    app = next(pool for pool in report["pools"] if pool["id"] == APP)
    members = {m["name"]: m for m in app["members"]}
    assert len(members) == app["addresses"]
    drained = members[managed("web-1-nic")]
    assert drained["adminState"] == "Down" and drained["owner"] == "vm"
    assert drained["vm"].lower().endswith("/virtualmachines/web-1")

    commands = {(f["code"], f["address"]): f["command"] for f in report["findings"] if f["pool"] == APP}
    enable = f"poolsync enable lb-app/pool-app {managed('web-1-nic')}"
    assert commands[("drain_overdue", managed("web-1-nic"))] == enable
    assert all(command == "poolsync apply lb-app/pool-app"
               for (code, _), command in commands.items() if code in ("stale_address", "missing_address"))
    orphans = [f for f in report["findings"] if f["code"] == "unmanaged_orphan"]
    assert orphans and all(f["command"].startswith("poolsync remove ") for f in orphans)

    page = render_html(report)
    assert f'<span title="{APP}">lb-app/pool-app</span>' in page
    assert f"<code>{enable}</code>" in page
    assert "took " in page and report["startedAt"] not in page  # no microsecond timestamps
