"""Event Grid emission: Microsoft.Resources.ResourceWrite/DeleteSuccess to a webhook.

Events are built in the Event Grid schema of Azure subscription system topics and
delivered from background threads (one event per POST, like Event Grid's default
`maxEventsPerBatch` of 1) under a `DeliveryPolicy`: retries, timeouts and, when asked
for, duplicates, delays, reordering and replays. ARM responses never wait for delivery.
"""

from __future__ import annotations

import heapq
import itertools
import json
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from emulator.delivery import DEFAULT_DELIVERY, DeliveryPolicy, Misbehaviour
from emulator.ids import ResourceId
from emulator.lro import utc_now_text

WRITE_SUCCESS = "Microsoft.Resources.ResourceWriteSuccess"
DELETE_SUCCESS = "Microsoft.Resources.ResourceDeleteSuccess"
ACTION_SUCCESS = "Microsoft.Resources.ResourceActionSuccess"
TENANT_ID = "72f988bf-0000-0000-0000-000000000000"
CALLER_OBJECT_ID = "11111111-1111-1111-1111-111111111111"
PUBLIC_ARM = "https://management.azure.com"


def build_event(
    event_type: str,
    resource_id: str,
    http_method: str,
    api_version: str,
    correlation_id: str | None = None,
    action_name: str = "",
) -> dict[str, Any]:
    rid = ResourceId.parse(resource_id)
    action = "delete" if event_type == DELETE_SUCCESS else "write"
    operation = f"{rid.full_type}/{action}"
    if event_type == ACTION_SUCCESS:
        operation = f"{rid.full_type}/{action_name}/action"
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


def build_action_event(resource_id: str, action_name: str, api_version: str) -> dict[str, Any]:
    """A POST action (e.g. `Microsoft.Compute/virtualMachineScaleSets/delete/action`): subject, scope and
    resourceUri are the resource acted on; the request URL ends with the action's path segment."""
    event = build_event(ACTION_SUCCESS, resource_id, "POST", api_version, action_name=action_name)
    event["data"]["httpRequest"]["url"] = (
        f"{PUBLIC_ARM}{resource_id.rstrip('/')}/{action_name.lower()}?api-version={api_version}"
    )
    return event


def build_tags_event(resource_id: str, http_method: str, api_version: str) -> dict[str, Any]:
    """A Tags API write: the event is about the tags resource `{resource}/providers/Microsoft.Resources/
    tags/default` (subject, scope, resourceUri), not about the tagged resource."""
    tags_id = f"{resource_id.rstrip('/')}/providers/Microsoft.Resources/tags/default"
    event = build_event(WRITE_SUCCESS, resource_id, http_method, api_version)
    data = event["data"]
    event["subject"] = data["resourceUri"] = data["authorization"]["scope"] = tags_id
    data["operationName"] = data["authorization"]["action"] = "Microsoft.Resources/tags/write"
    data["resourceProvider"] = "Microsoft.Resources"
    data["httpRequest"]["url"] = f"{PUBLIC_ARM}{tags_id}?api-version={api_version}"
    return event


@dataclass(order=True)
class _Queued:
    due: float
    seq: int
    generation: int = field(compare=False)
    event: dict[str, Any] = field(compare=False)
    failed_attempts: int = field(default=0, compare=False)
    is_replay: bool = field(default=False, compare=False)  # replays are not replayed again


