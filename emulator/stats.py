"""Counters for tests and benchmarks: requests, successful writes, rejections, faults."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from emulator.ids import ResourceId, id_key


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests: Counter[str] = Counter()
            self._lb_writes: Counter[str] = Counter()
            self._pool_writes: Counter[str] = Counter()
            self._rejections: Counter[str] = Counter()
            self._faults: Counter[str] = Counter()
            self._events: Counter[str] = Counter()
            self._by_principal: Counter[tuple[str, str]] = Counter()  # (principal, reads|writes|deletes)
            self._throttled: Counter[str] = Counter()  # bucket, e.g. subscription-writes, network-reads
            self._conflicts: Counter[str] = Counter()  # busy-LB behaviour chosen

    def request(self, method: str, resource_type: str) -> None:
        with self._lock:
            self._requests[f"{method} {resource_type}"] += 1

    def rejection(self, status: int, code: str) -> None:
        with self._lock:
            self._rejections[f"{status} {code}"] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self._faults[kind] += 1

    def event(self, outcome: str) -> None:
        with self._lock:
            self._events[outcome] += 1

    def arm_call(self, principal: str, kind: str) -> None:
        """One authenticated ARM call, by calling principal and kind (reads|writes|deletes, as throttled)."""
        with self._lock:
            self._by_principal[(principal, kind)] += 1

    def throttled(self, bucket: str) -> None:
        with self._lock:
            self._throttled[bucket] += 1

    def conflict(self, behaviour: str) -> None:
        with self._lock:
            self._conflicts[behaviour] += 1

    def calls_by(self, principal: str | None = None, kind: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (who, what), n in self._by_principal.items()
                if (principal is None or who == principal) and (kind is None or what == kind)
            )

    def throttled_count(self, bucket: str | None = None) -> int:
        """429s from throttling: of one bucket (`subscription-reads`, `network-writes`, ...) or all."""
        with self._lock:
            return sum(n for b, n in self._throttled.items() if bucket is None or b == bucket)

    def conflicts(self, behaviour: str | None = None) -> int:
        with self._lock:
            return sum(n for b, n in self._conflicts.items() if behaviour is None or b == behaviour)

    def deliveries(self, outcome: str | None = None) -> int:
        """Event deliveries by outcome (delivered, retried, dropped, duplicated, replayed, ...)."""
        with self._lock:
            return sum(n for o, n in self._events.items() if outcome is None or o == outcome)

    def write_succeeded(self, resource_id: str) -> None:
        """A write (PUT or DELETE) that completed; counted per load balancer and per pool."""
        rid = ResourceId.parse(resource_id)
        if rid.type.lower() != "loadbalancers":
            return
        with self._lock:
            self._lb_writes[rid.parent.key()] += 1
            if (rid.child_type or "").lower() == "backendaddresspools":
                self._pool_writes[rid.key()] += 1

    def pool_writes(self, resource_id: str) -> int:
        """Successful pool writes: of one pool (pool id) or of all pools of a load balancer (LB id)."""
        key = id_key(resource_id)
        with self._lock:
            if "/backendaddresspools/" in key:
                return self._pool_writes[key]
            return sum(n for pool, n in self._pool_writes.items() if pool.startswith(key + "/"))

    def lb_writes(self, lb_id: str) -> int:
        """Successful writes to a load balancer, its own PUTs and its pools' together."""
        with self._lock:
            return self._lb_writes[id_key(lb_id)]

    def requests(self, method: str | None = None, resource_type: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for key, n in self._requests.items()
                if (method is None or key.split(" ", 1)[0] == method.upper())
                and (resource_type is None or key.lower().endswith(resource_type.lower()))
            )

    def rejections(self, status: int | None = None, code: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for key, n in self._rejections.items()
                if (status is None or key.split(" ", 1)[0] == str(status))
                and (code is None or key.split(" ", 1)[1] == code)
            )

    def faults_injected(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(n for k, n in self._faults.items() if kind is None or k == kind)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": dict(self._requests),
                "writes_by_load_balancer": dict(self._lb_writes),
                "writes_by_pool": dict(self._pool_writes),
                "rejections": dict(self._rejections),
                "faults": dict(self._faults),
                "events": dict(self._events),
                "calls_by_principal": _nested(self._by_principal),
                "throttled_by_bucket": dict(self._throttled),
                "conflicts_by_behaviour": dict(self._conflicts),
                "pool_writes_by_load_balancer": _pool_writes_by_lb(self._pool_writes),
            }


def _nested(counts: Counter[tuple[str, str]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (principal, kind), n in counts.items():
        out.setdefault(principal, {})[kind] = n
    return out


def _pool_writes_by_lb(pool_writes: Counter[str]) -> dict[str, int]:
    out: Counter[str] = Counter()
    for pool_key, n in pool_writes.items():
        out[pool_key.rsplit("/backendaddresspools/", 1)[0]] += n
    return dict(out)
