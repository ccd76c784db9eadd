"""`poolsync` as an operator runs it: outputs, exit codes (0 done, 1 failed/refused, 2 usage, 3 not found)
and what ends up in the pools, against the emulator and Azurite."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from cli.main import COMMANDS
from tests.api.helpers import MANUAL_POOL, OTHER_RULE_POOL, UNLISTED_POOL, azure_addresses
from tests.cli.conftest import REPO, Poolsync
from tests.fixtures.arm import LB, POOL, RESOURCE_GROUP, ids

APP_POOL = f"{LB}/{POOL}"


def test_the_console_script_is_the_cli_entry_point() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    module, _, function = scripts["poolsync"].partition(":")
    assert (module, function) == ("cli.main", "main")


def test_help_lists_every_subcommand_and_each_has_its_own(poolsync: Poolsync) -> None:
    top = poolsync("--help", settings=None)
    assert top.code == 0
    for name in COMMANDS:
        assert name in top.stdout
        sub = poolsync(name, "--help", settings=None)
        assert sub.code == 0, name
        assert f"usage: poolsync {name}" in sub.stdout
        assert "exit codes" in sub.stdout
    assert "--force" in poolsync("apply", "--help", settings=None).stdout
    assert "--report-dir" in poolsync("audit", "--help", settings=None).stdout


def test_pools_lists_rule_and_manual_pools(poolsync: Poolsync) -> None:
    table = poolsync("pools")
    assert table.code == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["POOL", "SOURCE", "EXISTS"]
    assert "HELD  REMOVED IN WINDOW" in lines[0]  # the guard's held removals and its window's count
    assert any(line.split()[:2] == [APP_POOL, "rules"] for line in lines)
    assert any(line.split()[:2] == [f"{LB}/{MANUAL_POOL}", "manual"] for line in lines)

    listed = {p["id"]: p for p in poolsync("pools", "-o", "json").json()["pools"]}
    assert listed[ids.pool()]["source"] == "rules"
    assert listed[ids.pool()]["lastReconcile"] is None
    assert (listed[ids.pool()]["heldRemovals"], listed[ids.pool()]["windowRemovals"]) == (0, 0)
    assert listed[ids.pool(MANUAL_POOL)]["windowRemovals"] is None  # poolsync never removes there on its own
    assert ids.pool(UNLISTED_POOL) not in listed


def test_plan_shows_the_diff_and_writes_nothing(poolsync: Poolsync, network: NetworkManagementClient) -> None:
    plan = poolsync("plan", "all")

    assert plan.code == 0, plan.stderr
    assert f"{APP_POOL}: planned (add 3)" in plan.stdout
    assert plan.stdout.count("+ psync-web-") == 3
    assert "dry run" in plan.stdout
    assert azure_addresses(network) == {}
    assert poolsync("diff", APP_POOL, "-o", "json").json()["pools"][0]["plan"]["counts"]["add"] == 3


def test_apply_writes_and_pools_shows_members_and_last_outcome(
    poolsync: Poolsync, network: NetworkManagementClient
) -> None:
    applied = poolsync("apply", POOL)  # the bare pool name is unique among the managed pools

    assert applied.code == 0, applied.stderr
    assert f"{APP_POOL}: written (add 3)" in applied.stdout
    assert len(azure_addresses(network)) == 3
    shown = poolsync("pools", APP_POOL)
    assert shown.code == 0
    assert "last reconcile  written" in shown.stdout
    assert shown.stdout.count("psync-web-") == 3
    detail = poolsync("pools", ids.pool(), "--output", "json").json()
    assert {m["owner"]["vmName"] for m in detail["members"]} == {"web-1", "web-2", "web-3"}
    assert detail["lastReconcile"]["source"] == "http"


def test_apply_is_refused_by_the_guard_until_forced_with_a_reason(
    poolsync: Poolsync, compute: ComputeManagementClient, network: NetworkManagementClient
) -> None:
    assert poolsync("apply", APP_POOL).code == 0
    for name in ("web-1", "web-2"):  # still there, no longer selected: nothing confirms the removal
        vm = compute.virtual_machines.get(RESOURCE_GROUP, name)
        vm.tags = {"poolsync": "false"}
        compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, name, vm).result()

    refused = poolsync("apply", APP_POOL)
    assert refused.code == 1
    assert f"{APP_POOL}: held by the guard (unchanged 1, held 2)" in refused.stdout
    # A hold is not a usage error: it says what was held and the command that applies it anyway.
    assert "error: argument" not in refused.stderr
    assert "held by the guard, nothing written (GuardRefused): would remove 2 of 3" in refused.stderr
    assert f"to apply it anyway: poolsync apply {APP_POOL} --force --reason TEXT" in refused.stderr
    assert "poolsync.guard_refused" not in refused.stderr  # telemetry lines only with --verbose
    assert len(azure_addresses(network)) == 3
    planned = poolsync("plan", APP_POOL)  # a plan was made: exit 0, and it says what would be held
    assert planned.code == 0
    assert "the guard would hold back: would remove 2 of 3" in planned.stderr
    assert "poolsync.guard_refused" in poolsync("plan", APP_POOL, "--verbose").stderr

    no_reason = poolsync("apply", APP_POOL, "--force")
    assert no_reason.code == 2
    assert "argument --reason" in no_reason.stderr
    forced = poolsync("apply", APP_POOL, "--force", "--reason", "scale-in CHG-7", "-o", "json")
    assert forced.code == 0, forced.stderr
    assert forced.json()["pools"][0]["status"] == "written"
    assert len(azure_addresses(network)) == 1


def test_drain_by_ip_and_enable_by_name(poolsync: Poolsync, network: NetworkManagementClient) -> None:
    poolsync("apply", APP_POOL)
    name, entry = sorted(azure_addresses(network).items())[0]
    ip = entry["properties"]["ipAddress"]

    drained = poolsync("drain", APP_POOL, ip)
    assert drained.code == 0, drained.stderr
    assert f"{name} {ip} adminState Down (written)" in drained.stdout
    assert azure_addresses(network)[name]["properties"]["adminState"] == "Down"

    enabled = poolsync("enable", ids.pool(), name, "-o", "json")
    assert enabled.code == 0, enabled.stderr
    assert enabled.json()["addresses"][0]["adminState"] == "None"
    assert azure_addresses(network)[name]["properties"].get("adminState") in (None, "None")


def test_address_errors_name_the_argument(poolsync: Poolsync) -> None:
    missing = poolsync("drain", APP_POOL, "10.0.0.250")
    assert missing.code == 3
    assert "AddressNotFound" in missing.stderr

    malformed = poolsync("drain", APP_POOL, "10.0.0.0/24", "-o", "json")
    assert malformed.code == 2
    assert "argument ADDRESS" in malformed.stderr
    assert malformed.json()["error"]["target"] == "address"


def test_pool_arguments_are_checked(poolsync: Poolsync) -> None:
    # Not managed is one exit code however the pool is named (3, as az's "not found").
    unknown = poolsync("plan", "nope")
    assert unknown.code == 3
    assert "argument POOL" in unknown.stderr and APP_POOL in unknown.stderr
    assert "PoolNotManaged" in unknown.stderr

    not_managed = poolsync("plan", ids.pool(UNLISTED_POOL))
    assert not_managed.code == 3
    assert "PoolNotManaged" in not_managed.stderr
    assert poolsync("plan", f"{LB}/{UNLISTED_POOL}").code == 3

    manual = poolsync("apply", f"{LB}/{MANUAL_POOL}")
    assert manual.code == 1
    assert "ManualPoolNotReconciled" in manual.stderr

    mixed = poolsync("plan", "all", OTHER_RULE_POOL)
    assert mixed.code == 2 and "argument POOL" in mixed.stderr

    malformed = poolsync("pools", "/subscriptions/x/resourceGroups")
    assert malformed.code == 2 and "argument POOL" in malformed.stderr


def test_audit_summarises_and_writes_the_report(poolsync: Poolsync, tmp_path: Path) -> None:
    reports = tmp_path / "reports"

    table = poolsync("audit", "--report-dir", str(reports))

    assert table.code == 0, table.stderr
    assert "(read-only): 2 pools" in table.stdout
    [written] = sorted(reports.glob("*.json"))
    report = json.loads(written.read_text())
    assert report["kind"] == "poolsync.audit" and report["summary"]["pools"] == 2
    assert (reports / f"{report['runId']}.html").read_text().lstrip().lower().startswith("<!doctype html")
    assert f"report stored in audit-reports: {report['artifacts']['json']}" in table.stdout

    as_json = poolsync("audit", "-o", "json").json()
    assert as_json["summary"]["pools"] == 2 and as_json["runId"] != report["runId"]

    shown = poolsync("audit", "show", report["runId"], "-o", "json")
    assert shown.code == 0, shown.stderr
    assert shown.json()["runId"] == report["runId"] and shown.json()["findings"] == report["findings"]
    opened = poolsync("audit", "show", report["runId"], "--open", "--report-dir", str(tmp_path),
                      env={"BROWSER": "true"})  # `true URL`: a browser that opens nothing
    assert opened.code == 0, opened.stderr
    page = tmp_path / f"poolsync-audit-{report['runId']}.html"
    assert f"opened {page}" in opened.stdout and report["runId"] in page.read_text()
    missing = poolsync("audit", "show", "20200101T000000Z-0123abcd")
    assert missing.code == 3 and "ReportNotFound" in missing.stderr


def test_configuration_problems_are_usage_errors(
    poolsync: Poolsync, settings_file: Path, tmp_path: Path
) -> None:
    missing = poolsync("pools", settings=tmp_path / "absent.json")
    assert missing.code == 2
    assert "absent.json" in missing.stderr

    values = json.loads(settings_file.read_text())["Values"]
    values["POOLSYNC_RULES"] = json.dumps({"version": 1, "rules": [{"name": "web", "pool": "not-an-id"}]})
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"Values": values}))
    bad_rules = poolsync("pools", settings=broken)
    assert bad_rules.code == 2
    assert "configuration" in bad_rules.stderr and "web" in bad_rules.stderr

    usage = poolsync("plan", settings=None)
    assert usage.code == 2 and "POOL" in usage.stderr
