"""Retry-After on long-running operations, per resource provider: the emulator answers what the table in
docs/emulator.md ("Retry-After on long-running operations") states, for both profiles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from emulator import Emulator
from tests.emulator.conftest import COMPUTE_API, RawArm
from tests.fixtures.arm import ids, topology

DOC = Path(__file__).resolve().parents[2] / "docs" / "emulator.md"
NETWORK, COMPUTE = "Microsoft.Network", "Microsoft.Compute"
ANSWERS = (
    "PUT accepted (201/200)",
    "DELETE accepted (202)",
    "first running poll after a PUT",
    "first running poll after a DELETE",
    "later running polls",
    "finished poll",
)


def documented(profile: str) -> dict[tuple[str, str], str | None]:
    """(provider, answer) -> the Retry-After the doc's table gives `profile` (None: no header)."""
    section = DOC.read_text(encoding="utf-8").split("### Retry-After on long-running operations", 1)[1]
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| ")]
    header, body = rows[0], [row for row in rows[1:] if row[0].startswith("Microsoft.")]
    column = header.index(f"`{profile}` profile")
    return {(row[0], row[1]): None if row[column] == "none" else row[column] for row in body}


def header(response) -> str | None:
    return response.headers.get("Retry-After")


def observe(arm: Emulator, raw: RawArm) -> dict[tuple[str, str], str | None]:
    """Every answer of the table, for one write and one delete per provider, operations held open while
    they are polled twice (through the status URL, then through Location for a delete)."""
    arm.reset(topology(vms=1))
    arm.operation_seconds = 600
    seen: dict[tuple[str, str], str | None] = {}

    def write_then_delete(provider: str, path: str, body: dict, api_version: str) -> None:
        accepted = raw.put(path, body, api_version=api_version)
        assert accepted.status_code in (200, 201), accepted.text
        status_url = accepted.headers["Azure-AsyncOperation"]
        seen[provider, "PUT accepted (201/200)"] = header(accepted)
        seen[provider, "first running poll after a PUT"] = header(raw.absolute(status_url))
        seen[provider, "later running polls"] = header(raw.absolute(status_url))
        arm.complete_operations()
        finished = raw.absolute(status_url)
        assert finished.json()["status"] == "Succeeded"
        seen[provider, "finished poll"] = header(finished)

        deleting = raw.delete(path, api_version=api_version)
        assert deleting.status_code == 202, deleting.text
        seen[provider, "DELETE accepted (202)"] = header(deleting)
        seen[provider, "first running poll after a DELETE"] = header(
            raw.absolute(deleting.headers["Azure-AsyncOperation"]))
        later = raw.absolute(deleting.headers["Location"])
        assert later.status_code == 202
        assert header(later) == seen[provider, "later running polls"]
        arm.complete_operations()
        done = raw.absolute(deleting.headers["Location"])
        assert done.status_code == 204 and header(done) is None

    pool = {"properties": {"loadBalancerBackendAddresses": [
        {"name": "a1", "properties": {"ipAddress": "10.0.0.30", "virtualNetwork": {"id": ids.vnet()}}}]}}
    write_then_delete(NETWORK, ids.pool("pool-extra"), pool, "2026-03-01")
    vm = raw.get(ids.vm("web-1"), api_version=COMPUTE_API).json()
    write_then_delete(COMPUTE, ids.vm("web-1"), {**vm, "tags": {"touched": "yes"}}, COMPUTE_API)
    return seen


def test_the_doc_table_covers_every_answer_of_both_providers():
    for profile in ("azure", "default"):
        assert set(documented(profile)) == {(p, a) for p in (NETWORK, COMPUTE) for a in ANSWERS}


@pytest.mark.parametrize("profile", ["azure", "default"])
def test_network_and_compute_answer_the_retry_after_docs_emulator_md_states(arm, raw, profile):
    arm.set_profile(profile)
    assert observe(arm, raw) == documented(profile)


