"""infra/scripts/replay-dead-letters.sh against stand-ins for `az` and `curl` that record what they get.

What operators rely on: every dead-lettered event is re-posted, stripped of Event Grid's bookkeeping
fields, to the function's Event Grid webhook with the system key; a blob is deleted only when its events
were accepted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.infra.bicep_tree import INFRA_DIR

SCRIPT = INFRA_DIR / "scripts" / "replay-dead-letters.sh"
HOST = "func-poolsync-abc.azurewebsites.net"
SYSTEM_KEY = "eg-system-key"


FAKE_AZ = """
import json, os, shutil, sys
args = sys.argv[1:]
blobs = os.environ["FAKE_BLOBS"]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["az", *args]) + "\\n")
def opt(name):
    return args[args.index(name) + 1]
if args[:2] == ["functionapp", "show"]:
    print(os.environ["FAKE_HOST"])
elif args[:3] == ["functionapp", "keys", "list"]:
    print(os.environ["FAKE_KEY"])
elif args[:3] == ["storage", "blob", "list"]:
    prefix = opt("--prefix")
    for root, _, files in sorted(os.walk(blobs)):
        for f in sorted(files):
            name = os.path.relpath(os.path.join(root, f), blobs)
            if name.startswith(prefix):
                print(name)
elif args[:3] == ["storage", "blob", "download"]:
    shutil.copy(os.path.join(blobs, opt("-n")), opt("-f"))
elif args[:3] == ["storage", "blob", "delete"]:
    os.remove(os.path.join(blobs, opt("-n")))
else:
    sys.exit(f"unexpected az call {args}")
"""

FAKE_CURL = """
import json, os, sys
args = sys.argv[1:]
body_file = args[args.index("--data-binary") + 1].lstrip("@")
body = json.load(open(body_file))
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["curl", *args, {"body": body}]) + "\\n")
rejected = os.environ.get("FAKE_REJECT_EVENT_ID")
sys.exit(22 if rejected and any(e["id"] == rejected for e in body) else 0)
"""


SUBSCRIPTION = "/subscriptions/00000000-0000-0000-0000-000000000001"


def dead_letter(event_id: str, vm: str) -> dict:
    return {
        "id": event_id,
        "topic": SUBSCRIPTION,
        "subject": f"{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{vm}",
        "eventType": "Microsoft.Resources.ResourceWriteSuccess",
        "eventTime": "2026-11-25T08:00:00Z",
        "data": {"operationName": "Microsoft.Compute/virtualMachines/write", "status": "Succeeded"},
        "dataVersion": "",
        "metadataVersion": "1",
        "deadLetterReason": "MaxDeliveryAttemptsExceeded",
        "deliveryAttempts": 10,
        "lastDeliveryOutcome": "Probation",
        "publishTime": "2026-11-25T08:00:01Z",
        "lastDeliveryAttemptTime": "2026-11-25T09:00:00Z",
    }


@pytest.fixture
def fake_azure(tmp_path: Path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, source in (("az", FAKE_AZ), ("curl", FAKE_CURL)):
        tool = bin_dir / name
        tool.write_text(f"#!{sys.executable}\n{source}")
        tool.chmod(0o755)
    blobs = tmp_path / "blobs"
    day = blobs / "EVGT-POOLSYNC/POOLSYNC-VM-NIC-CHANGES/2026/11/25/08"
    day.mkdir(parents=True)
    # Event Grid writes an array; a single object is accepted too.
    (day / "a.json").write_text(json.dumps([dead_letter("ev-1", "web-1")]))
    (day / "b.json").write_text(json.dumps(dead_letter("ev-2", "web-2")))
    log = tmp_path / "calls.jsonl"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_BLOBS": str(blobs),
        "FAKE_LOG": str(log),
        "FAKE_HOST": HOST,
        "FAKE_KEY": SYSTEM_KEY,
    }

    def run(*args: str, **extra_env: str) -> tuple[subprocess.CompletedProcess, list[list]]:
        completed = subprocess.run(
            ["bash", str(SCRIPT), "-g", "rg-poolsync", "-a", "func-poolsync-abc", "-s", "stpoolsync", *args],
            env={**env, **extra_env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        return completed, calls

    return run, blobs


def curl_calls(calls: list[list]) -> list[list]:
    return [call for call in calls if call[0] == "curl"]


def test_each_blob_is_posted_to_the_eventgrid_webhook_with_the_system_key(fake_azure):
    run, _ = fake_azure
    completed, calls = run()
    assert completed.returncode == 0, completed.stderr
    posts = curl_calls(calls)
    assert len(posts) == 2
    for post in posts:
        assert (
            f"https://{HOST}/runtime/webhooks/eventgrid?functionName=eventgrid_resource_events&code={SYSTEM_KEY}"
            in post
        )
        assert "aeg-event-type: Notification" in post
    posted_ids = sorted(event["id"] for post in posts for event in post[-1]["body"])
    assert posted_ids == ["ev-1", "ev-2"]


def test_posted_events_carry_only_event_grid_schema_fields(fake_azure):
    run, _ = fake_azure
    _, calls = run()
    for post in curl_calls(calls):
        for event in post[-1]["body"]:
            assert set(event) == {
                "id",
                "topic",
                "subject",
                "eventType",
                "eventTime",
                "data",
                "dataVersion",
                "metadataVersion",
            }
            assert event["data"]["operationName"] == "Microsoft.Compute/virtualMachines/write"


def test_delete_removes_only_blobs_whose_events_were_accepted(fake_azure):
    run, blobs = fake_azure
    completed, _ = run("--delete", FAKE_REJECT_EVENT_ID="ev-2")
    assert completed.returncode != 0  # one blob failed: the operator must notice
    remaining = sorted(path.name for path in blobs.rglob("*.json"))
    assert remaining == ["b.json"]


def test_dry_run_sends_and_deletes_nothing(fake_azure):
    run, blobs = fake_azure
    completed, calls = run("--dry-run", "--delete")
    assert completed.returncode == 0, completed.stderr
    assert curl_calls(calls) == []
    assert len(list(blobs.rglob("*.json"))) == 2
    assert "would replay 1 event(s)" in completed.stdout


def test_prefix_limits_which_blobs_are_replayed(fake_azure):
    run, _ = fake_azure
    _, calls = run("-p", "EVGT-POOLSYNC/POOLSYNC-VM-NIC-CHANGES/2026/11/24")
    assert curl_calls(calls) == []
