"""The pool writer against the emulator over HTTPS: ETags, retries, guard, ownership."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
from azure.core.exceptions import HttpResponseError

from shared.azure.retry import RetryStats
from shared.core.guard import GuardRefused
from shared.core.manual_plan import plan_manual
from shared.core.models import PoolSnapshot
from shared.core.plan import PoolPlan, plan
from shared.storage.intents import LeaseLost
from tests.azure.helpers import add_one, desired_address, make_writer
from tests.fixtures.arm import ids, topology

HAND_ADDED = ("operator-entry", "10.0.200.10")


@pytest.fixture
def pool(arm):  # type: ignore[no-untyped-def]
    arm.reset(topology())
    arm.world.add_pool_address(ids.pool(), HAND_ADDED[0], HAND_ADDED[1], ids.vnet())
    return ids.pool()


def pool_ips(arm) -> set[str]:  # type: ignore[no-untyped-def]
    return set(arm.world.pool_address_ips(ids.pool()))


@pytest.mark.slow
def test_concurrent_writers_lose_nothing(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    """8 independent writers (as on 8 instances) x 50 adds each on one pool: every address lands."""
    stats = RetryStats()
    writers = [make_writer(arm_settings, stats) for _ in range(8)]
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for n in range(50):
                writers[worker].apply(pool, add_one(desired_address(worker * 50 + n)))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors
    expected = {desired_address(i).ip_address for i in range(400)} | {HAND_ADDED[1]}
    assert pool_ips(arm) == expected
    # They really did collide: the emulator refused concurrent writes and stale ETags.
    assert stats.total_retries() > 0


@pytest.mark.parametrize("fault", ["412", "429", "409", "500", "reset"])
def test_converges_under_injected_faults(arm, arm_settings, pool, fault) -> None:  # type: ignore[no-untyped-def]
    arm.faults.add(fault, rate=0.2, seed=7, retry_after=1)
    stats = RetryStats()
    writer = make_writer(arm_settings, stats)
    for n in range(15):
        writer.apply(pool, add_one(desired_address(n)))
    arm.faults.clear()
    assert pool_ips(arm) == {desired_address(n).ip_address for n in range(15)} | {HAND_ADDED[1]}
    assert arm.stats.faults_injected() > 0
    assert stats.total_retries() >= arm.stats.faults_injected() - 1  # every fault was retried


def test_lro_that_ends_failed_is_retried(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    arm.faults.add_sequence(["lro_failed"], method="PUT", resource_type="backendAddressPools")
    stats = RetryStats()
    make_writer(arm_settings, stats).apply(pool, add_one(desired_address(1)))
    assert desired_address(1).ip_address in pool_ips(arm)
    assert stats.snapshot()["retries"].get("operation_failed") == 1


def test_permanent_error_surfaces_at_once(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    """An address outside the VNet is a 400 from Azure: raised on the first attempt, never retried."""
    stats = RetryStats()
    address = replace(desired_address(1), ip_address="192.168.7.7")
    with pytest.raises(HttpResponseError) as raised:
        make_writer(arm_settings, stats).apply(pool, add_one(address))
    assert raised.value.status_code == 400
    assert stats.total_retries() == 0
    assert arm.stats.requests("PUT") == 1
    assert pool_ips(arm) == {HAND_ADDED[1]}


def test_guard_refuses_mass_removal_and_force_overrides(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    writer = make_writer(arm_settings)
    for n in range(4):
        writer.apply(pool, add_one(desired_address(n)))
    keep_one = {desired_address(0).name: desired_address(0)}

    def shrink(snapshot: PoolSnapshot) -> PoolPlan:
        return plan(snapshot, keep_one)

    writes_before = arm.stats.pool_writes(pool)
    with pytest.raises(GuardRefused) as refused:
        writer.apply(pool, shrink)
    assert len(refused.value.plan.removes) == 3
    assert arm.stats.pool_writes(pool) == writes_before  # nothing was written
    writer.apply(pool, shrink, force=True, force_reason="test: decommissioning")
    assert pool_ips(arm) == {desired_address(0).ip_address, HAND_ADDED[1]}


def test_hand_added_address_survives_reconciles_and_412(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    """Desired state without the operator's entry never removes it, even when a 412 forces a re-plan."""
    writer = make_writer(arm_settings)
    arm.faults.add_sequence(["412"], method="PUT")
    wanted = {desired_address(n).name: desired_address(n) for n in range(3)}
    writer.apply(pool, lambda snapshot: plan(snapshot, wanted))
    writer.apply(pool, lambda snapshot: plan(snapshot, {}), force=True)  # remove every managed entry
    assert pool_ips(arm) == {HAND_ADDED[1]}


