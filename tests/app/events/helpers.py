"""Helpers for the event tests: events in Azure's shapes, runtimes against the emulator + Azurite."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, SystemEventNames

from devstack.settings import local_settings
from shared.app.runtime import Runtime
from shared.core.events import event_to_dict
from shared.core.ids import ResourceId

WRITE = SystemEventNames.ResourceWriteSuccessEventName
DELETE = SystemEventNames.ResourceDeleteSuccessEventName
ACTION = SystemEventNames.ResourceActionSuccessEventName
WRITE_FAILURE = SystemEventNames.ResourceWriteFailureEventName
DELETE_CANCEL = SystemEventNames.ResourceDeleteCancelEventName
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"

# Settings that keep the end-to-end tests quick and deterministic on a loaded machine.
FAST_COALESCING = {
    "POOLSYNC_COALESCE_QUIET": "0.3",
    "POOLSYNC_COALESCE_MAX_WAIT": "3",
    "POOLSYNC_COALESCE_POLL": "0.1",
    "POOLSYNC_FLUSH_LEASE_SECONDS": "15",
    "POOLSYNC_FLUSH_BUDGET": "60",
}
FAST_RETRIES = {
    "POOLSYNC_RETRY_DEADLINE": "60",
    "POOLSYNC_RETRY_MAX_ATTEMPTS": "60",
    "POOLSYNC_RETRY_BASE_BACKOFF": "0.05",
    "POOLSYNC_RETRY_MAX_BACKOFF": "0.5",
    "POOLSYNC_RETRY_AFTER_CAP": "1",
}


def resource_event_data(subject: str, operation: str, status: str = "Succeeded",
                        method: str = "PUT") -> dict[str, Any]:
    """`data` of a Microsoft.Resources.* event, as the subscription system topic sends it."""
    sub = subject.split("/")[2]
    provider = [*subject.split("/providers/", 1), "Microsoft.Resources"][1].split("/")[0]
    return {
        "authorization": {"scope": subject, "action": operation, "evidence": {"role": "Contributor"}},
        "claims": {"http://schemas.microsoft.com/identity/claims/tenantid": TENANT},
        "correlationId": str(uuid.uuid4()),
        "httpRequest": {"clientRequestId": str(uuid.uuid4()), "clientIpAddress": "10.1.2.3", "method": method,
                        "url": f"https://management.azure.com{subject}?api-version=2024-07-01"},
        "resourceProvider": provider,
        "resourceUri": subject,
        "operationName": operation,
        "status": status,
        "subscriptionId": sub,
        "tenantId": TENANT,
    }


def _operation_for(subject: str, event_type: str) -> str:
    try:
        full_type = ResourceId.parse(subject).full_type
    except ValueError:
        full_type = "Microsoft.Resources/subscriptions/resourceGroups"
    verb = "delete" if "Delete" in event_type else "write"
    return f"{full_type}/{verb}"


def eventgrid_event(event_type: str, subject: str, *, operation: str | None = None, status: str = "Succeeded",
                    event_id: str | None = None, age: timedelta = timedelta(0)) -> dict[str, Any]:
    """An Event Grid schema event as delivered (JSON dict), built with azure-eventgrid's model."""
    model = EventGridEvent(
        subject=subject,
        event_type=event_type,
        data=resource_event_data(subject, operation or _operation_for(subject, event_type), status),
        data_version="2",
        topic=f"/subscriptions/{subject.split('/')[2]}",
        id=event_id or str(uuid.uuid4()),
        event_time=datetime.now(UTC) - age,
    )
    return json.loads(json.dumps(event_to_dict(model)))


def cloud_event(event_type: str, subject: str, *, operation: str | None = None, status: str = "Succeeded",
                event_id: str | None = None) -> dict[str, Any]:
    """The same event in the CloudEvents 1.0 schema, built with azure-core's CloudEvent model."""
    model = CloudEvent(
        source=f"/subscriptions/{subject.split('/')[2]}",
        type=event_type,
        subject=subject,
        data=resource_event_data(subject, operation or _operation_for(subject, event_type), status),
        id=event_id or str(uuid.uuid4()),
    )
    return json.loads(json.dumps(event_to_dict(model)))


def rules_json(rules: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps({"version": 1, "rules": list(rules)})


def runtime_env(
    arm_url: str, ca_path: str, storage_connection_string: str, rules: Iterable[Mapping[str, Any]],
    **overrides: str,
) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:12]
    # A table and container per test: tests share one Azurite.
    return local_settings(
        arm_url, ca_path, storage_connection_string, rules=rules_json(rules),
        POOLSYNC_INTENTS_TABLE=f"intents{suffix}", POOLSYNC_LOCKS_CONTAINER=f"locks-{suffix}",
        POOLSYNC_REMOVALS_TABLE=f"removals{suffix}", POOLSYNC_DRAIN_TABLE=f"drains{suffix}",
        **{**FAST_RETRIES, **FAST_COALESCING, **overrides},
    )


def make_runtime(env: Mapping[str, str]) -> Runtime:
    return Runtime.from_env(dict(env))
