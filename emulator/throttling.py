"""ARM subscription throttling: one token bucket per subscription for reads and one for writes."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from emulator.errors import ArmError


@dataclass
class BucketSettings:
    capacity: int
    refill_per_second: float


# Generous defaults: tests that do not care about throttling never see it.
DEFAULT_READS = BucketSettings(capacity=12000, refill_per_second=200.0)
DEFAULT_WRITES = BucketSettings(capacity=1200, refill_per_second=20.0)


class TokenBucket:
    def __init__(self, settings: BucketSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self._clock = clock
        self._tokens = float(settings.capacity)
        self._stamp = clock()

    def take(self) -> tuple[bool, int, int]:
        """(allowed, remaining tokens, seconds until a token is available)."""
        now = self._clock()
        refill = self.settings.refill_per_second
        self._tokens = min(self.settings.capacity, self._tokens + (now - self._stamp) * refill)
        self._stamp = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True, int(self._tokens), 0
        wait = math.ceil((1 - self._tokens) / refill) if refill > 0 else 3600
        return False, 0, max(wait, 1)


class SubscriptionThrottle:
    def __init__(
        self,
        reads: BucketSettings = DEFAULT_READS,
        writes: BucketSettings = DEFAULT_WRITES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.configure(reads, writes)

    def configure(self, reads: BucketSettings | None = None, writes: BucketSettings | None = None) -> None:
        with self._lock:
            if reads is not None:
                self.reads = reads
            if writes is not None:
                self.writes = writes
            self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def reset(self) -> None:
        self.configure()

    def charge(self, subscription: str, is_write: bool) -> dict[str, str]:
        """Take a token; returns the remaining-budget header, or raises the 429 ARM sends."""
        kind = "writes" if is_write else "reads"
        with self._lock:
            key = (subscription.lower(), kind)
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(
                    self.writes if is_write else self.reads, self._clock
                )
            allowed, remaining, retry_after = bucket.take()
        header = {f"x-ms-ratelimit-remaining-subscription-{kind}": str(remaining)}
        if not allowed:
            raise ArmError(
                429,
                "SubscriptionRequestsThrottled",
                f"Number of '{kind[:-1]}' requests for subscription '{subscription}' actor "
                f"'00000000-0000-0000-0000-000000000000' exceeded. Please try again after "
                f"'{retry_after}' seconds after the additional tokens are available. "
                "Refer to https://aka.ms/arm-throttling for additional information.",
                headers={**header, "Retry-After": str(retry_after)},
            )
        return header
