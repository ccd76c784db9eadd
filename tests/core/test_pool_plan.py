"""Plans for one pool, applying them, manual (operator) plans and the blast-radius guard."""

from __future__ import annotations

import pytest

from shared.core.guard import GuardRefused, GuardSettings, check_guard
from shared.core.manual_plan import plan_manual
from shared.core.models import DesiredAddress, PoolAddress
from shared.core.naming import address_name
from shared.core.plan import PlanInputError, apply_plan, plan
from tests.core.unit_factories import nic_id, pool_id, snapshot, unmanaged, vm_id, vnet_id


def want(vm: str, ip: str, vnet: str | None = None) -> DesiredAddress:
    nic = nic_id(f"{vm}-nic")
    return DesiredAddress(address_name(nic, "ipconfig1"), ip, vnet or vnet_id(), nic, "ipconfig1", vm_id(vm))


def member(vm: str, ip: str, admin_state: str = "None") -> PoolAddress:
    return want(vm, ip).as_pool_address(admin_state)


def desired_of(*wants: DesiredAddress) -> dict[str, DesiredAddress]:
    return {w.name: w for w in wants}


# --- plan ------------------------------------------------------------------------------------------


def test_plan_adds_missing_removes_stale_and_reports_the_rest():
    current = snapshot(member("a", "10.0.1.4"), unmanaged("manual", "10.0.1.50"), member("gone", "10.0.1.5"))
    result = plan(current, desired_of(want("a", "10.0.1.4"), want("b", "10.0.1.6")))
    assert [a.name for a in result.adds] == [want("b", "").name]
    assert result.removes == (member("gone", "10.0.1.5"),)
    assert result.unchanged == (want("a", "").name,)
    assert result.unmanaged == ("manual",)
    assert result.readdresses == () and result.conflicts == () and not result.is_empty
    assert result.summary() == {
        "pool": pool_id(),
        "add": 1,
        "remove": 1,
        "readdress": 0,
        "rename": 0,
        "admin": 0,
        "unchanged": 1,
        "unmanaged": 1,
        "conflicts": 0,
        "confirmed": 0,
        "held": 0,
    }


def test_plan_never_removes_or_changes_unmanaged_entries():
    current = snapshot(unmanaged("manual-1", "10.0.1.50"), unmanaged("psync-like", "10.0.1.51"))
    result = plan(current, {})
    assert result.is_empty and result.unmanaged == ("manual-1", "psync-like")
    assert apply_plan(current.addresses, result) == list(current.addresses)


def test_changed_ip_is_updated_in_place_keeping_admin_state():
    current = snapshot(member("a", "10.0.1.4", admin_state="Down"))
    result = plan(current, desired_of(want("a", "10.0.1.9")))
    (change,) = result.readdresses
    assert change.before.ip_address == "10.0.1.4"
    assert (change.after.ip_address, change.after.admin_state) == ("10.0.1.9", "Down")
    assert result.adds == () and result.removes == ()
    assert apply_plan(current.addresses, result) == [member("a", "10.0.1.9", admin_state="Down")]


def test_changed_network_is_a_readdress_too():
    current = snapshot(member("a", "10.0.1.4"))
    result = plan(current, desired_of(want("a", "10.0.1.4", vnet=vnet_id("vnet2"))))
    assert len(result.readdresses) == 1
    assert "(network " in result.render()


def test_equal_ipv6_spellings_and_network_id_case_are_unchanged():
    entry = PoolAddress(want("a", "").name, "fd00:db8:0:0::4", vnet_id().upper(), None)
    result = plan(snapshot(entry), desired_of(want("a", "fd00:db8::4")))
    assert result.is_empty and result.unchanged == (entry.name,)


def test_desired_ip_held_by_an_unmanaged_entry_is_a_conflict_not_a_duplicate():
    current = snapshot(unmanaged("manual", "10.0.1.4"))
    result = plan(current, desired_of(want("a", "10.0.1.4")))
    assert result.adds == () and result.is_empty
    (conflict,) = result.conflicts
    assert (conflict.name, conflict.ip_address) == (want("a", "").name, "10.0.1.4")
    assert "held by manual" in conflict.reason
    assert f"! {conflict.name} 10.0.1.4: IP already held by manual; not added" in result.render()


def test_ip_of_a_removed_entry_may_be_reused_by_a_new_one():
    current = snapshot(member("old", "10.0.1.4"))
    result = plan(current, desired_of(want("new", "10.0.1.4")))
    assert len(result.removes) == 1 and len(result.adds) == 1 and result.conflicts == ()
    assert apply_plan(current.addresses, result) == [member("new", "10.0.1.4")]


def test_scope_limits_removals_and_additions_to_the_owner():
    current = snapshot(member("a", "10.0.1.4"), member("b", "10.0.1.5"))
    desired = desired_of(want("c", "10.0.1.6"))
    only_a = {want("a", "").name}
    result = plan(current, desired, scope=lambda name: name in only_a)
    assert [r.name for r in result.removes] == [want("a", "").name]
    assert result.adds == ()
    assert result.unchanged == ()


