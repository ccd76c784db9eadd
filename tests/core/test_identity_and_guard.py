"""NIC incarnations in names, legacy-name renames, IP swaps, and the guard that holds instead of blocking."""

from __future__ import annotations

from dataclasses import replace

import pytest

from shared.core.arm_json import nic_from_json
from shared.core.guard import GuardRefused, GuardSettings, check_guard, guarded_plan
from shared.core.membership import compute_membership
from shared.core.models import DesiredAddress, Inventory, PoolAddress
from shared.core.naming import address_name, is_managed_name, legacy_address_name
from shared.core.plan import CONFIRM_NIC_DELETED, CONFIRM_VM_DELETED, apply_plan, plan
from tests.core.unit_factories import (
    add_vm,
    nic_id,
    pool_id,
    rule_doc,
    ruleset,
    snapshot,
    unmanaged,
    vm_id,
    vnet_id,
)

GUID = "6f1c2a9e-0b7d-4e55-9d1a-2f3b4c5d6e7f"
NEW_GUID = "0a0b0c0d-1111-2222-3333-444455556666"
DEFAULT_GUARD = GuardSettings()


def want(vm: str, ip: str, guid: str | None = GUID) -> DesiredAddress:
    nic = nic_id(f"{vm}-nic")
    name = address_name(nic, "ipconfig1", guid)
    return DesiredAddress(name, ip, vnet_id(), nic, "ipconfig1", vm_id(vm), nic_guid=guid)


def member(vm: str, ip: str, admin_state: str = "None", guid: str | None = GUID) -> PoolAddress:
    return want(vm, ip, guid).as_pool_address(admin_state)


def legacy(vm: str, ip: str, admin_state: str = "None") -> PoolAddress:
    return member(vm, ip, admin_state, guid=None)


def desired_of(*wants: DesiredAddress) -> dict[str, DesiredAddress]:
    return {w.name: w for w in wants}


# --- naming and parsing ----------------------------------------------------------------------------


def test_the_nic_guid_is_part_of_the_name_and_none_gives_the_legacy_name():
    nic = nic_id("web-1-nic")
    with_guid = address_name(nic, "ipconfig1", GUID)
    assert with_guid != address_name(nic, "ipconfig1", NEW_GUID)
    assert with_guid == address_name(nic.upper(), "IPCONFIG1", GUID.upper())
    assert with_guid.startswith("psync-web-1-nic-ipconfig1-") and is_managed_name(with_guid)
    assert address_name(nic, "ipconfig1") == address_name(nic, "ipconfig1", None)
    assert address_name(nic, "ipconfig1", "") == address_name(nic, "ipconfig1", None)
    assert legacy_address_name(nic, "ipconfig1") == address_name(nic, "ipconfig1", None) != with_guid
    assert want("web-1", "10.0.1.4").legacy_name == legacy_address_name(nic, "ipconfig1")
    assert want("web-1", "10.0.1.4", guid=None).legacy_name == want("web-1", "10.0.1.4", guid=None).name


def test_nic_json_carries_its_resource_guid():
    nic = nic_id("web-1-nic")
    body = {"id": nic, "properties": {"resourceGuid": GUID, "ipConfigurations": []}}
    assert nic_from_json(body).resource_guid == GUID
    assert nic_from_json({"id": nic, "properties": {}}).resource_guid is None


def test_membership_names_addresses_after_the_nic_incarnation():
    inventory = Inventory()
    add_vm(inventory, "web-1", ip="10.0.1.4")
    key = nic_id("web-1-nic").lower()
    inventory.nics[key] = replace(inventory.nics[key], resource_guid=GUID)
    (address,) = compute_membership(inventory, ruleset(rule_doc()))[pool_id().lower()].values()
    assert address.name == address_name(nic_id("web-1-nic"), "ipconfig1", GUID)
    assert address.nic_guid == GUID
    assert address.legacy_name == legacy_address_name(nic_id("web-1-nic"), "ipconfig1")


# --- migration: legacy names are renamed, never removed --------------------------------------------


def test_a_legacy_entry_is_renamed_in_place_keeping_its_admin_state():
    current = snapshot(legacy("a", "10.0.1.4", "Down"), unmanaged("manual", "10.0.1.50"))
    result = plan(current, desired_of(want("a", "10.0.1.4")))
    (rename,) = result.renames
    assert (rename.before.name, rename.after.name) == (legacy("a", "").name, want("a", "").name)
    assert rename.after.admin_state == "Down" and rename.is_rename
    assert result.adds == () and result.removes == () and result.readdresses == ()
    assert result.summary()["rename"] == 1 and not result.is_empty
    assert f"~ {legacy('a', '').name} -> {want('a', '').name} (identity)" in result.render().splitlines()
    applied = apply_plan(current.addresses, result)
    assert applied == [member("a", "10.0.1.4", "Down"), unmanaged("manual", "10.0.1.50")]
    check_guard(result, current, GuardSettings(0.0))  # a rename is not a removal
    assert guarded_plan(current, desired_of(want("a", "10.0.1.4")), GuardSettings(0.0)) == result


