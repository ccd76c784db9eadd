"""Emulator profiles: how strict the emulated Azure is.

`default` is the lenient emulator the suite grew up with (huge throttling budgets, one
conflict behaviour). `azure` uses the numbers and behaviours Azure documents (sources in
docs/emulator.md), so "no 429" in a benchmark means something.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from emulator.conflicts import ACCEPT_THEN_FAIL, CANCEL_EARLIER, REJECT_409, RETRYABLE_429
from emulator.delivery import AZURE_DELIVERY, DEFAULT_DELIVERY, DeliveryPolicy, policy_from
from emulator.retry_after import AZURE_RETRY_AFTER, NO_RETRY_AFTER, LroRetryAfter
from emulator.throttling import DEFAULT_READS, DEFAULT_WRITES, BucketSettings, ThrottleLimits

NETWORK_WINDOW_SECONDS = 300.0  # Microsoft.Network publishes its limits per 5 minutes


def per_window(requests: int, seconds: float = NETWORK_WINDOW_SECONDS) -> BucketSettings:
    """A bucket that allows `requests` per `seconds`, refilled evenly."""
    return BucketSettings(capacity=requests, refill_per_second=requests / seconds)


@dataclass
class Profile:
    name: str
    throttle: ThrottleLimits
    operation_seconds: float
    lro_retry_after: LroRetryAfter  # Retry-After per provider on accepted writes and running polls
    conflict_mix: dict[str, float]  # behaviour -> weight for a write to a busy load balancer
    conflict_seed: int | None = 0
    strict_resources: bool = False  # Failed state blocks, syncMode, NIC entries, limits, completion etags
    max_addresses_per_pool: int | None = None
    max_addresses_per_load_balancer: int | None = None
    delivery: DeliveryPolicy = DEFAULT_DELIVERY  # how the Event Grid sender delivers events
    extra: dict[str, Any] = field(default_factory=dict)

    def with_overrides(self, **overrides: Any) -> Profile:
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown profile setting(s): {', '.join(sorted(unknown))}")
        if "lro_retry_after" in overrides:  # seconds, or {provider: {field: seconds}}
            overrides["lro_retry_after"] = LroRetryAfter.parse(overrides["lro_retry_after"])
        delivery = overrides.get("delivery")
        if isinstance(delivery, Mapping):  # changes to this profile's policy, e.g. {"backoff_scale": 0.01}
            overrides["delivery"] = policy_from(self.delivery, **delivery)
        return dataclasses.replace(self, **overrides)


def default_profile() -> Profile:
    return Profile(
        name="default",
        throttle=ThrottleLimits(
            reads=dataclasses.replace(DEFAULT_READS), writes=dataclasses.replace(DEFAULT_WRITES)
        ),
        operation_seconds=0.05,
        lro_retry_after=NO_RETRY_AFTER,  # fast: clients poll at their own polling_interval
        conflict_mix={REJECT_409: 1.0},
    )


def azure_profile() -> Profile:
    return Profile(
        name="azure",
        throttle=ThrottleLimits(
            reads=BucketSettings(capacity=250, refill_per_second=25.0),
            writes=BucketSettings(capacity=200, refill_per_second=10.0),
            deletes=BucketSettings(capacity=200, refill_per_second=10.0),
            per_principal=True,
            network_reads=per_window(10000),
            network_writes=per_window(1000),
        ),
        operation_seconds=5.0,
        lro_retry_after=AZURE_RETRY_AFTER,  # what the Network and Compute RPs send (docs/emulator.md)
        conflict_mix={REJECT_409: 1.0, RETRYABLE_429: 1.0, ACCEPT_THEN_FAIL: 1.0, CANCEL_EARLIER: 1.0},
        strict_resources=True,
        max_addresses_per_pool=5000,  # the Standard SKU comparison's current figure (see docs/emulator.md)
        max_addresses_per_load_balancer=None,
        delivery=AZURE_DELIVERY,
    )


PROFILES = {"default": default_profile, "azure": azure_profile}


def make_profile(name: str, **overrides: Any) -> Profile:
    factory = PROFILES.get(name)
    if factory is None:
        raise ValueError(f"unknown emulator profile {name!r}; choose one of {', '.join(PROFILES)}")
    return factory().with_overrides(**overrides)