def test_the_azure_profile_sends_compute_values_not_networks(arm, raw):
    """The two providers differ where a client notices: Compute asks for 50 s on the first poll of a
    create and nothing afterwards (the SDK then waits its polling_interval), Network for 10 s on each."""
    arm.set_profile("azure")
    seen = observe(arm, raw)
    assert seen[COMPUTE, "first running poll after a PUT"] == "50"
    assert seen[COMPUTE, "later running polls"] is None
    assert seen[NETWORK, "later running polls"] == "10"
    assert seen[NETWORK, "PUT accepted (201/200)"] == "3"


def test_a_scale_set_action_is_answered_like_a_compute_delete(arm, raw):
    arm.set_profile("azure")
    arm.reset(topology() | {"scale_sets": [{"name": "web", "capacity": 2, "subnet": "vnet-app/default"}]})
    arm.operation_seconds = 600
    accepted = raw.session.post(raw.url(ids.scale_set("web") + "/delete", COMPUTE_API),
                                json={"instanceIds": ["0"]}, timeout=30, verify=raw.ca_path)
    assert accepted.status_code == 202 and header(accepted) == "10"
    assert header(raw.absolute(accepted.headers["Azure-AsyncOperation"])) == "30"
    assert header(raw.absolute(accepted.headers["Azure-AsyncOperation"])) is None
    arm.complete_operations()


def test_one_value_or_a_table_per_provider_replaces_the_profiles_through_the_admin_api(arm, raw):
    arm.set_profile("azure")
    arm.reset(topology(vms=1))
    arm.operation_seconds = 600

    def configure(value) -> dict:
        return arm.admin.handle("POST", "/config", {}, json.dumps({"lro_retry_after": value}).encode()).body

    assert configure(2)["lro_retry_after"][COMPUTE]["first_poll_write"] == 2
    vm = raw.get(ids.vm("web-1"), api_version=COMPUTE_API).json()
    assert header(raw.put(ids.vm("web-1"), vm, api_version=COMPUTE_API)) == "2"
    arm.complete_operations()

    table = configure({COMPUTE: {"accepted_write": 7}})["lro_retry_after"]
    assert table == {COMPUTE: {"accepted_write": 7, "accepted_delete": 0, "first_poll_write": 0,
                               "first_poll_delete": 0, "later_polls": 0}}
    accepted = raw.put(ids.vm("web-1"), vm, api_version=COMPUTE_API)
    assert header(accepted) == "7" and header(raw.absolute(accepted.headers["Azure-AsyncOperation"])) is None
    arm.complete_operations()
    network_write = raw.put(ids.pool("pool-extra"), {"properties": {}})
    assert header(network_write) is None  # a provider left out of the table sends none
    arm.complete_operations()

    assert configure(None)["lro_retry_after"][NETWORK]["later_polls"] == 10  # back to the profile's
    unknown_field = json.dumps({"lro_retry_after": {COMPUTE: {"soon": 1}}}).encode()
    bad = arm.admin.handle("POST", "/config", {}, unknown_field)
    assert bad.status == 400 and "soon" in bad.body["error"]["message"]


def test_the_cli_takes_seconds_or_a_json_table():
    from emulator.cli import parse_args

    every = parse_args(["--state-dir", "x", "--lro-retry-after", "4"]).lro_retry_after
    assert every.of(NETWORK).later_polls == every.of(COMPUTE).accepted_write == 4
    table = parse_args(["--state-dir", "x", "--lro-retry-after", json.dumps({COMPUTE: {"later_polls": 5}})])
    assert table.lro_retry_after.of(COMPUTE).later_polls == 5
    assert table.lro_retry_after.of(NETWORK).later_polls == 0  # a provider left out sends none
    with pytest.raises(SystemExit):
        parse_args(["--state-dir", "x", "--lro-retry-after", "-1"])
