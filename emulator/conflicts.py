"""What Network RP does with a write to a load balancer that is busy with another operation.

Azure answers in one of several documented ways (sources in docs/emulator.md); the
`azure` profile picks among them with a seeded, weighted choice so runs are reproducible.
This module only decides and builds the error bodies; `api` applies the outcome.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from typing import Any

from emulator.errors import ArmError

REJECT_409 = "reject_409"  # synchronous 409 AnotherOperationInProgress
RETRYABLE_429 = "retryable_429"  # synchronous 429 RetryableError / RetryableErrorDueToAnotherOperation
ACCEPT_THEN_FAIL = "accept_then_fail"  # accepted; the new operation ends Failed
CANCEL_EARLIER = "cancel_earlier"  # accepted; the earlier operation ends Canceled, its content undone
BEHAVIOURS = (REJECT_409, RETRYABLE_429, ACCEPT_THEN_FAIL, CANCEL_EARLIER)
CANCELED_STATUS = "Canceled"


class ConflictPolicy:
    def __init__(self, mix: Mapping[str, float], seed: int | None = 0) -> None:
        unknown = set(mix) - set(BEHAVIOURS)
        if unknown:
            raise ValueError(
                f"unknown conflict behaviour(s) {sorted(unknown)}; choose from {', '.join(BEHAVIOURS)}"
            )
        if any(weight < 0 for weight in mix.values()) or sum(mix.values()) <= 0:
            raise ValueError("conflict weights must be >= 0 and not all 0")
        self._choices = [b for b in BEHAVIOURS if mix.get(b, 0) > 0]
        self._weights = [mix[b] for b in self._choices]
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def choose(self) -> str:
        with self._lock:
            return self._random.choices(self._choices, self._weights)[0]


def operation_name(method: str) -> str:
    """NRP's name for an LB write, as its messages show it (pool writes are LB writes)."""
    return "DeleteLoadBalancerOperation" if method == "DELETE" else "PutLoadBalancerOperation"


def another_operation_in_progress(status_uri: str, retry_after: int) -> ArmError:
    return ArmError(
        409,
        "AnotherOperationInProgress",
        "Another operation on this or dependent resource is in progress. To retrieve status of the "
        f"operation use uri: {status_uri}.",
        details=[],
        headers={"Retry-After": str(retry_after)},
    )


def retryable_due_to_another_operation(
    holder_method: str, holder_id: str, resource_guid: str, retry_after: int
) -> ArmError:
    return ArmError(
        429,
        "RetryableError",
        "A retryable error occurred.",
        details=[
            {
                "code": "RetryableErrorDueToAnotherOperation",
                "message": f"Operation {operation_name(holder_method)} ({holder_id}) is updating resource "
                f"{resource_guid}. The call can be retried in {retry_after} seconds.",
            }
        ],
        headers={"Retry-After": str(retry_after)},
    )


def failed_due_to_another_operation(holder_method: str, holder_id: str) -> dict[str, Any]:
    """The error an accepted-then-failed operation ends with."""
    return {
        "code": "AnotherOperationInProgress",
        "message": f"Another operation on this or dependent resource is in progress: operation "
        f"{operation_name(holder_method)} ({holder_id}).",
        "details": [],
    }


def canceled_and_superseded(method: str, earlier_id: str, later_method: str, later_id: str) -> dict[str, Any]:
    """The error a superseded operation's status shows (status `Canceled`)."""
    return {
        "code": "Canceled",
        "message": "Operation was canceled.",
        "details": [
            {
                "code": "CanceledAndSupersededDueToAnotherOperation",
                "message": f"Operation {operation_name(method)} ({earlier_id}) was canceled and superseded "
                f"by operation {operation_name(later_method)} ({later_id}).",
            }
        ],
    }