def test_render_lists_every_change():
    current = snapshot(member("a", "10.0.1.4"), member("gone", "10.0.1.5"), unmanaged("manual", "10.0.1.50"))
    result = plan(
        current, desired_of(want("a", "10.0.1.7"), want("b", "10.0.1.6")), admin_changes={"manual": "Down"}
    )
    a, b, gone = want("a", "").name, want("b", "").name, want("gone", "").name
    assert result.render().splitlines() == [
        f"pool {pool_id()}",
        f"+ {b} 10.0.1.6",
        f"- {gone} 10.0.1.5",
        f"~ {a} 10.0.1.4 -> 10.0.1.7",
        "~ manual adminState -> Down",
        "= 0 unchanged, 1 unmanaged",
    ]


# --- admin changes ---------------------------------------------------------------------------------


def test_explicit_admin_changes_may_touch_managed_unmanaged_and_new_entries():
    current = snapshot(member("a", "10.0.1.4"), unmanaged("manual", "10.0.1.50", admin_state="Up"))
    result = plan(
        current,
        desired_of(want("a", "10.0.1.4"), want("b", "10.0.1.6")),
        admin_changes={want("a", "").name: "Down", "MANUAL": "Down", want("b", "").name: "Up"},
    )
    after = {entry.name: entry.admin_state for entry in apply_plan(current.addresses, result)}
    assert after == {want("a", "").name: "Down", "manual": "Down", want("b", "").name: "Up"}


def test_admin_change_to_the_current_state_is_no_change_and_unknown_names_are_conflicts():
    current = snapshot(unmanaged("manual", "10.0.1.50", admin_state="Up"))
    result = plan(current, {}, admin_changes={"manual": "Up", "ghost": "Down"})
    assert result.is_empty
    assert [c.name for c in result.conflicts] == ["ghost"]


def test_invalid_admin_state_is_refused():
    with pytest.raises(PlanInputError, match="None, Up, Down"):
        plan(snapshot(), {}, admin_changes={"x": "Off"})


# --- manual plans ----------------------------------------------------------------------------------


def test_manual_plan_may_add_and_remove_unmanaged_entries():
    current = snapshot(unmanaged("manual-1", "10.0.1.50"), member("a", "10.0.1.4"))
    result = plan_manual(
        current,
        add=[unmanaged("manual-2", "10.0.1.51", admin_state="Down")],
        remove=["MANUAL-1"],
    )
    assert apply_plan(current.addresses, result) == [
        member("a", "10.0.1.4"),
        unmanaged("manual-2", "10.0.1.51", admin_state="Down"),
    ]
    assert result.summary()["add"] == 1 and result.summary()["remove"] == 1


def test_manual_plan_reports_what_it_cannot_do():
    current = snapshot(unmanaged("manual-1", "10.0.1.50"))
    result = plan_manual(
        current,
        add=[unmanaged("manual-1", "10.0.1.60"), unmanaged("manual-3", "10.0.1.50")],
        remove=["absent"],
        admin={"absent-too": "Up"},
    )
    assert result.is_empty
    assert [c.name for c in result.conflicts] == ["absent", "manual-1", "manual-3", "absent-too"]


def test_manual_plan_may_replace_an_entry_in_one_step():
    current = snapshot(unmanaged("manual-1", "10.0.1.50"))
    result = plan_manual(current, add=[unmanaged("manual-2", "10.0.1.50")], remove=["manual-1"])
    assert apply_plan(current.addresses, result) == [unmanaged("manual-2", "10.0.1.50")]


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        (unmanaged(address_name(nic_id("x"), "c"), "10.0.1.9"), "reserved for poolsync"),
        (unmanaged("psync-mine", "10.0.1.9"), "reserved for poolsync"),
        (unmanaged("-bad", "10.0.1.9"), "not a valid backend address name"),
        (unmanaged("ends-with-dot.", "10.0.1.9"), "not a valid backend address name"),
        (unmanaged("ok", "10.0.1.999"), "not an IP address"),
        (PoolAddress("ok", "10.0.1.9", None), "virtual network"),
        (unmanaged("ok", "10.0.1.9", admin_state="Off"), "admin state"),
    ],
)
def test_manual_plan_refuses_invalid_entries(entry, fragment):
    with pytest.raises(PlanInputError, match=fragment):
        plan_manual(snapshot(), add=[entry])


# --- apply on a fresher list -----------------------------------------------------------------------


def test_apply_keeps_changes_made_by_others_since_the_plan():
    current = snapshot(member("a", "10.0.1.4", "Up"), member("gone", "10.0.1.5"))
    result = plan(current, desired_of(want("a", "10.0.1.9"), want("b", "10.0.1.6"), want("c", "10.0.1.7")))
    fresher = [
        unmanaged("someone", "10.0.1.6"),  # took b's IP meanwhile
        member("a", "10.0.1.4", "Down"),  # an operator drained a
        # "gone" was already removed by someone else
        member("c", "10.0.1.7"),  # c was already added by a concurrent run
    ]
    applied = apply_plan(fresher, result)
    assert applied == [
        unmanaged("someone", "10.0.1.6"),
        member("a", "10.0.1.9", "Down"),
        member("c", "10.0.1.7"),
    ]
    assert apply_plan(applied, result) == applied