class EventPublisher:
    """Sends events to the webhook as the `DeliveryPolicy` says (see `emulator.delivery`)."""

    def __init__(
        self,
        webhook: str | None = None,
        on_outcome: Callable[[str], None] | None = None,
        policy: DeliveryPolicy = DEFAULT_DELIVERY,
    ) -> None:
        self.webhook = webhook
        self._on_outcome = on_outcome or (lambda outcome: None)
        self._cond = threading.Condition()
        self._heap: list[_Queued] = []
        self._seq = itertools.count()
        self._generation = 0  # bumped by clear(): older queued events are not delivered
        self._pending = 0  # queued or being sent
        self._stopped = False
        self._workers: list[threading.Thread] = []
        self.published: list[dict[str, Any]] = []  # every event produced, delivered or not
        self.configure(policy)

    @property
    def policy(self) -> DeliveryPolicy:
        return self._policy

    def configure(self, policy: DeliveryPolicy) -> None:
        """Use `policy` for events published from now on (and for retries of queued ones)."""
        with self._cond:
            self._policy = policy
            self._dice = Misbehaviour(policy)
            while len(self._workers) < policy.workers:
                worker = threading.Thread(
                    target=self._run, args=(len(self._workers),), name="emulator-events", daemon=True
                )
                self._workers.append(worker)
                worker.start()
            self._cond.notify_all()

    def publish(self, event: dict[str, Any]) -> None:
        with self._cond:
            self.published.append(event)
            if not self.webhook:
                return
            now = time.monotonic()
            for send in self._dice.sends_for_new_event():
                if send.kind != "first":
                    self._on_outcome(send.kind)
                self._enqueue(now + send.after, event)

    def _enqueue(
        self, due: float, event: dict[str, Any], failed_attempts: int = 0, is_replay: bool = False
    ) -> None:
        self._pending += 1
        queued = _Queued(due, next(self._seq), self._generation, event, failed_attempts, is_replay)
        heapq.heappush(self._heap, queued)
        self._cond.notify_all()

    def wait_delivered(self, timeout: float = 30.0) -> bool:
        """True once every queued event was delivered (or given up on), replays included."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def clear(self) -> None:
        with self._cond:
            self.published = []
            self._generation += 1
            self._pending -= len(self._heap)
            self._heap.clear()
            self._cond.notify_all()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join(timeout=5)

    def _next(self, index: int) -> _Queued | None:
        """Block until an item is due for worker `index`; None once stopped."""
        with self._cond:
            while not self._stopped:
                if index < self._policy.workers and self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)
                    self._cond.wait(wait)
                else:
                    self._cond.wait()
            return None

    def _run(self, index: int) -> None:
        while (item := self._next(index)) is not None:
            try:
                self._attempt(item)
            finally:
                with self._cond:
                    self._pending -= 1
                    self._cond.notify_all()

    def _attempt(self, item: _Queued) -> None:
        url = self.webhook
        if item.generation != self._generation:
            return  # queued before a reset: belongs to a world that no longer exists
        if not url:
            self._on_outcome("dropped")
            return
        policy = self._policy
        try:
            self._post(url, [item.event], policy.timeout_seconds)
        except urllib.error.HTTPError as answer:
            self._failed(item, policy, answer.code)
            return
        except OSError as no_answer:  # URLError is an OSError; so is a read timeout
            if isinstance(no_answer, TimeoutError) or isinstance(
                getattr(no_answer, "reason", None), TimeoutError
            ):
                self._on_outcome("timed_out")
            self._failed(item, policy, None)
            return
        self._on_outcome("delivered")
        replay_after = None if item.is_replay else self._dice.replay_after_success()
        if replay_after is not None:
            self._on_outcome("replayed")
            with self._cond:
                if item.generation == self._generation:
                    self._enqueue(time.monotonic() + replay_after, item.event, is_replay=True)

    def _failed(self, item: _Queued, policy: DeliveryPolicy, status: int | None) -> None:
        if not policy.retries(status):
            self._on_outcome("rejected")  # e.g. 400 / 413: Event Grid drops it at once
            return
        attempts = item.failed_attempts + 1
        delay = policy.retry_delay(attempts)
        if delay is None:
            self._on_outcome("dropped")
            return
        self._on_outcome("retried")
        with self._cond:
            if item.generation == self._generation:
                self._enqueue(time.monotonic() + delay, item.event, attempts, item.is_replay)

    @staticmethod
    def _post(url: str, events: list[dict[str, Any]], timeout: float) -> None:
        request = urllib.request.Request(
            url,
            data=json.dumps(events).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "aeg-event-type": "Notification"},
        )
        # Webhook receivers in tests use throw-away certificates.
        context = ssl._create_unverified_context() if url.startswith("https") else None
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
            if response.status >= 300:
                raise OSError(f"webhook answered {response.status}")
