"""Event Grid emission: Microsoft.Resources.ResourceWrite/DeleteSuccess to a webhook.

Events are built in the Event Grid schema of Azure subscription system topics and
delivered from a background thread (one event per POST, like Event Grid's default
`maxEventsPerBatch` of 1), with a few retries; ARM responses never wait for delivery.
"""

from __future__ import annotations

import json
import queue
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from emulator.lro import utc_now_text
from shared.ids import ResourceId

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"
TENANT_ID = "72f988bf-0000-0000-0000-000000000000"
CALLER_OBJECT_ID = "11111111-1111-1111-1111-111111111111"
PUBLIC_ARM = "https://management.azure.com"


def build_event(
    event_type: str, resource_id: str, http_method: str, api_version: str, correlation_id: str | None = None
) -> dict[str, Any]:
    rid = ResourceId.parse(resource_id)
    action = "delete" if event_type == DELETE_SUCCESS else "write"
    operation = f"{rid.full_type}/{action}"
    subscription_scope = f"/subscriptions/{rid.subscription}"
    correlation = correlation_id or str(uuid.uuid4())
    return {
        "id": str(uuid.uuid4()),
        "topic": subscription_scope,
        "subject": str(rid),
        "eventType": event_type,
        "eventTime": utc_now_text(),
        "dataVersion": "",  # as in the documented sample events
        "metadataVersion": "1",
        "data": {
            "authorization": {
                "scope": str(rid),
                "action": operation,
                "evidence": {
                    "role": "Contributor",
                    "roleAssignmentScope": subscription_scope,
                    "roleAssignmentId": uuid.uuid5(uuid.NAMESPACE_URL, subscription_scope).hex,
                    "roleDefinitionId": "b24988ac618042a0ab8820f7382dd24c",
                    "principalId": CALLER_OBJECT_ID.replace("-", ""),
                    "principalType": "ServicePrincipal",
                },
            },
            "claims": {
                "aud": "https://management.core.windows.net/",
                "iss": f"https://sts.windows.net/{TENANT_ID}/",
                "appid": "22222222-2222-2222-2222-222222222222",
                "http://schemas.microsoft.com/identity/claims/objectidentifier": CALLER_OBJECT_ID,
                "http://schemas.microsoft.com/identity/claims/tenantid": TENANT_ID,
            },
            "correlationId": correlation,
            "httpRequest": {
                "clientRequestId": str(uuid.uuid4()),
                "clientIpAddress": "127.0.0.1",
                "method": http_method,
                "url": f"{PUBLIC_ARM}{rid}?api-version={api_version}",
            },
            "resourceProvider": rid.namespace,
            "resourceUri": str(rid),
            "operationName": operation,
            "status": "Succeeded",
            "subscriptionId": rid.subscription,
            "tenantId": TENANT_ID,
        },
    }


class EventPublisher:
    def __init__(
        self,
        webhook: str | None = None,
        attempts: int = 5,
        backoff_seconds: float = 0.2,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self.webhook = webhook
        self.attempts = attempts
        self.backoff_seconds = backoff_seconds
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._queue: queue.Queue[tuple[int, dict[str, Any]] | None] = queue.Queue()
        self._generation = 0  # bumped by clear(): older queued events are not delivered
        self._pending = 0
        self._idle = threading.Condition()
        self.published: list[dict[str, Any]] = []  # every event produced, delivered or not
        self._thread = threading.Thread(target=self._run, name="emulator-events", daemon=True)
        self._thread.start()

    def publish(self, event: dict[str, Any]) -> None:
        with self._idle:
            self.published.append(event)
            if not self.webhook:
                return
            self._pending += 1
            generation = self._generation
        self._queue.put((generation, event))

    def wait_delivered(self, timeout: float = 30.0) -> bool:
        """True once every queued event was delivered (or given up on)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def clear(self) -> None:
        with self._idle:
            self.published = []
            self._generation += 1

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._deliver(*item)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _deliver(self, generation: int, event: dict[str, Any]) -> None:
        for attempt in range(self.attempts):
            url = self.webhook
            if generation != self._generation:
                return  # queued before a reset: belongs to a world that no longer exists
            if not url:
                self._on_outcome("dropped")
                return
            try:
                self._post(url, [event])
                self._on_outcome("delivered")
                return
            except (OSError, urllib.error.URLError):
                self._on_outcome("retried")
                time.sleep(min(self.backoff_seconds * 2**attempt, 2.0))
        self._on_outcome("dropped")

    @staticmethod
    def _post(url: str, events: list[dict[str, Any]]) -> None:
        request = urllib.request.Request(
            url,
            data=json.dumps(events).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
        )
        # Webhook receivers in tests use throw-away certificates.
        context = ssl._create_unverified_context() if url.startswith("https") else None
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            if response.status >= 300:
                raise OSError(f"webhook answered {response.status}")
