"""What operators coming from az expect of `poolsync`: add/remove/show with an address file, output formats
and --query, --version, quiet telemetry, the lease store required for writes, addresses named by VM, and
--force recorded under the signed-in principal."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import yaml
from azure.mgmt.network import NetworkManagementClient

from tests.api.helpers import MANUAL_POOL, azure_addresses
from tests.cli.conftest import Poolsync
from tests.fixtures.arm import LB, POOL

APP_POOL = f"{LB}/{POOL}"
MANUAL = f"{LB}/{MANUAL_POOL}"


def edited_settings(settings_file: Path, tmp_path: Path, drop: tuple[str, ...] = (), **values: str) -> Path:
    document = json.loads(settings_file.read_text())
    for key in drop:
        document["Values"].pop(key)
    document["Values"].update(values)
    path = tmp_path / "edited.settings.json"
    path.write_text(json.dumps(document))
    return path


def test_add_show_and_remove_by_ip_file_and_name(
    poolsync: Poolsync, network: NetworkManagementClient, tmp_path: Path
) -> None:
    added = poolsync("add", MANUAL, "10.0.5.10", "--name", "legacy-1")
    assert added.code == 0, added.stderr
    assert f"{MANUAL}: legacy-1 10.0.5.10 (written)" in added.stdout

    # The file az's --backend-address-config-file takes: a list of objects with its kebab-case keys.
    config = tmp_path / "addresses.json"
    config.write_text(json.dumps([{"name": "fw-a", "ip-address": "10.0.5.20"},
                                  {"name": "fw-b", "ip-address": "10.0.5.21", "admin-state": "Down"}]))
    from_file = poolsync("add", MANUAL, "--backend-address-config-file", str(config), "-o", "json")
    assert from_file.code == 0, from_file.stderr
    assert [a["name"] for a in from_file.json()["addresses"]] == ["fw-a", "fw-b"]
    held = azure_addresses(network, MANUAL_POOL)
    assert {name: e["properties"]["ipAddress"] for name, e in held.items()} == {
        "legacy-1": "10.0.5.10", "fw-a": "10.0.5.20", "fw-b": "10.0.5.21"}
    assert held["fw-b"]["properties"]["adminState"] == "Down"

    shown = poolsync("show", MANUAL)
    assert shown.code == 0, shown.stderr
    assert [line.split()[:2] for line in shown.stdout.splitlines() if "10.0.5." in line] == [
        ["legacy-1", "10.0.5.10"], ["fw-a", "10.0.5.20"], ["fw-b", "10.0.5.21"]]

    # The same validation as the API, naming where the problem is.
    config.write_text(json.dumps([{"ip-address": "10.0.5.0/24"}]))
    invalid = poolsync("add", MANUAL, "--backend-address-config-file", str(config))
    assert invalid.code == 2
    assert "argument --backend-address-config-file" in invalid.stderr and "InvalidIpAddress" in invalid.stderr
    assert poolsync("add", MANUAL).code == 2  # neither IPs nor a file

    removed = poolsync("remove", MANUAL, "fw-a")
    assert removed.code == 0, removed.stderr
    assert f"{MANUAL}: fw-a 10.0.5.20 (written)" in removed.stdout
    assert poolsync("remove", MANUAL, "10.0.5.21").code == 0
    assert set(azure_addresses(network, MANUAL_POOL)) == {"legacy-1"}


def test_addresses_by_vm_name_and_close_matches(poolsync: Poolsync, network: NetworkManagementClient) -> None:
    assert poolsync("apply", APP_POOL).code == 0
    drained = poolsync("drain", APP_POOL, "web-2", "-o", "json")
    assert drained.code == 0, drained.stderr
    [entry] = drained.json()["addresses"]
    assert azure_addresses(network)[entry["name"]]["properties"]["adminState"] == "Down"

    typo = poolsync("enable", APP_POOL, "web-22")
    assert typo.code == 3
    assert "no address, entry or VM called 'web-22'" in typo.stderr and "did you mean" in typo.stderr
    assert "web-2" in typo.stderr
    assert poolsync("enable", APP_POOL, "WEB-2").code == 0


def test_output_formats_query_and_version(poolsync: Poolsync) -> None:
    as_json = poolsync("pools", "-o", "json").json()
    ids_only = poolsync("pools", "--query", "pools[].id", "-o", "json")
    assert ids_only.json() == [p["id"] for p in as_json["pools"]]
    assert poolsync("pools", "--query", "pools[].id", "-o", "tsv").stdout.splitlines() == ids_only.json()
    assert yaml.safe_load(poolsync("pools", "-o", "yaml").stdout) == as_json
    coloured = poolsync("pools", "-o", "jsonc").stdout
    assert "\x1b[" in coloured and json.loads(_strip_ansi(coloured)) == as_json
    none = poolsync("pools", "-o", "none")
    assert none.code == 0 and none.stdout == ""
    table = poolsync("pools", "--query", "pools[].{pool: id, members: memberCount}")
    assert table.stdout.splitlines()[0].split() == ["POOL", "MEMBERS"]

    bad = poolsync("pools", "--query", "pools[")
    assert bad.code == 2 and "argument --query" in bad.stderr

    version = poolsync("--version", settings=None)
    assert version.code == 0 and version.stdout.startswith("poolsync ")


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def test_writes_need_the_lease_store_unless_told(
    poolsync: Poolsync, settings_file: Path, tmp_path: Path, network: NetworkManagementClient
) -> None:
    no_storage = edited_settings(settings_file, tmp_path, drop=("AzureWebJobsStorage",))
    refused = poolsync("apply", APP_POOL, settings=no_storage)
    assert refused.code == 2
    assert "--without-lease" in refused.stderr and "AzureWebJobsStorage" in refused.stderr
    assert azure_addresses(network) == {}
    assert poolsync("pools", settings=no_storage).code == 0  # reads need no lease
    allowed = poolsync("apply", APP_POOL, "--without-lease", settings=no_storage)
    assert allowed.code == 0, allowed.stderr
    assert len(azure_addresses(network)) == 3


def test_force_is_recorded_under_the_signed_in_principal(
    poolsync: Poolsync, settings_file: Path, tmp_path: Path
) -> None:
    claims = base64.urlsafe_b64encode(json.dumps({"upn": "oncall@contoso.example"}).encode()).decode()
    signed_in = edited_settings(settings_file, tmp_path,
                                POOLSYNC_ARM_STATIC_TOKEN=f"e30.{claims.rstrip('=')}.sig")
    assert poolsync("apply", APP_POOL, settings=signed_in).code == 0
    forced = poolsync("drain", APP_POOL, "web-1", "--force", "--reason", "CHG-9", settings=signed_in)
    assert forced.code == 0, forced.stderr
    assert "drain address on" in forced.stderr
    assert "by oncall@contoso.example with force: CHG-9" in forced.stderr
    assert "function key" not in forced.stderr


def test_a_failed_sign_in_says_what_to_do(poolsync: Poolsync, settings_file: Path, tmp_path: Path) -> None:
    no_token = edited_settings(settings_file, tmp_path, drop=("POOLSYNC_ARM_STATIC_TOKEN",))
    failed = poolsync("pools", "--auth", "cli", settings=no_token)
    assert failed.code == 1
    assert "could not sign in to Azure" in failed.stderr and "az login" in failed.stderr
