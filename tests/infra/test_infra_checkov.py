"""checkov (framework bicep) over infra/: no failed check, and every suppression carries a written reason.

checkov lives in its own venv (see checkov_tool.py); the first run installs it, later runs reuse it."""

from __future__ import annotations

import fcntl
import json

import pytest

from tests.infra.bicep_tree import bicep_files, parse, resources
from tests.infra.checkov_tool import ensure_checkov, extension_files, scan_infra

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> dict:
    if worker_id == "master":  # one process: the module's tests share this scan
        return scan_infra(ensure_checkov())
    # pytest-xdist may hand this module's tests to several workers: the first scans, the others wait for
    # its report (the run's temporary directory is common to all workers, and new for every run).
    shared = tmp_path_factory.getbasetemp().parent / "checkov-report.json"
    with open(f"{shared}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not shared.exists():
            shared.write_text(json.dumps(scan_infra(ensure_checkov())))
        return json.loads(shared.read_text())


def test_checkov_parsed_every_bicep_file(report):
    # A file checkov cannot parse is silently not checked, so a parse failure is a failure here.
    assert report["summary"]["parsing_errors"] == 0, report["results"].get("parsing_errors")
    assert bicep_files(), "no Bicep files under infra/"
    assert report["summary"]["resource_count"] > 0


def test_only_microsoft_graph_declarations_are_left_out_of_the_scan():
    left_out = extension_files()
    assert [path.name for path in left_out] == ["api-app-registration.bicep"]
    for path in left_out:
        types = {declaration["type"].split("/")[0] for _, declaration in resources(parse(path))}
        assert types == {"Microsoft.Graph"}, f"{path.name} declares Azure resources checkov would not see"


def test_checkov_finds_no_failed_check(report):
    failed = [
        f"{check['check_id']} {check['file_path']} {check['resource']}: {check['check_name']}"
        for check in report["results"].get("failed_checks", [])
    ]
    assert failed == []


def test_every_suppressed_check_has_a_written_reason(report):
    for check in report["results"].get("skipped_checks", []):
        reason = (check["check_result"].get("suppress_comment") or "").strip()
        where = f"{check['check_id']} in {check['file_path']}"
        assert reason and reason != "No comment provided", f"{where} is suppressed without a reason"
        assert len(reason.split()) >= 6, f"{where}: reason too thin: {reason!r}"


def test_checks_actually_ran_on_the_app_resources(report):
    # Guards against a checkov upgrade that stops recognising the files: the storage account and the
    # Function App must have been evaluated (passed or suppressed).
    evaluated = report["results"].get("passed_checks", []) + report["results"].get("skipped_checks", [])
    resources = {check["resource"] for check in evaluated}
    assert any(resource.startswith("Microsoft.Storage/storageAccounts.") for resource in resources)
    assert any(resource.startswith("Microsoft.Web/sites.") for resource in resources)
