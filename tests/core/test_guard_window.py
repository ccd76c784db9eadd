"""The guard's window (unconfirmed removals of earlier rounds count together); drains carried to re-adds."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.core.guard import GuardSettings, guard_refusal, guarded_plan
from shared.core.models import ADMIN_DOWN
from shared.core.plan import CONFIRM_VM_DELETED, apply_plan, plan
from tests.core.test_identity_and_guard import keep, member, pool_with, want

DEFAULT_GUARD = GuardSettings()


def names(*vms: str) -> list[str]:
    return [member(vm, "").name.lower() for vm in vms]


def gone_from(start: int) -> list[str]:
    """Earlier rounds' removals: vm<start>..vm9, no longer in the pool."""
    return names(*(f"vm{i}" for i in range(start, 10)))


def one_vm_round(left: int, vm: str):
    """The pool after earlier rounds removed all but `left` of vm0..vm9, and a round scoped to `vm`."""
    current = pool_with(left)
    scope = {member(vm, "").name.lower()}
    return current, lambda lowered: lowered in scope


def test_round_by_round_removals_stop_at_the_fraction_of_the_pool_at_the_windows_start():
    # 10 managed entries; earlier rounds removed vm6..vm9 (4), this round would remove vm5: 5 of 10 - allowed.
    current, scope = one_vm_round(6, "vm5")
    allowed = guarded_plan(current, keep(1), DEFAULT_GUARD, scope=scope, recent_unconfirmed=gone_from(6))
    assert [e.name for e in allowed.removes] == [member("vm5", "").name] and not allowed.has_held

    # Once vm5 is gone too, removing vm4 would make it 6 of 10: held, with the window in the reason.
    current, scope = one_vm_round(5, "vm4")
    held = guarded_plan(current, keep(1), DEFAULT_GUARD, scope=scope, recent_unconfirmed=gone_from(5))
    assert held.removes == () and [e.name for e in held.held] == [member("vm4", "").name]
    assert held.hold_reason == (
        "would remove 1 more managed addresses after 5 unconfirmed removals within POOLSYNC_GUARD_WINDOW: "
        "6 of 10, more than the allowed 0.5 (POOLSYNC_MAX_REMOVE_FRACTION)"
    )


def test_without_the_window_each_one_owner_round_passes():
    current, scope = one_vm_round(5, "vm4")
    assert not guarded_plan(current, keep(1), DEFAULT_GUARD, scope=scope).has_held  # 1 of 5: what slicing did


def test_earlier_removals_whose_entry_is_back_in_the_pool_do_not_count():
    current, scope = one_vm_round(5, "vm4")
    back = names(*(f"vm{i}" for i in range(5)))  # re-added since (or a write that never landed)
    assert not guarded_plan(current, keep(1), DEFAULT_GUARD, scope=scope, recent_unconfirmed=back).has_held


def test_confirmed_removals_never_count_even_with_a_full_window():
    current = pool_with(5)
    reasons = {member("vm4", "").name.lower(): CONFIRM_VM_DELETED}
    result = guarded_plan(current, keep(4), DEFAULT_GUARD, confirmed=reasons,
                          recent_unconfirmed=gone_from(5))
    assert [e.name for e in result.removes] == [member("vm4", "").name] and not result.has_held
    assert guard_refusal(result, current, DEFAULT_GUARD, gone_from(5)) is None


def test_force_skips_the_window_too():
    current = pool_with(5)
    forced = guarded_plan(current, keep(1), DEFAULT_GUARD, force=True, recent_unconfirmed=gone_from(5))
    assert len(forced.removes) == 4


def test_unmanaged_names_in_the_window_do_not_count():
    current, scope = one_vm_round(5, "vm4")
    assert not guarded_plan(current, keep(1), DEFAULT_GUARD, scope=scope,
                            recent_unconfirmed=["manual-1", "manual-2", "manual-3", "manual-4"]).has_held


def test_an_added_entry_carries_the_drain_of_its_identity():
    current = pool_with(2)
    back = want("vm7", "10.0.1.17")
    result = plan(current, {**keep(2), back.name: back}, admin_of_new={back.name.lower(): ADMIN_DOWN})
    assert [a.name for a in result.adds] == [back.name]
    assert dict(result.admin_changes) == {back.name: ADMIN_DOWN}
    assert apply_plan(current.addresses, result)[-1] == member("vm7", "10.0.1.17", ADMIN_DOWN)
    assert f"~ {back.name} adminState -> Down" in result.render()


def test_a_drain_of_another_identity_or_of_an_entry_already_present_changes_nothing():
    current = pool_with(2)
    result = plan(current, keep(2), admin_of_new={member("vm0", "").name.lower(): ADMIN_DOWN,
                                                  member("gone", "").name.lower(): ADMIN_DOWN})
    assert result.is_empty and result.conflicts == ()


def test_guarded_plan_passes_drains_through_when_it_holds_removals():
    current = pool_with(4)
    back = want("vm7", "10.0.1.17")
    result = guarded_plan(current, {**keep(1), back.name: back}, DEFAULT_GUARD,
                          admin_of_new={back.name.lower(): ADMIN_DOWN})
    assert result.has_held and dict(result.admin_changes) == {back.name: ADMIN_DOWN}


@pytest.mark.parametrize(("text", "window"), [("", timedelta(hours=24)), ("PT2H", timedelta(hours=2)),
                                              ("3d", timedelta(days=3))])
def test_the_window_is_read_from_the_settings(text: str, window: timedelta):
    assert GuardSettings.from_env({"POOLSYNC_GUARD_WINDOW": text}).window == window


@pytest.mark.parametrize("text", ["soon", "0", "PT0S"])
def test_a_bad_window_names_the_setting(text: str):
    with pytest.raises(ValueError, match="POOLSYNC_GUARD_WINDOW"):
        GuardSettings.from_env({"POOLSYNC_GUARD_WINDOW": text})