def test_apply_preserves_the_order_of_untouched_entries():
    entries = [unmanaged(f"m{i}", f"10.0.1.{50 + i}") for i in range(5)]
    current = snapshot(entries[0], member("gone", "10.0.1.5"), *entries[1:])
    result = plan(current, desired_of(want("new", "10.0.1.6")))
    assert apply_plan(current.addresses, result) == [*entries, member("new", "10.0.1.6")]


def test_a_readdress_onto_an_ip_someone_else_took_is_skipped():
    current = snapshot(member("a", "10.0.1.4"))
    result = plan(current, desired_of(want("a", "10.0.1.9")))
    fresher = [member("a", "10.0.1.4"), unmanaged("someone", "10.0.1.9")]
    assert apply_plan(fresher, result) == fresher


# --- guard -----------------------------------------------------------------------------------------

DEFAULT_GUARD = GuardSettings()


def pool_with(count: int, *extra: PoolAddress):
    return snapshot(*(member(f"vm{i}", f"10.0.1.{10 + i}") for i in range(count)), *extra)


def keep(count: int) -> dict[str, DesiredAddress]:
    return desired_of(*(want(f"vm{i}", f"10.0.1.{10 + i}") for i in range(count)))


def test_removing_half_of_the_managed_entries_is_allowed_at_the_default():
    current = pool_with(2)
    check_guard(plan(current, keep(1)), current, DEFAULT_GUARD)
    current = pool_with(10)
    check_guard(plan(current, keep(5)), current, DEFAULT_GUARD)


def test_removing_more_than_the_fraction_is_refused_with_plan_and_reason():
    current = pool_with(3, unmanaged("manual", "10.0.1.99"))
    result = plan(current, keep(1))
    with pytest.raises(GuardRefused) as refused:
        check_guard(result, current, DEFAULT_GUARD)
    assert refused.value.plan is result
    assert refused.value.reason == (
        "would remove 2 of 3 managed addresses, more than the allowed 0.5 (POOLSYNC_MAX_REMOVE_FRACTION)"
    )
    check_guard(result, current, DEFAULT_GUARD, force=True)


def test_removing_the_only_managed_entry_is_refused_unless_forced():
    current = pool_with(1)
    result = plan(current, {})
    with pytest.raises(GuardRefused):
        check_guard(result, current, GuardSettings(0.99))
    check_guard(result, current, DEFAULT_GUARD, force=True)


def test_emptying_a_pool_is_refused_even_when_the_fraction_allows_it():
    current = pool_with(4)
    with pytest.raises(GuardRefused, match="would leave the pool empty"):
        check_guard(plan(current, {}), current, GuardSettings(1.0))


def test_readdresses_and_additions_do_not_count_as_removals():
    current = pool_with(2)
    moved = desired_of(want("vm0", "10.0.2.1"), want("vm1", "10.0.2.2"), want("vm9", "10.0.2.3"))
    check_guard(plan(current, moved), current, GuardSettings(0.0))


def test_fraction_arithmetic_is_not_fooled_by_binary_floating_point():
    current = pool_with(10)
    check_guard(plan(current, keep(7)), current, GuardSettings(0.3))


def test_guard_settings_from_env():
    assert GuardSettings.from_env({}).max_remove_fraction == 0.5
    assert GuardSettings.from_env({"POOLSYNC_MAX_REMOVE_FRACTION": "0.2"}).max_remove_fraction == 0.2
    for bad in ("1.5", "-0.1", "half"):
        with pytest.raises(ValueError, match="POOLSYNC_MAX_REMOVE_FRACTION"):
            GuardSettings.from_env({"POOLSYNC_MAX_REMOVE_FRACTION": bad})


def test_a_chain_of_moves_and_a_swap_both_resolve_in_one_plan():
    current = snapshot(member("a", "10.0.1.4", "Down"), member("b", "10.0.1.5"))
    chain = plan(current, desired_of(want("a", "10.0.1.5"), want("b", "10.0.1.6")))
    assert {c.after.name: c.after.ip_address for c in chain.readdresses} == {
        want("a", "").name: "10.0.1.5",
        want("b", "").name: "10.0.1.6",
    }
    assert chain.conflicts == ()
    swap = plan(current, desired_of(want("a", "10.0.1.5"), want("b", "10.0.1.4")))
    assert swap.conflicts == () and len(swap.readdresses) == 2
    assert apply_plan(current.addresses, swap) == [member("a", "10.0.1.5", "Down"), member("b", "10.0.1.4")]


def test_a_move_blocked_by_an_unmanaged_entry_blocks_the_move_onto_its_old_ip():
    current = snapshot(member("a", "10.0.1.4"), member("b", "10.0.1.5"), unmanaged("manual", "10.0.1.6"))
    result = plan(current, desired_of(want("a", "10.0.1.5"), want("b", "10.0.1.6")))
    assert result.readdresses == ()
    assert [c.reason for c in result.conflicts] == [
        f"IP already held by {want('b', '').name}; left as is",
        "IP already held by manual; left as is",
    ]
