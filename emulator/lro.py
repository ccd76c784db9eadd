"""Long-running operations: the Azure-AsyncOperation / Location polling contract.

A write is accepted at once (201/200/202) and its operation runs for
`operation_seconds`; a background thread ends each operation at its deadline and runs
its completion callback (provisioningState -> Succeeded/Failed, delete takes effect,
events, stats). Polls that arrive after the deadline end the operation themselves, so
an answer never depends on how promptly the thread was scheduled.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELED = "Canceled"
MAX_REMEMBERED = 20000


def utc_now_text() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Operation:
    namespace: str  # Microsoft.Network | Microsoft.Compute
    subscription: str
    location: str
    resource_id: str
    method: str  # PUT | DELETE
    deadline: float
    on_complete: Callable[[Operation], None]
    lock_key: str | None = None  # the load balancer this operation keeps busy
    failure: dict[str, Any] | None = None  # set -> the operation ends Failed with this error
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = IN_PROGRESS
    start_time: str = field(default_factory=utc_now_text)
    end_time: str | None = None
    running_polls: int = 0  # polls answered while it ran (Compute's Retry-After differs on the first)

    def status_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/providers/{self.namespace}/locations/{self.location}"
            f"/operations/{self.id}"
        )

    def result_path(self) -> str:
        return (
            f"/subscriptions/{self.subscription}/providers/{self.namespace}/locations/{self.location}"
            f"/operationResults/{self.id}"
        )

    def status_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status}
        if self.namespace == "Microsoft.Compute":
            body.update(name=self.id, startTime=self.start_time)
            if self.end_time:
                body["endTime"] = self.end_time
        if self.status in (FAILED, CANCELED) and self.failure:
            body["error"] = self.failure
        return body


class OperationTracker:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        # Held while an operation ends, so nobody sees "Succeeded" before its effects are applied.
        self._finish_lock = threading.Lock()
        self._wakeup = threading.Condition(self._lock)
        self._operations: dict[str, Operation] = {}  # insertion order = start order
        self._running: dict[str, Operation] = {}
        self._due: list[tuple[float, int, Operation]] = []
        self._sequence = itertools.count()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="emulator-lro", daemon=True)
        self._thread.start()

    def start(self, operation: Operation) -> Operation:
        with self._wakeup:
            self._operations[operation.id] = operation
            self._running[operation.id] = operation
            self._forget_old()
            heapq.heappush(self._due, (operation.deadline, next(self._sequence), operation))
            self._wakeup.notify_all()
        return operation

    def get(self, operation_id: str) -> Operation | None:
        with self._lock:
            operation = self._operations.get(operation_id)
        if operation is not None and operation.status == IN_PROGRESS and self._clock() >= operation.deadline:
            self._finish(operation)
        return operation

    def note_running_poll(self, operation: Operation) -> int:
        """Count one poll answered while `operation` runs; returns how many came before it."""
        with self._lock:
            earlier = operation.running_polls
            operation.running_polls += 1
        return earlier

    def busy(self, lock_key: str) -> Operation | None:
        """The operation holding `lock_key` until its deadline, if any.

        Never ends operations itself: callers may hold the world lock, which completions need.
        """
        now = self._clock()
        with self._lock:
            for op in self._running.values():
                if op.lock_key == lock_key and op.status == IN_PROGRESS and now < op.deadline:
                    return op
        return None

    def cancel(self, operation: Operation, error: dict[str, Any]) -> bool:
        """End a running operation as Canceled (superseded) without running its completion.

        False if it already ended. Callers hold the world lock, which completions take before
        looking at the status, so a completion racing this one sees Canceled and does nothing.
        """
        with self._wakeup:
            if operation.status != IN_PROGRESS or operation.id not in self._running:
                return False
            operation.status = CANCELED
            operation.failure = error
            operation.end_time = utc_now_text()
            self._running.pop(operation.id, None)
            self._wakeup.notify_all()
        return True

    def wait_idle(self, timeout: float) -> bool:
        """True once every operation has ended (or was cleared)."""
        deadline = self._clock() + timeout
        with self._wakeup:
            while self._running:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    return False
                self._wakeup.wait(min(remaining, 0.5))
        return True

    def finish_all(self) -> int:
        """End every pending operation now (tests that hold operations open with a long duration)."""
        with self._lock:
            pending = list(self._running.values())
        for operation in pending:
            self._finish(operation)
        return len(pending)

    def pending(self) -> int:
        with self._lock:
            return len(self._running)

    def clear(self, then: Callable[[], None] = lambda: None) -> None:
        """Forget every operation (world reset): pending ones never complete.

        `then` runs before any other operation can end, so an operation finishing right now
        cannot apply its effects to the world that replaces this one.
        """
        with self._finish_lock:
            with self._wakeup:
                self._operations.clear()
                self._running.clear()
                self._due.clear()
            then()

    def stop(self) -> None:
        with self._wakeup:
            self._stopping = True
            self._wakeup.notify_all()
        self._thread.join(timeout=5)

    def _forget_old(self) -> None:
        """Remember only the last MAX_REMEMBERED operations, so long benchmarks stay bounded."""
        while len(self._operations) > MAX_REMEMBERED:
            oldest = next(iter(self._operations))
            if oldest in self._running:
                break
            del self._operations[oldest]

    def _finish(self, operation: Operation) -> None:
        with self._finish_lock:
            with self._lock:
                if operation.status != IN_PROGRESS or operation.id not in self._operations:
                    return
            operation.on_complete(operation)
            with self._wakeup:
                if operation.status != IN_PROGRESS:  # canceled while completing
                    return
                operation.status = FAILED if operation.failure else SUCCEEDED
                self._running.pop(operation.id, None)
                operation.end_time = utc_now_text()
                self._wakeup.notify_all()

    def _run(self) -> None:
        while True:
            with self._wakeup:
                while not self._stopping and (not self._due or self._due[0][0] > self._clock()):
                    timeout = None if not self._due else max(self._due[0][0] - self._clock(), 0.0)
                    self._wakeup.wait(timeout)
                if self._stopping:
                    return
                _, _, operation = heapq.heappop(self._due)
            self._finish(operation)
