"""The one retry policy for every Azure call poolsync makes (tenacity).

Transient: 429 throttling, 409 AnotherOperationInProgress/RetryableError (the load
balancer is busy), 412 (someone else wrote the pool first: the caller's attempt
re-reads and re-plans), 5xx, connection errors/timeouts, and long-running
operations that end Failed with a transient code. Permanent (raised at once):
400/401/403/404 and any other 4xx, and LROs that failed for a permanent reason.

An endpoint that refuses connections or whose name does not resolve is retried only briefly
(`unreachable_attempts`): that is a wrong endpoint, a firewall or an outage, not a blip, and the caller
should hear so in seconds, not after the deadline. Resets and timeouts of a request under way keep the
full budget.

Waits honour Retry-After (capped); otherwise exponential backoff with full jitter.
A total deadline bounds every call. Retries are logged with their reason and
counted in a RetryStats for tests and metrics.
"""

from __future__ import annotations

import logging
import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import tenacity
from azure.core.exceptions import (
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.polling.base_polling import OperationFailed
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import NameResolutionError, NewConnectionError

from shared import settings, telemetry

T = TypeVar("T")

BUSY_CODES = frozenset({"anotheroperationinprogress", "retryableerror", "retryableerrorduetoanotheroperation",
                        "operationpreempted"})
TRANSIENT_LRO_CODES = frozenset(
    {"internalservererror", "retryableerror", "anotheroperationinprogress", "operationpreempted",
     "serviceunavailable", "canceled", "canceledandsupersededduetoanotheroperation",
     "retryableerrorduetoanotheroperation", "operationtimedout", "networkingerror"}
)


@dataclass(frozen=True, slots=True)
class RetryDecision:
    retry: bool
    reason: str  # short, stable label used in logs and metrics
    retry_after: float | None = None  # seconds, from the Retry-After header


@dataclass(frozen=True)
class RetrySettings:
    deadline_seconds: float = settings.RETRY_DEADLINE.default
    max_attempts: int = settings.RETRY_MAX_ATTEMPTS.default
    base_backoff: float = settings.RETRY_BASE_BACKOFF.default
    max_backoff: float = settings.RETRY_MAX_BACKOFF.default
    retry_after_cap: float = settings.RETRY_AFTER_CAP.default
    unreachable_attempts: int = settings.RETRY_UNREACHABLE_ATTEMPTS.default

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetrySettings:
        env = settings.app_settings(env)
        return cls(
            deadline_seconds=float(settings.RETRY_DEADLINE.get(env)),
            max_attempts=int(settings.RETRY_MAX_ATTEMPTS.get(env)),
            base_backoff=float(settings.RETRY_BASE_BACKOFF.get(env)),
            max_backoff=float(settings.RETRY_MAX_BACKOFF.get(env)),
            retry_after_cap=float(settings.RETRY_AFTER_CAP.get(env)),
            unreachable_attempts=int(settings.RETRY_UNREACHABLE_ATTEMPTS.get(env)),
        )


@dataclass
class RetryStats:
    """Thread-safe counters: retries by reason, calls that gave up, permanent failures."""

    retries: Counter[str] = field(default_factory=Counter)
    gave_up: Counter[str] = field(default_factory=Counter)
    permanent: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, bucket: str, reason: str) -> None:
        with self._lock:
            getattr(self, bucket)[reason] += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {
                "retries": dict(self.retries),
                "gave_up": dict(self.gave_up),
                "permanent": dict(self.permanent),
            }

    def total_retries(self) -> int:
        with self._lock:
            return sum(self.retries.values())


RETRY_STATS = RetryStats()  # process-wide default, exported as metrics


def _error_code(exc: HttpResponseError) -> str:
    code = getattr(getattr(exc, "error", None), "code", None) or ""
    return str(code).lower()


def _retry_after(exc: HttpResponseError) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("Retry-After") if response is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP-date; rare for ARM, fall back to backoff


REFUSED = "connection refused"
NAME_NOT_RESOLVED = "name not resolved"