def test_a_rename_may_move_the_ip_in_the_same_plan():
    current = snapshot(legacy("a", "10.0.1.4", "Down"))
    result = plan(current, desired_of(want("a", "10.0.1.9")))
    (rename,) = result.renames
    line = f"~ {rename.before.name} -> {rename.after.name} (identity); 10.0.1.4 -> 10.0.1.9"
    assert line in result.render().splitlines()
    assert apply_plan(current.addresses, result) == [member("a", "10.0.1.9", "Down")]


def test_a_rename_whose_new_ip_is_taken_still_renames_and_reports_the_ip():
    current = snapshot(legacy("a", "10.0.1.4"), unmanaged("manual", "10.0.1.9"))
    result = plan(current, desired_of(want("a", "10.0.1.9")))
    assert [(r.after.name, r.after.ip_address) for r in result.renames] == [(want("a", "").name, "10.0.1.4")]
    (conflict,) = result.conflicts
    assert "held by manual" in conflict.reason
    assert apply_plan(current.addresses, result) == [member("a", "10.0.1.4"), unmanaged("manual", "10.0.1.9")]


def test_a_rename_keeping_its_ip_is_not_blocked_by_an_existing_duplicate_of_that_ip():
    duplicate = PoolAddress("dup", "10.0.1.4", vnet_id("vnet2"))
    current = snapshot(duplicate, legacy("a", "10.0.1.4", "Down"))
    result = plan(current, desired_of(want("a", "10.0.1.4")))
    assert result.conflicts == () and len(result.renames) == 1
    assert apply_plan(current.addresses, result) == [duplicate, member("a", "10.0.1.4", "Down")]


def test_an_admin_change_may_name_a_renamed_entry_by_its_old_name():
    current = snapshot(legacy("a", "10.0.1.4", "Down"))
    result = plan(current, desired_of(want("a", "10.0.1.4")), admin_changes={legacy("a", "").name: "Up"})
    assert apply_plan(current.addresses, result) == [member("a", "10.0.1.4", "Up")]


def test_a_legacy_entry_beside_its_new_name_is_a_plain_removal():
    current = snapshot(legacy("a", "10.0.1.4"), member("a", "10.0.1.5"))
    result = plan(current, desired_of(want("a", "10.0.1.5")))
    assert result.renames == () and result.removes == (legacy("a", "10.0.1.4"),)


def test_an_entry_of_an_old_incarnation_is_removed_and_the_new_one_starts_fresh():
    drained_old = member("a", "10.0.1.4", "Down", guid=GUID)
    current = snapshot(drained_old, member("b", "10.0.1.5"))
    desired = desired_of(want("a", "10.0.1.4", guid=NEW_GUID), want("b", "10.0.1.5"))
    result = plan(current, desired, confirmed={drained_old.name.lower(): "nic re-created"})
    assert result.removes == (drained_old,) and result.renames == ()
    assert result.confirmed == {drained_old.name.lower(): "nic re-created"}
    assert f"- {drained_old.name} 10.0.1.4 (nic re-created)" in result.render()
    applied = apply_plan(current.addresses, result)
    assert applied == [member("b", "10.0.1.5"), member("a", "10.0.1.4", guid=NEW_GUID)]  # adminState None


def test_renames_scale_to_a_whole_legacy_pool_without_tripping_the_guard():
    current = snapshot(*(legacy(f"vm{i}", f"10.0.1.{10 + i}") for i in range(6)))
    desired = desired_of(*(want(f"vm{i}", f"10.0.1.{10 + i}") for i in range(6)))
    result = guarded_plan(current, desired, GuardSettings(0.0))
    assert len(result.renames) == 6 and not result.has_held
    applied = apply_plan(current.addresses, result)
    assert [e.name for e in applied] == [w.name for w in desired.values()]
    assert plan(snapshot(*applied), desired).is_empty


# --- swaps -----------------------------------------------------------------------------------------


def test_a_three_way_rotation_is_readdressed_in_one_plan():
    current = snapshot(member("a", "10.0.1.4", "Down"), member("b", "10.0.1.5"), member("c", "10.0.1.6"))
    desired = desired_of(want("a", "10.0.1.5"), want("b", "10.0.1.6"), want("c", "10.0.1.4"))
    result = plan(current, desired)
    assert result.conflicts == () and len(result.readdresses) == 3
    applied = apply_plan(current.addresses, result)
    assert applied == [member("a", "10.0.1.5", "Down"), member("b", "10.0.1.6"), member("c", "10.0.1.4")]
    assert plan(snapshot(*applied), desired).is_empty


def test_a_move_into_a_swap_is_blocked_but_the_swap_goes_ahead():
    current = snapshot(member("a", "10.0.1.4"), member("b", "10.0.1.5"), member("c", "10.0.1.6"))
    desired = desired_of(want("a", "10.0.1.5"), want("b", "10.0.1.4"), want("c", "10.0.1.4"))
    result = plan(current, desired)
    assert {r.after.name for r in result.readdresses} == {want("a", "").name, want("b", "").name}
    assert [c.name for c in result.conflicts] == [want("c", "").name]


