"""One health check per process per TTL, shared by every caller.

`GET /api/health` is anonymous, and each check reads ARM. Azure's read budget is per principal (250
tokens, refilled 25/s), so a prober hammering /health could starve real flushes into 429s. The cache
runs at most one check at a time (concurrent callers wait for it: single flight) and reuses its
result until it is `ttl_seconds` old, so N probes cost at most one check per TTL, failures included.
BoundedCheck keeps the answer within HEALTH_ANSWER_SECONDS while ARM hangs (the late answer is cached too).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar

from shared import settings

HEALTH_CACHE_ENV = settings.HEALTH_CACHE_SECONDS.name
DEFAULT_TTL_SECONDS = settings.HEALTH_CACHE_SECONDS.default
MAX_TTL_SECONDS = 3600.0

T = TypeVar("T")

# /api/health answers within this many seconds whatever ARM does (load balancer probes give up after 5-30 s).
HEALTH_ANSWER_SECONDS = 4.0
# Its one ARM read gets short timeouts, so a hanging endpoint frees the check's thread soon after.
HEALTH_PROBE_TIMEOUTS = {"connection_timeout": 3.0, "read_timeout": 3.0}


def health_cache_seconds(env: Mapping[str, str]) -> float:
    """POOLSYNC_HEALTH_CACHE_SECONDS: at least 1 (0 would let probes spend the read budget again)."""
    text = settings.HEALTH_CACHE_SECONDS.text(env)
    if not text:
        return DEFAULT_TTL_SECONDS
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{HEALTH_CACHE_ENV}={text!r} is not a number of seconds") from None
    if not math.isfinite(value) or not 1 <= value <= MAX_TTL_SECONDS:
        raise ValueError(f"{HEALTH_CACHE_ENV}={text!r} must be between 1 and {MAX_TTL_SECONDS:g} seconds")
    return value


@dataclass(frozen=True)
class Checked(Generic[T]):
    value: T
    age_seconds: float  # how long ago the check that produced `value` finished


class SingleFlightCache(Generic[T]):
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Condition()
        self._value: T | None = None
        self._checked_at: float | None = None
        self._running = False
        self._generation = 0  # counts finished checks
        self.waiting = 0  # callers blocked on the check in flight (tests watch it)

    def get(self, check: Callable[[], T], ttl_seconds: float) -> Checked[T]:
        with self._lock:
            while True:
                fresh = self._fresh(ttl_seconds)
                if fresh is not None:
                    return fresh
                if not self._running:
                    self._running = True
                    break
                generation = self._generation
                self.waiting += 1
                try:
                    self._lock.wait()
                finally:
                    self.waiting -= 1
                if self._generation != generation and self._value is not None:
                    # The flight we waited for finished: its result is ours, however short the TTL.
                    return Checked(self._value, max(0.0, self.clock() - (self._checked_at or 0.0)))
                # else it raised: loop, and one of the waiters runs the check
        try:
            value = check()
        except BaseException:
            with self._lock:
                self._running = False
                self._lock.notify_all()  # a waiter becomes the next leader
            raise
        with self._lock:
            self._value, self._checked_at, self._running = value, self.clock(), False
            self._generation += 1
            self._lock.notify_all()
        return Checked(value, 0.0)

    def clear(self) -> None:
        with self._lock:
            self._value, self._checked_at = None, None

    def _fresh(self, ttl_seconds: float) -> Checked[T] | None:
        if self._checked_at is None or self._value is None:
            return None
        age = self.clock() - self._checked_at
        if 0 <= age < ttl_seconds:
            return Checked(self._value, age)
        return None


class _Flight:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.raised = False
        self.value: object = None


class BoundedCheck(Generic[T]):
    """Answer within `limit_seconds` whatever the check does: the check runs in a worker thread, and a
    caller that waited `limit_seconds` gets `late()` instead. At most one check runs at a time: a caller
    arriving while an earlier check still hangs waits for that one (again bounded) rather than starting
    another, so a hanging ARM costs one thread, not one per probe."""

    def __init__(self, limit_seconds: float) -> None:
        self.limit_seconds = limit_seconds
        self._lock = threading.Lock()
        self._flight: _Flight | None = None

    def run(self, check: Callable[[], T], late: Callable[[], T]) -> T:
        with self._lock:
            flight = self._flight
            if flight is None or flight.done.is_set():
                flight = self._flight = _Flight()
                threading.Thread(target=self._work, args=(check, flight), name="poolsync-health-check",
                                 daemon=True).start()
        if not flight.done.wait(self.limit_seconds):
            return late()
        if flight.raised:
            assert isinstance(flight.value, BaseException)
            raise flight.value
        return flight.value  # type: ignore[return-value]

    @staticmethod
    def _work(check: Callable[[], T], flight: _Flight) -> None:
        try:
            flight.value = check()
        except BaseException as error:  # handed to the callers that wait for it
            flight.raised, flight.value = True, error
        flight.done.set()
