"""Fault injection: rules matched per request, by rate (seeded) or by a scripted sequence."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Any

from emulator.errors import ArmError

THROTTLED = "429"
CONFLICT = "409"
PRECONDITION = "412"
SERVER_ERROR = "500"
UNAVAILABLE = "503"
RESET = "reset"  # close the connection without answering
SLOW = "slow"  # answer normally after `delay` seconds
LRO_FAILED = "lro_failed"  # accept the write, then end its operation Failed
PASS = "pass"  # in a sequence: no fault for this request

KINDS = (THROTTLED, CONFLICT, PRECONDITION, SERVER_ERROR, UNAVAILABLE, RESET, SLOW, LRO_FAILED)
ALIASES = {
    "throttle": THROTTLED,
    "conflict": CONFLICT,
    "precondition": PRECONDITION,
    "error": SERVER_ERROR,
    "unavailable": UNAVAILABLE,
}


@dataclass
class Fault:
    kind: str
    retry_after: int = 1
    delay: float = 1.0

    def error(self) -> ArmError:
        """The Azure-shaped error of the status-code kinds."""
        retry = {"Retry-After": str(self.retry_after)}
        if self.kind == THROTTLED:
            return ArmError(
                429,
                "SubscriptionRequestsThrottled",
                "Number of requests for subscription exceeded the limit. Please try again after "
                f"'{self.retry_after}' seconds. "
                "Refer to https://aka.ms/arm-throttling for additional information.",
                headers=retry,
            )
        if self.kind == CONFLICT:
            return ArmError(
                409,
                "AnotherOperationInProgress",
                "Another operation on this or dependent resource is in progress.",
                details=[],
                headers=retry,
            )
        if self.kind == PRECONDITION:
            return ArmError(
                412, "PreconditionFailed", "Precondition failed: the resource has changed.", details=[]
            )
        if self.kind == SERVER_ERROR:
            return ArmError(
                500, "InternalServerError", "An internal server error occurred (injected).", details=[]
            )
        if self.kind == UNAVAILABLE:
            return ArmError(
                503, "ServiceUnavailable", "The service is temporarily unavailable (injected).", headers=retry
            )
        raise ValueError(f"fault {self.kind} has no error response")

    @staticmethod
    def lro_error() -> dict[str, Any]:
        return {
            "code": "InternalServerError",
            "message": "The operation failed (injected fault).",
            "details": [],
        }


@dataclass
class FaultRule:
    kinds: list[str]  # one kind for a rate rule; the script for a sequence rule
    rate: float | None = None  # None: sequence rule
    method: str | None = None
    path: str | None = None  # case-insensitive substring of the request path
    resource_type: str | None = (
        None  # case-insensitive suffix of the resource type, e.g. "backendAddressPools"
    )
    times: int | None = None  # rate rules: stop after this many injections
    retry_after: int = 1
    delay: float = 1.0
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False)
    _position: int = field(default=0, init=False)
    _fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.kinds = [ALIASES.get(str(kind), str(kind)) for kind in self.kinds]
        for kind in self.kinds:
            if kind not in (*KINDS, PASS):
                raise ValueError(f"unknown fault kind {kind!r}; use one of {KINDS}")
        self._rng = random.Random(self.seed)

    def matches(self, method: str, path: str, resource_type: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        if self.path and self.path.lower() not in path.lower():
            return False
        return not (self.resource_type and not resource_type.lower().endswith(self.resource_type.lower()))

    def exhausted(self) -> bool:
        if self.rate is None:
            return self._position >= len(self.kinds)
        return self.times is not None and self._fired >= self.times

    def draw(self) -> str | None:
        if self.rate is None:
            kind = self.kinds[self._position]
            self._position += 1
            return None if kind == PASS else kind
        if self._rng.random() < self.rate:
            self._fired += 1
            return self.kinds[0]
        return None


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(
        self,
        kind: str,
        *,
        rate: float = 1.0,
        seed: int | None = None,
        method: str | None = None,
        path: str | None = None,
        resource_type: str | None = None,
        times: int | None = None,
        retry_after: int = 1,
        delay: float = 1.0,
    ) -> FaultRule:
        """Inject `kind` into matching requests with probability `rate` (at most `times` times)."""
        rule = FaultRule([kind], rate, method, path, resource_type, times, retry_after, delay, seed)
        with self._lock:
            self._rules.append(rule)
        return rule

    def add_sequence(
        self,
        kinds: list[str],
        *,
        method: str | None = None,
        path: str | None = None,
        resource_type: str | None = None,
        retry_after: int = 1,
        delay: float = 1.0,
    ) -> FaultRule:
        """Script the next matching requests: one entry each ("pass" lets one through)."""
        rule = FaultRule(list(kinds), None, method, path, resource_type, None, retry_after, delay)
        with self._lock:
            self._rules.append(rule)
        return rule

    def add_from_json(self, spec: dict[str, Any]) -> FaultRule:
        """The admin endpoint's body: {"kind"|"sequence", "rate", "seed", "method", "path", ...}."""
        common = {
            key: spec[key]
            for key in ("method", "path", "resource_type", "retry_after", "delay")
            if key in spec
        }
        if "sequence" in spec:
            return self.add_sequence(list(spec["sequence"]), **common)
        return self.add(
            spec["kind"],
            rate=float(spec.get("rate", 1.0)),
            seed=spec.get("seed"),
            times=spec.get("times"),
            **common,
        )

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()

    def pick(self, method: str, path: str, resource_type: str) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.exhausted() or not rule.matches(method, path, resource_type):
                    continue
                kind = rule.draw()
                if kind is not None:
                    return Fault(kind, rule.retry_after, rule.delay)
                if rule.rate is None:
                    return None  # a sequence's "pass" consumes the request
        return None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {
                    "kinds": r.kinds,
                    "rate": r.rate,
                    "method": r.method,
                    "path": r.path,
                    "resource_type": r.resource_type,
                    "exhausted": r.exhausted(),
                }
                for r in self._rules
            ]
