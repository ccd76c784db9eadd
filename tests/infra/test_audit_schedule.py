"""One audit schedule everywhere (daily), inside the heartbeat alert's window, and reports that expire."""

from __future__ import annotations

import json
import re

from shared import settings
from tests.infra.bicep_tree import INFRA_DIR, MAIN_BICEP, REPO_ROOT, body, one_resource, parse

MODULES = INFRA_DIR / "modules"


def bicep_default() -> str:
    return parse(MAIN_BICEP)["parameters"]["auditSchedule"]["default"]


def azd_default() -> str:
    """`${POOLSYNC_AUDIT_SCHEDULE=<default>}` in main.parameters.json: what `azd up` deploys when unset."""
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    value = parameters["auditSchedule"]["value"]
    found = re.fullmatch(r"\$\{POOLSYNC_AUDIT_SCHEDULE=(.+)\}", value)
    assert found, value
    return found[1]


def readme_default() -> str:
    row = next(line for line in (REPO_ROOT / "README.md").read_text().splitlines()
               if line.startswith("| `POOLSYNC_AUDIT_SCHEDULE`"))
    return row.rsplit("|", 2)[1].strip().strip("`")


def firings_per_day(ncrontab: str) -> int:
    """How often a 6-field NCRONTAB with fixed second/minute/hour lists fires per day ('*' days only)."""
    second, minute, hour, day, month, weekday = ncrontab.split()
    assert (day, month, weekday) == ("*", "*", "*"), ncrontab
    count = 1
    for field in (second, minute, hour):
        assert re.fullmatch(r"\d+(,\d+)*", field), f"{ncrontab}: {field} is not a fixed list"
        count *= len(field.split(","))
    return count


def test_every_place_states_the_same_audit_schedule() -> None:
    example = json.loads((REPO_ROOT / "local.settings.example.json").read_text())["Values"]
    assert {
        "settings.py": settings.AUDIT_SCHEDULE.default,
        "main.bicep": bicep_default(),
        "main.parameters.json": azd_default(),
        "README.md": readme_default(),
        "local.settings.example.json": example["POOLSYNC_AUDIT_SCHEDULE"],
    } == dict.fromkeys(
        ("settings.py", "main.bicep", "main.parameters.json", "README.md", "local.settings.example.json"),
        "0 0 3 * * *",
    )


def test_the_deployed_schedule_runs_once_a_day_inside_the_heartbeat_window() -> None:
    assert firings_per_day(azd_default()) == 1
    heartbeat_hours = parse(MODULES / "alerts.bicep")["parameters"]["auditHeartbeatHours"]["default"]
    assert 24 < heartbeat_hours <= 30, "a daily audit plus slack; not so wide a stopped audit goes unnoticed"


def test_audit_reports_expire_after_the_retention_parameter() -> None:
    storage = MODULES / "storage.bicep"
    tree = parse(storage)
    (rule,) = body(one_resource(storage, "Microsoft.Storage/storageAccounts/managementPolicies"))[
        "properties"]["policy"]["rules"]
    assert rule["enabled"] is True and rule["type"] == "Lifecycle"
    # Only the reports container: host state, the deployment package and dead letters are not aged out.
    assert rule["definition"]["filters"]["prefixMatch"] == ["${auditContainerName}/"]
    assert tree["parameters"]["auditContainerName"]["default"] == settings.AUDIT_CONTAINER.default
    assert rule["definition"]["actions"]["baseBlob"]["delete"] == {
        "daysAfterModificationGreaterThan": "auditReportRetentionDays"
    }
    main = parse(MAIN_BICEP)
    passed = body(main["modules"]["storage"])["params"]
    assert passed["auditReportRetentionDays"] == "auditReportRetentionDays"
    assert main["parameters"]["auditReportRetentionDays"]["default"] == 90
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    assert parameters["auditReportRetentionDays"]["value"] == "${POOLSYNC_AUDIT_REPORT_RETENTION_DAYS=90}"
