"""Properties of plan / apply_plan / check_guard over generated pools, desired sets and scopes."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.guard import GuardRefused, GuardSettings, check_guard
from shared.core.models import DesiredAddress, PoolAddress
from shared.core.naming import address_name, is_managed_name
from shared.core.plan import apply_plan, plan
from tests.core.unit_factories import nic_id, snapshot, vm_id, vnet_id

MANAGED_NAMES = [address_name(nic_id(f"nic{i}"), "ipconfig1") for i in range(8)]
MANUAL_NAMES = [f"manual-{i}" for i in range(4)]
IPS = [f"10.0.1.{i}" for i in range(1, 15)]  # few IPs, so generated pools and desired sets collide
VNETS = [vnet_id(), vnet_id("vnet2")]
STATES = ["None", "Up", "Down"]


@st.composite
def pools(draw) -> list[PoolAddress]:
    names = draw(st.lists(st.sampled_from(MANAGED_NAMES + MANUAL_NAMES), unique=True, max_size=10))
    ips = draw(st.permutations(IPS))  # one IP, one entry, as Azure enforces
    return [
        PoolAddress(name, ips[position], draw(st.sampled_from(VNETS)), None, draw(st.sampled_from(STATES)))
        for position, name in enumerate(names)
    ]


@st.composite
def desired_sets(draw) -> dict[str, DesiredAddress]:
    positions = draw(st.lists(st.integers(0, len(MANAGED_NAMES) - 1), unique=True, max_size=8))
    ips = draw(st.permutations(IPS))
    desired = {}
    for slot, position in enumerate(positions):
        name = MANAGED_NAMES[position]
        nic = nic_id(f"nic{position}")
        desired[name] = DesiredAddress(
            name, ips[slot], draw(st.sampled_from(VNETS)), nic, "ipconfig1", vm_id(f"vm{position}")
        )
    return desired


scopes = st.one_of(st.none(), st.sets(st.sampled_from(MANAGED_NAMES)))


def scope_fn(scope: set[str] | None):
    return None if scope is None else scope.__contains__


def in_scope(scope: set[str] | None, name: str) -> bool:
    return scope is None or name in scope


@settings(max_examples=300, deadline=None)
@given(addresses=pools(), desired=desired_sets(), scope=scopes)
def test_applying_twice_is_the_same_as_applying_once(addresses, desired, scope):
    result = plan(snapshot(*addresses), desired, scope=scope_fn(scope))
    once = apply_plan(addresses, result)
    assert apply_plan(once, result) == once


@settings(max_examples=300, deadline=None)
@given(addresses=pools(), desired=desired_sets(), scope=scopes)
def test_after_apply_managed_entries_match_desired_and_nothing_else_moved(addresses, desired, scope):
    result = plan(snapshot(*addresses), desired, scope=scope_fn(scope))
    applied = apply_plan(addresses, result)
    present_before = {entry.name for entry in addresses}
    not_added = {c.name for c in result.conflicts if c.name not in present_before}

    managed_in_scope = {e.name: e for e in applied if is_managed_name(e.name) and in_scope(scope, e.name)}
    wanted = {name for name in desired if in_scope(scope, name)}
    assert managed_in_scope.keys() == wanted - not_added

    left_as_is = {c.name for c in result.conflicts}
    for name, entry in managed_in_scope.items():
        if name not in left_as_is:
            assert (entry.ip_address, entry.vnet_id) == (desired[name].ip_address, desired[name].vnet_id)

    untouchable = [e for e in addresses if not is_managed_name(e.name) or not in_scope(scope, e.name)]
    assert [e for e in applied if e in untouchable] == untouchable  # present, unchanged, same order

    ips = [e.ip_address for e in applied]
    assert len(ips) == len(set(ips))  # never a duplicate IP


@settings(max_examples=300, deadline=None)
@given(addresses=pools(), desired=desired_sets(), scope=scopes)
def test_planning_again_on_the_result_finds_nothing_to_do(addresses, desired, scope):
    applied = apply_plan(addresses, plan(snapshot(*addresses), desired, scope=scope_fn(scope)))
    assert plan(snapshot(*applied), desired, scope=scope_fn(scope)).is_empty


@settings(max_examples=300, deadline=None)
@given(addresses=pools(), fresher=pools(), desired=desired_sets(), scope=scopes)
def test_applying_to_a_list_changed_by_others_keeps_their_entries(addresses, fresher, desired, scope):
    result = plan(snapshot(*addresses), desired, scope=scope_fn(scope))
    applied = apply_plan(fresher, result)
    assert apply_plan(applied, result) == applied
    foreign = [e for e in fresher if not is_managed_name(e.name)]
    assert [e for e in applied if e in foreign] == foreign
    ips = [e.ip_address for e in applied]
    assert len(ips) == len(set(ips))


@settings(max_examples=300, deadline=None)
@given(
    addresses=pools(),
    desired=desired_sets(),
    scope=scopes,
    fraction=st.sampled_from([0.0, 0.1, 0.25, 1 / 3, 0.5, 0.75, 1.0]),
)
def test_guard_never_lets_an_unforced_plan_remove_more_than_the_fraction(addresses, desired, scope, fraction):
    current = snapshot(*addresses)
    result = plan(current, desired, scope=scope_fn(scope))
    try:
        check_guard(result, current, GuardSettings(fraction))
    except GuardRefused:
        return
    managed = sum(1 for e in addresses if is_managed_name(e.name))
    assert len(result.removes) <= fraction * managed + 1e-9
    assert apply_plan(addresses, result) or not addresses
