"""How the emulator's Event Grid sender delivers: retry policy and seeded misbehaviour.

Pure decisions (no I/O): which answers are retried, how long to wait before the next
attempt, and which events get duplicated, delayed, held back or replayed. The sender
in `emulator.events` acts on them.

Azure's behaviour (learn.microsoft.com/azure/event-grid/delivery-and-retry): a webhook
answer of 400, 401, 403 or 413 is not retried (the event is dropped without a
dead-letter destination); no answer within 30 s counts as a failure; retries follow
10 s, 30 s, 1 min, 5 min, 10 min, 30 min, 1 h, 3 h, 6 h, then every 12 h, for up to 30
attempts (the default maxDeliveryAttempts); order is not guaranteed and an event may
arrive more than once.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field, replace
from typing import Any

EVENT_GRID_RETRY_SCHEDULE = (10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 10800.0, 21600.0, 43200.0)
EVENT_GRID_NO_RETRY = frozenset({400, 401, 403, 413})


@dataclass(frozen=True)
class DeliveryPolicy:
    timeout_seconds: float = 10.0  # one attempt; no answer by then is a failure
    retry_schedule: tuple[float, ...] = (0.2, 0.4, 0.8, 1.6)  # wait before attempt 2, 3, ...; last repeats
    backoff_scale: float = 1.0  # multiplies the schedule (and the hold-back delays) so tests run fast
    max_attempts: int = 5
    no_retry_statuses: frozenset[int] = frozenset()  # webhook answers that end delivery at once
    duplicate_rate: float = 0.0  # share of events sent twice straight away
    delay_rate: float = 0.0  # share of events sent after up to `delay_seconds`
    delay_seconds: float = 0.0
    reorder_rate: float = 0.0  # share held back `reorder_seconds`, so later events overtake them
    reorder_seconds: float = 0.0
    replay_rate: float = 0.0  # share sent again `replay_seconds` after a successful delivery
    replay_seconds: float = 0.0
    seed: int | None = None
    workers: int = 1  # concurrent deliveries; 1 keeps publication order when nothing is held back

    def __post_init__(self) -> None:
        for name in ("duplicate_rate", "delay_rate", "reorder_rate", "replay_rate"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {rate}")
        if self.max_attempts < 1 or self.workers < 1:
            raise ValueError("max_attempts and workers must be at least 1")
        if self.timeout_seconds <= 0 or self.backoff_scale < 0 or not self.retry_schedule:
            raise ValueError("timeout_seconds must be > 0, backoff_scale >= 0, retry_schedule not empty")

    def retries(self, status: int | None) -> bool:
        """Whether a failed attempt (HTTP status, or None for no answer) is tried again."""
        return status not in self.no_retry_statuses

    def retry_delay(self, failed_attempts: int) -> float | None:
        """Seconds before the next attempt after `failed_attempts` failures; None = give up."""
        if failed_attempts >= self.max_attempts:
            return None
        step = self.retry_schedule[min(failed_attempts, len(self.retry_schedule)) - 1]
        return step * self.backoff_scale


DEFAULT_DELIVERY = DeliveryPolicy()
AZURE_DELIVERY = DeliveryPolicy(
    timeout_seconds=30.0,
    retry_schedule=EVENT_GRID_RETRY_SCHEDULE,
    max_attempts=30,
    no_retry_statuses=EVENT_GRID_NO_RETRY,
    workers=4,
)


def policy_from(base: DeliveryPolicy, **changes: Any) -> DeliveryPolicy:
    """`base` with some fields changed (lists accepted for the tuple / set fields)."""
    if "retry_schedule" in changes:
        changes["retry_schedule"] = tuple(float(s) for s in changes["retry_schedule"])
    if "no_retry_statuses" in changes:
        changes["no_retry_statuses"] = frozenset(int(s) for s in changes["no_retry_statuses"])
    unknown = set(changes) - set(DeliveryPolicy.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown delivery settings: {sorted(unknown)}")
    return replace(base, **changes)


@dataclass(frozen=True)
class Send:
    """One copy of an event to send `after` seconds from publication; `kind` names why it exists."""

    after: float
    kind: str  # first | duplicate | delayed | reordered


@dataclass
class Misbehaviour:
    """The seeded dice of a policy: thread-safe, reproducible for a given seed and call order."""

    policy: DeliveryPolicy
    _rng: random.Random = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.policy.seed)

    def _hit(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    def sends_for_new_event(self) -> list[Send]:
        p = self.policy
        with self._lock:
            if self._hit(p.reorder_rate):
                first = Send(p.reorder_seconds * p.backoff_scale, "reordered")
            elif self._hit(p.delay_rate):
                first = Send(self._rng.uniform(0, p.delay_seconds) * p.backoff_scale, "delayed")
            else:
                first = Send(0.0, "first")
            sends = [first]
            if self._hit(p.duplicate_rate):
                sends.append(Send(first.after, "duplicate"))
            return sends

    def replay_after_success(self) -> float | None:
        p = self.policy
        with self._lock:
            return p.replay_seconds * p.backoff_scale if self._hit(p.replay_rate) else None