@dataclass(frozen=True, slots=True)
class Unreachable:
    """Why no connection to the endpoint could be opened at all."""

    endpoint: str  # scheme://host:port as dialled
    cause: str  # REFUSED | NAME_NOT_RESOLVED

    def message(self) -> str:
        return f"Azure Resource Manager unreachable at {self.endpoint}: {self.cause}"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and what it wraps (azure-core's inner_exception, __cause__, __context__)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not seen for seen in chain):
        chain.append(current)
        inner = getattr(current, "inner_exception", None)
        wrapped = inner if isinstance(inner, BaseException) else None
        current = wrapped or current.__cause__ or current.__context__
    return chain


def unreachable(exc: BaseException) -> Unreachable | None:
    """An Unreachable when `exc` is a refused connection or an unresolvable host name, else None."""
    chain = _causes(exc)
    connection = next((e for e in chain if isinstance(e, NewConnectionError)), None)
    if connection is None:
        return None
    if any(isinstance(e, (NameResolutionError, socket.gaierror)) for e in chain):
        cause = NAME_NOT_RESOLVED
    elif any(isinstance(e, ConnectionRefusedError) for e in chain):
        cause = REFUSED
    else:
        return None  # e.g. a connect timeout: the network may be slow, not closed
    conn = connection.conn
    scheme = "https" if isinstance(conn, HTTPSConnection) else "http"
    return Unreachable(f"{scheme}://{conn.host}:{conn.port}", cause)


def classify(exc: BaseException) -> RetryDecision:
    """Decide whether an exception from an Azure call is worth another attempt."""
    if (down := unreachable(exc)) is not None:
        return RetryDecision(True, "unreachable:" + ("refused" if down.cause == REFUSED else "dns"))
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, ConnectionError, TimeoutError)):
        return RetryDecision(True, "connection")
    if not isinstance(exc, HttpResponseError):
        return RetryDecision(False, type(exc).__name__)
    if isinstance(exc.__cause__, OperationFailed):
        code = _error_code(exc)
        return RetryDecision(code in TRANSIENT_LRO_CODES or not code, f"operation_failed:{code or 'unknown'}")
    status = exc.status_code or 0
    code = _error_code(exc)
    if status == 429:
        return RetryDecision(True, "throttled" if code not in BUSY_CODES else "busy", _retry_after(exc))
    if status == 409:
        if code in BUSY_CODES:
            return RetryDecision(True, "busy", _retry_after(exc))
        return RetryDecision(False, f"conflict:{code or 'unknown'}")
    if status == 412:
        return RetryDecision(True, "etag_mismatch")
    if status >= 500:
        return RetryDecision(True, f"server_error:{status}", _retry_after(exc))
    return RetryDecision(False, f"http_{status}:{code or 'unknown'}")


def _failure(retry_state: tenacity.RetryCallState) -> BaseException | None:
    outcome = retry_state.outcome
    return outcome.exception() if outcome is not None and outcome.failed else None


def _reason(retry_state: tenacity.RetryCallState) -> str:
    exc = _failure(retry_state)
    return classify(exc).reason if exc is not None else "unknown"


class _Wait(tenacity.wait.wait_base):
    """Retry-After when the service sent one (capped), else full-jitter exponential backoff."""

    def __init__(self, settings: RetrySettings, rng: random.Random) -> None:
        self.settings = settings
        self.rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        settings = self.settings
        exc = _failure(retry_state)
        hint = classify(exc).retry_after if exc is not None else None
        if hint is not None:
            wait = min(hint, settings.retry_after_cap)
        else:
            ceiling = min(settings.max_backoff, settings.base_backoff * 2 ** (retry_state.attempt_number - 1))
            wait = self.rng.uniform(0, ceiling)
        remaining = settings.deadline_seconds - (time.monotonic() - retry_state.start_time)
        return max(0.0, min(wait, remaining))


class _StopWhileUnreachable(tenacity.stop.stop_base):
    """Stop after `attempts` when the last one could not even connect (refused, or no such host)."""

    def __init__(self, attempts: int) -> None:
        self.attempts = attempts

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        exc = _failure(retry_state)
        if exc is None or retry_state.attempt_number < self.attempts:
            return False
        return unreachable(exc) is not None


def retrying(
    settings: RetrySettings | None = None,
    stats: RetryStats | None = None,
    operation: str = "azure call",
    rng: random.Random | None = None,
) -> tenacity.Retrying:
    settings = settings or RetrySettings()
    stats = stats or RETRY_STATS

    def should_retry(retry_state: tenacity.RetryCallState) -> bool:
        exc = _failure(retry_state)
        if exc is None:
            return False
        decision = classify(exc)
        if not decision.retry:
            stats.count("permanent", decision.reason)
        return decision.retry

    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        reason = _reason(retry_state)
        stats.count("retries", reason.split(":")[0])
        telemetry.emit("retry", logging.WARNING, operation=operation, reason=reason,
                       attempt=retry_state.attempt_number, wait_s=round(retry_state.upcoming_sleep, 3))

    def give_up(retry_state: tenacity.RetryCallState) -> None:
        exc = _failure(retry_state)
        reason = _reason(retry_state)
        stats.count("gave_up", reason.split(":")[0])
        telemetry.emit("retry_gave_up", logging.ERROR, operation=operation, reason=reason,
                       attempt=retry_state.attempt_number)
        if exc is not None:
            raise exc

    return tenacity.Retrying(
        retry=should_retry,
        wait=_Wait(settings, rng or random.Random()),
        stop=tenacity.stop_after_delay(settings.deadline_seconds)
        | tenacity.stop_after_attempt(settings.max_attempts)
        | _StopWhileUnreachable(settings.unreachable_attempts),
        before_sleep=before_sleep,
        retry_error_callback=give_up,
        reraise=True,
    )


def call_with_retry(
    fn: Callable[[], T],
    *,
    settings: RetrySettings | None = None,
    stats: RetryStats | None = None,
    operation: str = "azure call",
) -> T:
    """Run `fn` under the policy; the last exception propagates when retries end."""
    return retrying(settings, stats, operation)(fn)