def test_writer_keeps_changes_made_between_read_and_write(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    """Someone adds an entry after our GET: our If-Match PUT gets 412, we re-read and keep theirs."""
    writer = make_writer(arm_settings)
    interfered = []

    def make(snapshot: PoolSnapshot) -> PoolPlan:
        if not interfered:  # first attempt only: a human edits the pool right after our read
            arm.world.add_pool_address(ids.pool(), "late-entry", "10.0.201.1", ids.vnet())
            interfered.append(True)
        return add_one(desired_address(9))(snapshot)

    result = writer.apply(pool, make)
    assert result.attempts == 2
    assert pool_ips(arm) == {HAND_ADDED[1], "10.0.201.1", desired_address(9).ip_address}


def test_manual_drain_and_enable_round_trip(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    writer = make_writer(arm_settings)
    writer.apply(pool, lambda s: plan_manual(s, admin={HAND_ADDED[0]: "Down"}))
    assert {a.name: a.admin_state for a in writer.read(pool).addresses}[HAND_ADDED[0]] == "Down"
    writer.apply(pool, lambda s: plan_manual(s, admin={HAND_ADDED[0]: "None"}))
    assert {a.name: a.admin_state for a in writer.read(pool).addresses}[HAND_ADDED[0]] == "None"


def test_dry_run_reports_a_guard_refusal_like_a_real_run(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    writer = make_writer(arm_settings)
    for n in range(2):
        writer.apply(pool, add_one(desired_address(n)))
    with pytest.raises(GuardRefused):
        writer.apply(pool, lambda snapshot: plan(snapshot, {}), dry_run=True)
    forced = writer.apply(pool, lambda snapshot: plan(snapshot, {}), dry_run=True, force=True)
    assert len(forced.plan.removes) == 2


def test_dry_run_writes_nothing(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    result = make_writer(arm_settings).apply(pool, add_one(desired_address(3)), dry_run=True)
    assert result.dry_run and not result.written and len(result.plan.adds) == 1
    assert arm.stats.requests("PUT") == 0


class _LostLease:
    """A lease that can no longer be proven (taken over while we paused, or storage unreachable)."""

    def check(self) -> None:
        raise LeaseLost("lease lb was taken over")

    def begin_write(self, pool_id: str) -> None:  # the write lease's proof
        self.check()


def test_a_writer_whose_lease_is_lost_never_puts(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    writer = make_writer(arm_settings, RetryStats())
    before = pool_ips(arm)

    for proofs in ({"lease": _LostLease()}, {"fence": _LostLease()}):
        with pytest.raises(LeaseLost):
            writer.apply(pool, add_one(desired_address(1)), **proofs)  # type: ignore[arg-type]

    assert arm.stats.pool_writes(pool) == 0
    assert pool_ips(arm) == before


def test_a_pool_left_failed_is_re_put_even_with_nothing_to_change(arm, arm_settings, pool) -> None:  # type: ignore[no-untyped-def]
    arm.world.put_pool(pool, arm.world.get_pool(pool), state="Failed")
    writer = make_writer(arm_settings, RetryStats())

    result = writer.apply(pool, lambda snapshot: plan(snapshot, {}))

    assert result.written and result.plan.is_empty
    assert arm.world.get_pool(pool)["properties"]["provisioningState"] == "Succeeded"
    assert HAND_ADDED[1] in pool_ips(arm)
