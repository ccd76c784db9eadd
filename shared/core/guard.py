"""The blast-radius guard: how much of a pool one change may remove without a direct read confirming it.

`guarded_plan` is the guard for automatic plans: removals a direct read confirmed (`confirmed`) always go
ahead; if the unconfirmed ones remove too much, they alone are held back and the rest of the plan still
applies, so one suspicious read never wedges a pool. `check_guard` is the all-or-nothing form for an
operator's explicit plan.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta

from shared import settings
from shared.core.durations import parse_duration
from shared.core.models import DesiredAddress, PoolSnapshot
from shared.core.naming import is_managed_name
from shared.core.plan import PoolPlan, apply_plan, plan
from shared.errors import GuardError

MAX_REMOVE_FRACTION_ENV = settings.MAX_REMOVE_FRACTION.name
DEFAULT_MAX_REMOVE_FRACTION = settings.MAX_REMOVE_FRACTION.default
GUARD_WINDOW_ENV = settings.GUARD_WINDOW.name
DEFAULT_GUARD_WINDOW = settings.GUARD_WINDOW.default


@dataclass(frozen=True)
class GuardSettings:
    max_remove_fraction: float = DEFAULT_MAX_REMOVE_FRACTION
    window: timedelta = DEFAULT_GUARD_WINDOW  # unconfirmed removals within it count together

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GuardSettings:
        env = settings.app_settings(env)
        window_text = settings.GUARD_WINDOW.text(env)
        window = parse_duration(window_text, GUARD_WINDOW_ENV) if window_text else DEFAULT_GUARD_WINDOW
        if window <= timedelta(0):
            raise ValueError(f"{GUARD_WINDOW_ENV} must be longer than 0, got {window_text!r}")
        raw = settings.MAX_REMOVE_FRACTION.text(env)
        if not raw:
            return cls(window=window)
        try:
            fraction = float(raw)
        except ValueError:
            raise ValueError(
                f"{MAX_REMOVE_FRACTION_ENV} must be a number between 0 and 1, got {raw!r}"
            ) from None
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"{MAX_REMOVE_FRACTION_ENV} must be between 0 and 1, got {raw!r}")
        return cls(fraction, window)


class GuardRefused(GuardError):
    """The plan would remove too much; re-run with force (and log why) to override."""

    def __init__(self, plan: PoolPlan, reason: str) -> None:
        super().__init__(f"{plan.pool_id}: {reason}")
        self.plan = plan
        self.reason = reason


_EPSILON = 1e-9  # 0.1 * 3 must not refuse 0.3 of a pool because of binary floating point


def guard_refusal(plan: PoolPlan, current: PoolSnapshot, settings: GuardSettings,
                  recent_unconfirmed: Collection[str] = ()) -> str | None:
    """Why the guard refuses `plan`, or None. Confirmed removals (`plan.confirmed`) never count.

    - Removing more than `max_remove_fraction` of the pool's managed entries without confirmation is
      refused. Only removals of managed entries count: a readdress or rename keeps the member, and an
      unmanaged entry is only ever removed on an operator's explicit request.
    - `recent_unconfirmed` (names): the unconfirmed removals poolsync already applied to this pool within
      the guard's window. They count together with this plan's, against the pool as it was at the window's
      start (approximated as today's managed entries plus those), so a mass removal cut into one-owner
      rounds is refused as a whole. Names back in the pool (re-added, or a write that never landed) do not
      count.
    - Leaving a pool that had addresses with none is refused when unconfirmed removals take part in
      emptying it; deleting a pool's last VM (confirmed) may empty it.
    Small pools follow from that: removing 1 of 1 managed entry unconfirmed is refused (it exceeds any
    fraction below 1, and empties the pool unless unmanaged entries remain); 1 of 2 (= 0.5) passes at
    the default.
    """
    unconfirmed = plan.unconfirmed_removes()
    if not unconfirmed:
        return None
    managed = sum(1 for entry in current.addresses if is_managed_name(entry.name))
    removing = sum(1 for entry in unconfirmed if is_managed_name(entry.name))
    present = {entry.name.lower() for entry in current.addresses}
    earlier = len({name.lower() for name in recent_unconfirmed if is_managed_name(name)} - present)
    start = managed + earlier
    if removing and earlier + removing > settings.max_remove_fraction * start + _EPSILON:
        if not earlier:
            return (
                f"would remove {removing} of {managed} managed addresses, more than the allowed "
                f"{settings.max_remove_fraction:g} ({MAX_REMOVE_FRACTION_ENV})"
            )
        return (
            f"would remove {removing} more managed addresses after {earlier} unconfirmed removals within "
            f"{GUARD_WINDOW_ENV}: {earlier + removing} of {start}, more than the allowed "
            f"{settings.max_remove_fraction:g} ({MAX_REMOVE_FRACTION_ENV})"
        )
    if current.addresses and not apply_plan(current.addresses, plan):
        return f"would leave the pool empty (it has {len(current.addresses)} addresses)"
    return None


def check_guard(plan: PoolPlan, current: PoolSnapshot, settings: GuardSettings, force: bool = False) -> None:
    """Raise GuardRefused if the guard refuses `plan` (see `guard_refusal`), unless forced.

    For operator plans (`plan_manual`), which are all or nothing; automatic plans use `guarded_plan`.
    """
    if force:
        return
    reason = guard_refusal(plan, current, settings)
    if reason is not None:
        raise GuardRefused(plan, reason)


def guarded_plan(
    current: PoolSnapshot,
    desired: Mapping[str, DesiredAddress],
    settings: GuardSettings,
    *,
    scope: Callable[[str], bool] | None = None,
    confirmed: Mapping[str, str] | None = None,
    force: bool = False,
    recent_unconfirmed: Collection[str] = (),
    admin_of_new: Mapping[str, str] | None = None,
) -> PoolPlan:
    """`plan()` with the guard applied by holding back, never by blocking the whole plan.

    If the guard refuses the plan (counting `recent_unconfirmed`, see `guard_refusal`), every unconfirmed
    removal is held (`held`, `hold_reason`), and the plan is rebuilt around them: adds, readdresses,
    renames and confirmed removals still go ahead, except an add or move that needs a held entry's IP (a
    conflict). `force` skips the guard. `admin_of_new` goes to `plan()`.
    """
    full = plan(current, desired, scope=scope, confirmed=confirmed, admin_of_new=admin_of_new)
    if force:
        return full
    reason = guard_refusal(full, current, settings, recent_unconfirmed)
    if reason is None:
        return full
    hold = [entry.name.lower() for entry in full.unconfirmed_removes()]
    return replace(plan(current, desired, scope=scope, confirmed=confirmed, hold=hold,
                        admin_of_new=admin_of_new), hold_reason=reason)
