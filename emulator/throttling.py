"""ARM throttling: token buckets per subscription (and principal) and per resource provider.

ARM itself keeps buckets for reads, writes and (in the `azure` profile) deletes, per
subscription and calling principal; Microsoft.Network adds its own, larger-window limits.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from emulator.errors import ArmError

READS, WRITES, DELETES = "reads", "writes", "deletes"
NETWORK_NAMESPACE = "Microsoft.Network"


@dataclass
class BucketSettings:
    capacity: int
    refill_per_second: float


@dataclass
class ThrottleLimits:
    reads: BucketSettings
    writes: BucketSettings
    deletes: BucketSettings | None = None  # None: deletes spend the writes bucket
    per_principal: bool = False  # False: one bucket per subscription whoever calls
    network_reads: BucketSettings | None = None  # Microsoft.Network's own limits (None: none)
    network_writes: BucketSettings | None = None  # writes and deletes together, as NRP counts them


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


def operation_kind(method: str) -> str:
    if method == "DELETE":
        return DELETES
    return READS if method in ("GET", "HEAD") else WRITES


class SubscriptionThrottle:
    def __init__(
        self,
        reads: BucketSettings = DEFAULT_READS,
        writes: BucketSettings = DEFAULT_WRITES,
        clock: Callable[[], float] = time.monotonic,
        on_throttled: Callable[[str], None] = lambda bucket: None,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._on_throttled = on_throttled
        self.limits = ThrottleLimits(reads, writes)
        self._buckets: dict[tuple[str, ...], TokenBucket] = {}

    @property
    def reads(self) -> BucketSettings:
        return self.limits.reads

    @property
    def writes(self) -> BucketSettings:
        return self.limits.writes

    def configure(self, reads: BucketSettings | None = None, writes: BucketSettings | None = None) -> None:
        """Change the ARM read/write buckets (other limits stay); every budget starts full."""
        with self._lock:
            self.limits = replace(
                self.limits, reads=reads or self.limits.reads, writes=writes or self.limits.writes
            )
            self._buckets = {}

    def configure_limits(self, limits: ThrottleLimits) -> None:
        with self._lock:
            self.limits = replace(limits)
            self._buckets = {}

    def reset(self) -> None:
        self.configure()

    def charge(
        self,
        subscription: str,
        is_write: bool,
        *,
        principal: str = "",
        method: str | None = None,
        namespace: str = "",
    ) -> dict[str, str]:
        """Take a token from every bucket the request spends; returns the remaining-budget headers,
        or raises the 429 ARM / the resource provider sends."""
        kind = operation_kind(method) if method else (WRITES if is_write else READS)
        limits = self.limits
        if kind == DELETES and limits.deletes is None:
            kind = WRITES  # this profile counts deletes as writes
        actor = principal if limits.per_principal else ""
        scope = (subscription.lower(), actor)
        settings = {READS: limits.reads, WRITES: limits.writes, DELETES: limits.deletes}[kind]
        assert settings is not None
        allowed, remaining, retry_after = self._take(("arm", *scope, kind), settings)
        headers = {f"x-ms-ratelimit-remaining-subscription-{kind}": str(remaining)}
        if not allowed:
            self._on_throttled(f"subscription-{kind}")
            raise ArmError(
                429,
                "SubscriptionRequestsThrottled",
                f"Number of '{kind[:-1]}' requests for subscription '{subscription}' actor "
                f"'{principal or '00000000-0000-0000-0000-000000000000'}' exceeded. Please try again after "
                f"'{retry_after}' seconds after the additional tokens are available. "
                "Refer to https://aka.ms/arm-throttling for additional information.",
                headers={**headers, "Retry-After": str(retry_after)},
            )
        if namespace == NETWORK_NAMESPACE:
            headers.update(self._charge_network(scope, kind, subscription))
        return headers

    def _charge_network(self, scope: tuple[str, str], kind: str, subscription: str) -> dict[str, str]:
        network_kind = READS if kind == READS else WRITES
        settings = self.limits.network_reads if network_kind == READS else self.limits.network_writes
        if settings is None:
            return {}
        allowed, remaining, retry_after = self._take(("network", *scope, network_kind), settings)
        headers = {"x-ms-ratelimit-remaining-resource": f"Microsoft.Network/{network_kind};{remaining}"}
        if not allowed:
            self._on_throttled(f"network-{network_kind}")
            raise ArmError(
                429,
                "TooManyRequests",
                f"The request was throttled by Microsoft.Network: too many {network_kind} for subscription "
                f"'{subscription}'. Please retry after {retry_after} seconds.",
                headers={**headers, "Retry-After": str(retry_after)},
            )
        return headers

    def _take(self, key: tuple[str, ...], settings: BucketSettings) -> tuple[bool, int, int]:
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(settings, self._clock)
            return bucket.take()
