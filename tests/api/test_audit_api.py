"""POST /api/audit queues the audit, the audit_requests queue trigger runs it, GET /api/audits/{id} follows.

The queue is Azurite's, the messages are the ones the API really sent, and the worker is the registered
queue function (in-process here, and polled by the local Functions host in the last test).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64DecodePolicy

from devstack.host import LocalFunctionsHost
from emulator import Emulator
from handlers import audit_queue
from shared.app.runtime import get_runtime
from shared.storage.audit_jobs import AUDIT_QUEUE
from tests.api.conftest import Configure
from tests.api.helpers import ApiClient
from tests.fixtures.arm import ids


@pytest.fixture
def queue(storage_connection_string: str) -> Iterator[QueueClient]:
    client = QueueClient.from_connection_string(storage_connection_string, AUDIT_QUEUE,
                                                message_decode_policy=TextBase64DecodePolicy())
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    client.clear_messages()  # the queue name is fixed, Azurite is shared by the session
    yield client
    client.clear_messages()


def deliver_all(queue: QueueClient) -> int:
    """What the queue extension does: each visible message to the function, deleted once it returned."""
    delivered = 0
    for message in queue.receive_messages(max_messages=32):
        audit_queue.audit_requests(func.QueueMessage(id=message.id, body=message.content.encode()))
        queue.delete_message(message)
        delivered += 1
    return delivered


def test_audit_is_queued_then_run_by_the_queue_trigger(api: ApiClient, queue: QueueClient) -> None:
    accepted = api.call("POST", "/api/audit")

    assert accepted.status == 202
    job_id = accepted.body["id"]
    assert accepted.headers["Location"] == f"/api/audits/{job_id}" == accepted.body["href"]
    assert accepted.body["status"] == "queued"
    assert api.call("GET", accepted.headers["Location"]).body["status"] == "queued"
    [message] = queue.peek_messages(max_messages=5)
    assert json.loads(message.content) == {"id": job_id}

    assert deliver_all(queue) == 1

    done = api.call("GET", accepted.headers["Location"])
    assert done.status == 200
    assert done.body["status"] == "succeeded"
    assert done.body["startedAt"] and done.body["finishedAt"] and done.body["attempts"] == 1
    report_ref = done.body["report"]
    stored = get_runtime().storage.blob_service().get_blob_client(report_ref["container"], report_ref["json"])
    report = json.loads(stored.download_blob().readall())
    assert report["kind"] == "poolsync.audit" and report["mode"] == "read-only"
    assert report["runId"] == report_ref["runId"]
    assert done.body["summary"] == report["summary"]
    assert report["summary"]["pools"] == 2


def test_the_report_is_served_as_json_and_as_a_page(api: ApiClient, queue: QueueClient) -> None:
    assert api.call("POST", "/api/reconcile", {"pool": ids.pool()}).status == 200
    location = api.call("POST", "/api/audit").headers["Location"]
    early = api.call("GET", f"{location}/report")
    assert (early.status, early.error["code"]) == (409, "AuditNotFinished")
    deliver_all(queue)
    run_id = api.call("GET", location).body["report"]["runId"]

    as_json = api.call("GET", f"{location}/report")
    assert as_json.status == 200 and as_json.body["runId"] == run_id
    app_pool = next(p for p in as_json.body["pools"] if p["id"] == ids.pool())
    assert {(m["owner"], m["vm"].rsplit("/", 1)[-1]) for m in app_pool["members"]} == {
        ("vm", "web-1"), ("vm", "web-2"), ("vm", "web-3")}
    by_run_id = api.call("GET", f"/api/audits/{run_id}/report")
    assert by_run_id.body == as_json.body

    page = api.call("GET", f"{location}/report", query={"format": "html"})
    assert page.status == 200 and page.body.lstrip().lower().startswith("<!doctype html")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert run_id in page.body
    assert api.call("GET", f"{location}/report", headers={"Accept": "text/html"}).body == page.body

    assert api.call("GET", f"{location}/report", query={"format": "pdf"}).error["target"] == "format"
    assert api.call("GET", "/api/audits/nope/report").error["code"] == "InvalidAuditId"
    missing = api.call("GET", "/api/audits/20200101T000000Z-0123abcd/report")
    assert (missing.status, missing.error["code"]) == (404, "ReportNotFound")


def test_a_duplicate_delivery_does_not_run_the_audit_again(api: ApiClient, queue: QueueClient) -> None:
    location = api.call("POST", "/api/audit").headers["Location"]
    [message] = queue.peek_messages()
    deliver_all(queue)
    first = api.call("GET", location).body

    audit_queue.audit_requests(func.QueueMessage(id="again", body=message.content.encode()))

    assert api.call("GET", location).body == first


def test_an_audit_azure_cannot_serve_ends_failed_with_the_reason(
    world: Emulator, configure: Configure, queue: QueueClient
) -> None:
    unknown = "11111111-1111-1111-1111-111111111111"  # a subscription Azure does not know
    vnet = f"/subscriptions/{unknown}/resourceGroups/rg/providers/Microsoft.Network/virtualNetworks/v"
    rules = {"version": 1, "rules": [{"name": "far", "pool": ids.pool(), "virtualNetwork": vnet,
                                      "cidrs": ["10.9.0.0/24"]}]}
    configure(POOLSYNC_RULES=json.dumps(rules))
    api = ApiClient()
    location = api.call("POST", "/api/audit").headers["Location"]

    deliver_all(queue)

    status = api.call("GET", location).body
    assert status["status"] == "failed"
    assert status["error"]["code"] == "AzureError"
    assert status["report"] is None and status["summary"] is None


def test_unknown_and_malformed_audit_ids(api: ApiClient) -> None:
    missing = api.call("GET", "/api/audits/" + "0" * 32)
    assert (missing.status, missing.error["code"]) == (404, "AuditNotFound")
    assert missing.error["target"] == "auditId"
    for bad in ("..", "ABC", "0" * 31, "0" * 32 + "x"):
        answer = api.call("GET", f"/api/audits/{bad}")
        assert (answer.status, answer.error["code"]) == (400, "InvalidAuditId"), bad


def test_audit_takes_no_parameters(api: ApiClient, queue: QueueClient) -> None:
    refused = api.call("POST", "/api/audit", {"remediate": True})

    assert (refused.status, refused.error["code"]) == (400, "InvalidBody")
    assert queue.peek_messages() == []
    assert api.call("POST", "/api/audit", {}).status == 202


def test_audit_answers_503_when_storage_refuses_the_request(
    world: Emulator, configure: Configure, storage_connection_string: str, queue: QueueClient
) -> None:
    wrong_key = storage_connection_string.replace("AccountKey=", "AccountKey=AAAA")
    configure(AzureWebJobsStorage=wrong_key)

    answer = ApiClient().call("POST", "/api/audit")

    assert (answer.status, answer.error["code"]) == (503, "StorageUnavailable")
    assert int(answer.headers["Retry-After"]) >= 1
    assert queue.peek_messages() == []


def test_the_local_host_polls_the_queue_and_runs_the_audit(
    api: ApiClient, queue: QueueClient, storage_connection_string: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import function_app

    monkeypatch.setenv("AzureWebJobsStorage", storage_connection_string)
    with LocalFunctionsHost(function_app.app):
        location = api.call("POST", "/api/audit").headers["Location"]
        deadline = time.monotonic() + 60
        while api.call("GET", location).body["status"] in ("queued", "running") and (
            time.monotonic() < deadline
        ):
            time.sleep(0.1)

    assert api.call("GET", location).body["status"] == "succeeded"
    assert queue.peek_messages() == []
