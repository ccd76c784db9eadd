"""`Cloud`: the emulated Azure behind the HTTPS face - world, ARM API, long-running operations,
throttling, faults, role assignments, events, stats - and the knobs tests and benchmarks turn."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from emulator import topology as topology_loader
from emulator.api import ArmApi, Config
from emulator.delivery import DeliveryPolicy, policy_from
from emulator.events import EventPublisher
from emulator.faults import Faults
from emulator.lro import OperationTracker
from emulator.profiles import Profile, make_profile
from emulator.rbac import RoleAssignments
from emulator.retry_after import LroRetryAfter
from emulator.stats import Stats
from emulator.throttling import BucketSettings, SubscriptionThrottle
from emulator.world import World


class Cloud:
    def __init__(
        self,
        topology: dict[str, Any] | str | Path | None = None,
        operation_seconds: float | None = None,
        lro_retry_after: int | Mapping[str, Any] | LroRetryAfter | None = None,
        page_size: int = 100,
        event_webhook: str | None = None,
        read_limit: BucketSettings | None = None,
        write_limit: BucketSettings | None = None,
        profile: str = "default",
    ) -> None:
        """`profile`: "default" (lenient) or "azure" (Azure's documented limits and behaviours);
        explicit `operation_seconds`, `lro_retry_after` and limits override the profile's."""
        self.config = Config(page_size=page_size)
        self.world = World()
        self.stats = Stats()
        self.faults = Faults()
        self.throttle = SubscriptionThrottle(on_throttled=self.stats.throttled)
        self.events = EventPublisher(event_webhook, on_outcome=self.stats.event)
        self.tracker = OperationTracker(time.monotonic)
        self.api = ArmApi(self.world, self.tracker, self.stats, self.events, self.config, time.monotonic)
        self.rbac = RoleAssignments()
        self.api.can_read = self.rbac.can_read
        self.set_profile(profile)
        if operation_seconds is not None:
            self.operation_seconds = operation_seconds
        if lro_retry_after is not None:
            self.lro_retry_after = lro_retry_after
        if read_limit or write_limit:
            self.configure_throttling(read_limit, write_limit)
            self.profile.throttle = self.throttle.limits
        if topology is not None:
            self.load_topology(topology)

    # ------------------------------------------------------------ settings
    def set_profile(self, name: str | Profile, **overrides: Any) -> Profile:
        """Switch to a profile ("default" | "azure", or a `Profile`), with optional overrides of its
        fields (e.g. conflict_mix={"cancel_earlier": 1}, conflict_seed=3, max_addresses_per_pool=10,
        delivery={"backoff_scale": 0.01}). Sets operation_seconds, lro_retry_after, throttling and the
        event delivery policy (azure: AZURE_DELIVERY, default: DEFAULT_DELIVERY) to the profile's;
        reset() keeps it."""
        profile = (
            name.with_overrides(**overrides) if isinstance(name, Profile) else make_profile(name, **overrides)
        )
        self.profile = profile
        self.api.use_profile(profile)
        self.throttle.configure_limits(profile.throttle)
        self.config.operation_seconds = profile.operation_seconds
        self.config.lro_retry_after = profile.lro_retry_after
        self.events.configure(profile.delivery)
        return profile

    @property
    def operation_seconds(self) -> float:
        return self.config.operation_seconds

    @operation_seconds.setter
    def operation_seconds(self, value: float) -> None:
        self.config.operation_seconds = float(value)

    @property
    def lro_retry_after(self) -> LroRetryAfter:
        return self.config.lro_retry_after

    @lro_retry_after.setter
    def lro_retry_after(self, value: int | Mapping[str, Any] | LroRetryAfter) -> None:
        """Seconds on every accepted write and running poll (0: none), or per provider
        `{"Microsoft.Compute": {"accepted_write": 10, ...}}` (see `RetryAfter`); set_profile restores the
        profile's."""
        self.config.lro_retry_after = LroRetryAfter.parse(value)

    @property
    def page_size(self) -> int:
        return self.config.page_size

    @page_size.setter
    def page_size(self, value: int) -> None:
        self.config.page_size = int(value)

    # --------------------------------------------------------------- world
    def reset(self, topology: dict[str, Any] | str | Path | None = None) -> None:
        """A fresh world; faults, role assignments, stats, throttling budgets, pending operations and
        event log cleared."""
        self.tracker.clear(then=self.world.clear)
        self.api.forget_operations()
        self.faults.clear()
        self.rbac.clear()
        self.stats.reset()
        self.throttle.configure_limits(self.profile.throttle)
        self.api.use_profile(self.profile)  # the conflict mix starts again from its seed
        self.events.clear()
        if topology is not None:
            self.load_topology(topology)

    def load_topology(self, topology: dict[str, Any] | str | Path) -> dict[str, int]:
        """Add the resources of a topology (dict, or JSON/YAML file) to the world."""
        return topology_loader.load(self.world, topology)

    def configure_throttling(
        self, reads: BucketSettings | None = None, writes: BucketSettings | None = None
    ) -> None:
        self.throttle.configure(reads, writes)

    def configure_rbac(self, assignments: dict[str, dict[str, list[str]]] | None) -> None:
        """Role assignments `{principal: {"read": [scope, ...], "write": [scope, ...]}}`, replacing
        any earlier ones; None or {} turns RBAC off (everything allowed, the default)."""
        self.rbac.clear()
        for principal, scopes in (assignments or {}).items():
            self.rbac.assign(principal, scopes.get("read", ()), scopes.get("write", ()))

    # -------------------------------------------------------------- events
    def set_event_webhook(self, url: str | None) -> None:
        self.events.webhook = url

    def configure_delivery(self, policy: DeliveryPolicy | None = None, **changes: Any) -> DeliveryPolicy:
        """Event delivery: `policy` (default: the profile's, DEFAULT_DELIVERY or AZURE_DELIVERY) with
        `changes` applied, e.g. `configure_delivery(AZURE_DELIVERY, backoff_scale=0.01, seed=3)`.
        Lasts until the next set_profile (reset() keeps it)."""
        chosen = policy_from(policy or self.profile.delivery, **changes)
        self.events.configure(chosen)
        return chosen

    def wait_events_delivered(self, timeout: float = 30.0) -> bool:
        return self.events.wait_delivered(timeout)

    def complete_operations(self) -> int:
        """End all pending long-running operations at once; returns how many there were."""
        return self.tracker.finish_all()

    def wait_operations_done(self, timeout: float = 30.0) -> bool:
        """True once no long-running operation is pending (e.g. before inspecting the world)."""
        return self.tracker.wait_idle(timeout)

    def stop(self) -> None:
        self.tracker.stop()
        self.events.stop()
