"""Retry-After on long-running operations, per resource provider (values and sources in docs/emulator.md).

Azure's providers differ: the Network RP asks for 3 s on an accepted PUT and 10 s on an accepted DELETE and on
every poll that is still running; the Compute RP asks for 10 s on an accepted write, 50 s (PUT) or 30 s
(DELETE) on the first running poll, and nothing after that, so a client then falls back to its own
polling interval (30 s by default in the Python SDK).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

WRITES = ("PUT", "PATCH")  # answered 201/200 with the resource; DELETE and POST actions are answered 202


@dataclass(frozen=True)
class RetryAfter:
    """Seconds one resource provider puts in Retry-After; 0 leaves the header out."""

    accepted_write: int = 0  # on the 201/200 that accepts a PUT/PATCH
    accepted_delete: int = 0  # on the 202 that accepts a DELETE or a POST action
    first_poll_write: int = 0  # on the first status poll of a write that is still running
    first_poll_delete: int = 0  # the same for a DELETE or POST action
    later_polls: int = 0  # on every further poll that is still running

    def on_accept(self, method: str) -> int:
        return self.accepted_write if method in WRITES else self.accepted_delete

    def on_poll(self, method: str, earlier_polls: int) -> int:
        if earlier_polls:
            return self.later_polls
        return self.first_poll_write if method in WRITES else self.first_poll_delete


@dataclass(frozen=True)
class LroRetryAfter:
    """Retry-After by resource provider namespace; a provider not listed sends none."""

    by_provider: Mapping[str, RetryAfter] = field(default_factory=dict)

    def of(self, namespace: str) -> RetryAfter:
        for name, hints in self.by_provider.items():
            if name.lower() == namespace.lower():
                return hints
        return RetryAfter()

    @classmethod
    def uniform(cls, seconds: int) -> LroRetryAfter:
        """The same value on every answer of every provider (0: never a Retry-After)."""
        same = RetryAfter(*(int(seconds),) * len(dataclasses.fields(RetryAfter)))
        return cls({namespace: same for namespace in ("Microsoft.Network", "Microsoft.Compute")})

    @classmethod
    def parse(cls, value: int | Mapping[str, Any] | LroRetryAfter) -> LroRetryAfter:
        """An int (one value everywhere) or `{namespace: {field: seconds}}` (fields as in `RetryAfter`;
        a provider left out sends none)."""
        if isinstance(value, LroRetryAfter):
            return value
        if isinstance(value, bool) or not isinstance(value, int | Mapping):
            raise ValueError(
                f"lro_retry_after must be seconds or {{provider: {{field: seconds}}}}, not {value!r}"
            )
        if isinstance(value, int):
            if value < 0:
                raise ValueError("lro_retry_after cannot be negative")
            return cls.uniform(value)
        known = {f.name for f in dataclasses.fields(RetryAfter)}
        table = {}
        for namespace, hints in value.items():
            unknown = set(hints) - known
            if unknown:
                raise ValueError(f"unknown Retry-After field(s) {', '.join(sorted(unknown))}; "
                                 f"use {', '.join(sorted(known))}")
            table[str(namespace)] = RetryAfter(**{name: int(seconds) for name, seconds in hints.items()})
        return cls(table)

    def describe(self) -> dict[str, dict[str, int]]:
        return {namespace: dataclasses.asdict(hints) for namespace, hints in self.by_provider.items()}


NO_RETRY_AFTER = LroRetryAfter()  # clients poll at their own interval: fast tests
AZURE_RETRY_AFTER = LroRetryAfter({
    "Microsoft.Network": RetryAfter(
        accepted_write=3, accepted_delete=10, first_poll_write=10, first_poll_delete=10, later_polls=10
    ),
    "Microsoft.Compute": RetryAfter(
        accepted_write=10, accepted_delete=10, first_poll_write=50, first_poll_delete=30, later_polls=0
    ),
})
