"""Properties of guarded_plan over pools mixing legacy names, NIC incarnations, swaps and confirmations."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.guard import GuardSettings, guarded_plan
from shared.core.models import DesiredAddress, PoolAddress
from shared.core.naming import address_name, is_managed_name
from shared.core.plan import apply_plan, plan
from tests.core.unit_factories import nic_id, snapshot, vm_id, vnet_id

NICS = range(6)
GUIDS = [None, "guid-one", "guid-two"]  # None: the legacy name
MANAGED_NAMES = [address_name(nic_id(f"nic{i}"), "ipconfig1", guid) for i in NICS for guid in GUIDS]
MANUAL_NAMES = [f"manual-{i}" for i in range(3)]
IPS = [f"10.0.1.{i}" for i in range(1, 13)]  # few IPs, so pools and desired sets collide
STATES = ["None", "Up", "Down"]
FRACTIONS = [0.0, 0.25, 1 / 3, 0.5, 1.0]
VNET = vnet_id()


@st.composite
def pools(draw) -> list[PoolAddress]:
    names = draw(st.lists(st.sampled_from(MANAGED_NAMES + MANUAL_NAMES), unique=True, max_size=10))
    ips = draw(st.permutations(IPS))  # one IP, one entry, as Azure enforces
    states = [draw(st.sampled_from(STATES)) for _ in names]
    return [PoolAddress(name, ips[i], VNET, None, states[i]) for i, name in enumerate(names)]


@st.composite
def desired_sets(draw) -> dict[str, DesiredAddress]:
    nics = draw(st.lists(st.sampled_from(list(NICS)), unique=True, max_size=len(NICS)))
    ips = draw(st.permutations(IPS))
    desired = {}
    for slot, position in enumerate(nics):
        nic, guid = nic_id(f"nic{position}"), draw(st.sampled_from(GUIDS[1:]))
        name = address_name(nic, "ipconfig1", guid)
        vm = vm_id(f"vm{position}")
        desired[name] = DesiredAddress(name, ips[slot], VNET, nic, "ipconfig1", vm, None, guid)
    return desired


@st.composite
def cases(draw):
    addresses, desired = draw(pools()), draw(desired_sets())
    managed = [e.name.lower() for e in addresses if is_managed_name(e.name)]
    confirmed = {name: "nic deleted" for name in draw(st.sets(st.sampled_from(managed)))} if managed else {}
    return addresses, desired, confirmed, GuardSettings(draw(st.sampled_from(FRACTIONS)))


def plans_of(case):
    """The pool, its unguarded plan and its guarded plan for one generated case."""
    addresses, desired, confirmed, guard = case
    current = snapshot(*addresses)
    return (
        current,
        plan(current, desired, confirmed=confirmed),
        guarded_plan(current, desired, guard, confirmed=confirmed),
    )


def unique_ips(entries: list[PoolAddress]) -> bool:
    ips = [e.ip_address for e in entries]
    return len(ips) == len(set(ips))


@settings(max_examples=400, deadline=None)
@given(case=cases(), force=st.booleans())
def test_guarded_plans_keep_ips_unique_unmanaged_untouched_and_are_idempotent(case, force):
    addresses, desired, confirmed, guard = case
    current = snapshot(*addresses)
    result = guarded_plan(current, desired, guard, confirmed=confirmed, force=force)
    applied = apply_plan(addresses, result)
    assert unique_ips(applied)
    foreign = [e for e in addresses if not is_managed_name(e.name)]
    assert [e for e in applied if e in foreign] == foreign  # present, unchanged, same order
    assert apply_plan(applied, result) == applied
    again = guarded_plan(snapshot(*applied), desired, guard, confirmed=confirmed, force=force)
    # Nothing left but held removals (a pool grown by the adds may now allow them) and the work the
    # first plan reported as waiting (conflicts), e.g. for a held entry's IP.
    waited = {c.name for c in result.conflicts}
    assert {w.name for w in again.adds} <= waited and dict(again.admin_changes) == {}
    assert {c.after.name for c in (*again.readdresses, *again.renames)} <= waited
    assert {e.name for e in again.removes} <= {e.name for e in result.held}


@settings(max_examples=400, deadline=None)
@given(case=cases())
def test_the_guard_bounds_unconfirmed_removals_and_confirmed_ones_always_apply(case):
    addresses, desired, confirmed, guard = case
    current, full, result = plans_of(case)
    managed = sum(1 for e in addresses if is_managed_name(e.name))
    unconfirmed = result.unconfirmed_removes()
    assert len(unconfirmed) <= guard.max_remove_fraction * managed + 1e-9
    if unconfirmed and addresses:
        assert apply_plan(addresses, result)  # unconfirmed removals never empty a pool
    must_go = [e for e in full.removes if e.name.lower() in confirmed]
    assert [e for e in result.removes if e.name.lower() in confirmed] == must_go
    assert not {e.name.lower() for e in must_go} & {e.name.lower() for e in apply_plan(addresses, result)}
    assert (result.has_held, bool(result.hold_reason)) == (bool(result.held), bool(result.held))
    forced = guarded_plan(current, desired, guard, confirmed=confirmed, force=True)
    assert forced == full and not forced.has_held


@settings(max_examples=400, deadline=None)
@given(case=cases())
def test_a_held_removal_only_stops_work_that_needs_its_ip(case):
    desired = case[1]
    _, full, result = plans_of(case)
    held_ips = {e.ip_address for e in result.held}
    assert {e.name for e in result.held} | {e.name for e in result.removes} == {e.name for e in full.removes}
    if not held_ips & {w.ip_address for w in desired.values()}:
        work = (result.adds, result.readdresses, result.renames)
        assert work == (full.adds, full.readdresses, full.renames)
    done = {w.name for w in result.adds} | {c.after.name for c in (*result.readdresses, *result.renames)}
    reported = {c.name for c in result.conflicts}
    for name in {w.name for w in full.adds} | {c.after.name for c in (*full.readdresses, *full.renames)}:
        assert name in done or name in reported  # never dropped silently


@settings(max_examples=200, deadline=None)
@given(
    order=st.permutations(IPS[:7]),
    states=st.lists(st.sampled_from(STATES), min_size=7, max_size=7),
    legacy=st.lists(st.booleans(), min_size=7, max_size=7),
)
def test_any_permutation_of_ips_converges_in_one_plan(order, states, legacy):
    nics = [nic_id(f"swap{i}") for i in range(7)]
    current = snapshot(
        *(
            PoolAddress(address_name(nic, "ipconfig1", None if old else "g"), ip, VNET, None, state)
            for nic, ip, state, old in zip(nics, IPS[:7], states, legacy, strict=True)
        )
    )
    desired = {}
    for position, (nic, ip) in enumerate(zip(nics, order, strict=True)):
        name = address_name(nic, "ipconfig1", "g")
        desired[name] = DesiredAddress(name, ip, VNET, nic, "ipconfig1", vm_id(f"swap{position}"), None, "g")
    result = guarded_plan(current, desired, GuardSettings(0.0))
    assert result.conflicts == () and result.removes == () and result.adds == ()
    applied = apply_plan(current.addresses, result)
    assert [(e.name, e.ip_address, e.admin_state) for e in applied] == [
        (name, want.ip_address, state) for (name, want), state in zip(desired.items(), states, strict=True)
    ]
    assert plan(snapshot(*applied), desired).is_empty
