"""Queue messages that start a subscription's flusher (the `flush_requests` queue trigger).

Intake records an intent and asks for a flush; the flush runs in its own invocation, never inside an Event
Grid delivery. The message becomes visible `delay` seconds later (the coalescing quiet period), so a
burst is already gathering before anyone looks. A process sends at most one message per subscription while
its last one is still invisible: that message's invocation starts after this intent was recorded, so it
sees it (or finds the lock held by a flusher that will).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable

from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from shared.storage.account import CreatedOnce, StorageSettings

FLUSH_QUEUE = "poolsync-flush-requests"
# Queue visibility is set in whole seconds and may be rounded by the service: a message counts as
# covering new intents only until this long before it turns visible.
_VISIBILITY_MARGIN_SECONDS = 1.0


def request_message(scope: str) -> str:
    return json.dumps({"subscription": scope})


def parse_request(text: str) -> str:
    """The subscription a flush request names; ValueError for anything else."""
    try:
        document = json.loads(text)
    except ValueError as error:
        raise ValueError(f"flush request is not JSON: {error}") from None
    scope = document.get("subscription") if isinstance(document, dict) else None
    if not isinstance(scope, str) or not scope.strip() or len(scope) > 128:
        raise ValueError("flush request has no valid 'subscription'")
    return scope.strip().lower()


class FlushRequests:
    def __init__(self, queue: QueueClient, delay_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.queue = queue
        # whole seconds; one more than the quiet period so that a process can skip sends for a while
        self.delay = max(1, math.ceil(delay_seconds)) + 1
        self._clock = clock
        self._visible_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._ensure_queue = CreatedOnce(self.queue.create_queue)

    @classmethod
    def from_settings(cls, storage: StorageSettings, delay_seconds: float) -> FlushRequests:
        # Base64, because that is what the Functions queue trigger decodes by default (messageEncoding).
        queue = storage.queue_service().get_queue_client(FLUSH_QUEUE,
                                                         message_encode_policy=TextBase64EncodePolicy())
        return cls(queue, delay_seconds)

    def request(self, scope: str) -> bool:
        """Ask for a flush of `scope` after the delay, unless a message this process sent is still hidden
        long enough to start after now. Call it after the intent is recorded. True when a message went."""
        with self._lock:  # held while sending: a caller that skips knows the message went
            now = self._clock()
            if now < self._visible_at.get(scope, 0.0) - _VISIBILITY_MARGIN_SECONDS:
                return False
            self._send(scope, self.delay)
            self._visible_at[scope] = now + self.delay
        return True

    def request_now(self, scope: str) -> None:
        """A flush of `scope` at once (a flusher handing its remaining work to a fresh invocation)."""
        self._send(scope, 0)

    def _send(self, scope: str, delay: int) -> None:
        self._ensure_queue()
        self.queue.send_message(request_message(scope), visibility_timeout=delay)