def test_a_swap_with_a_legacy_entry_renames_and_swaps_together():
    current = snapshot(legacy("a", "10.0.1.4"), member("b", "10.0.1.5"))
    desired = desired_of(want("a", "10.0.1.5"), want("b", "10.0.1.4"))
    result = plan(current, desired)
    assert result.conflicts == () and len(result.renames) == 1 and len(result.readdresses) == 1
    assert apply_plan(current.addresses, result) == [member("a", "10.0.1.5"), member("b", "10.0.1.4")]


# --- guarded_plan ----------------------------------------------------------------------------------


def pool_with(count: int, *extra: PoolAddress):
    return snapshot(*(member(f"vm{i}", f"10.0.1.{10 + i}") for i in range(count)), *extra)


def keep(count: int, *extra: DesiredAddress) -> dict[str, DesiredAddress]:
    return desired_of(*(want(f"vm{i}", f"10.0.1.{10 + i}") for i in range(count)), *extra)


def test_refused_removals_are_held_while_the_rest_of_the_plan_goes_ahead():
    current = pool_with(4, unmanaged("manual", "10.0.1.99"))
    desired = keep(1, want("new", "10.0.1.30"))
    result = guarded_plan(current, desired, DEFAULT_GUARD)
    with pytest.raises(GuardRefused) as refused:
        check_guard(plan(current, desired), current, DEFAULT_GUARD)
    assert result.hold_reason == refused.value.reason == (
        "would remove 3 of 4 managed addresses, more than the allowed 0.5 (POOLSYNC_MAX_REMOVE_FRACTION)"
    )
    assert [e.name for e in result.held] == [member(f"vm{i}", "").name for i in (1, 2, 3)]
    assert result.removes == () and result.has_held
    assert [a.name for a in result.adds] == [want("new", "").name]
    assert result.summary()["held"] == 3
    assert f"! {result.held[0].name} 10.0.1.11: removal held: {result.hold_reason}" in result.render()
    applied = apply_plan(current.addresses, result)
    assert applied == [*current.addresses, member("new", "10.0.1.30")]
    check_guard(result, current, DEFAULT_GUARD)  # what is left passes


def test_confirmed_removals_apply_even_when_unconfirmed_ones_are_held():
    current = pool_with(5)
    reasons = {member("vm1", "").name.lower(): CONFIRM_NIC_DELETED}
    result = guarded_plan(current, keep(1), DEFAULT_GUARD, confirmed=reasons)
    assert result.removes == (member("vm1", "10.0.1.11"),) and result.confirmed == reasons
    assert [e.name for e in result.held] == [member(f"vm{i}", "").name for i in (2, 3, 4)]
    assert result.hold_reason.startswith("would remove 3 of 5 managed addresses")


def test_only_unconfirmed_removals_count_against_the_fraction():
    current = pool_with(4)
    reasons = {member(f"vm{i}", "").name.lower(): CONFIRM_VM_DELETED for i in (1, 2)}
    result = guarded_plan(current, keep(1), DEFAULT_GUARD, confirmed=reasons)
    assert len(result.removes) == 3 and not result.has_held  # 1 unconfirmed of 4 is within 0.5
    check_guard(result, current, DEFAULT_GUARD)


def test_deleting_the_last_vm_empties_the_pool_when_confirmed_and_is_held_when_not():
    current = pool_with(1)
    reasons = {member("vm0", "").name.lower(): CONFIRM_VM_DELETED}
    confirmed = guarded_plan(current, {}, GuardSettings(1.0), confirmed=reasons)
    assert apply_plan(current.addresses, confirmed) == [] and not confirmed.has_held
    unconfirmed = guarded_plan(current, {}, GuardSettings(1.0))
    assert unconfirmed.is_empty and unconfirmed.has_held
    assert unconfirmed.hold_reason == "would leave the pool empty (it has 1 addresses)"


def test_an_add_that_needs_a_held_entrys_ip_is_a_conflict():
    current = pool_with(3)
    desired = desired_of(want("vm0", "10.0.1.10"), want("taker", "10.0.1.11"), want("free", "10.0.1.40"))
    result = guarded_plan(current, desired, DEFAULT_GUARD)
    assert {e.name for e in result.held} == {member("vm1", "").name, member("vm2", "").name}
    assert [a.name for a in result.adds] == [want("free", "").name]
    (conflict,) = result.conflicts
    assert conflict.name == want("taker", "").name and "(its removal is held)" in conflict.reason


def test_force_skips_the_guard():
    current = pool_with(3)
    assert len(guarded_plan(current, {}, DEFAULT_GUARD, force=True).removes) == 3


def test_confirmations_for_names_the_plan_does_not_remove_are_dropped():
    current = pool_with(2)
    result = plan(current, keep(2), confirmed={member("vm0", "").name.lower(): CONFIRM_NIC_DELETED})
    assert result.confirmed == {} and result.is_empty
