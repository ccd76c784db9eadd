"""The write record on a load balancer's lease blob (Azurite): which pools a holder may have a PUT in flight
for, so that the next holder knows which pools to fence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from azure.storage.blob import ContainerClient

from shared.storage.intents import FlushLocks, HeldLease, LeaseLost, writing_metadata
from tests.fixtures.arm import ids
from tests.storage import helpers

LB_ID = ids.lb()
POOL_A = ids.pool("pool-a")
POOL_B = ids.pool("pool-b")


@pytest.fixture
def container(storage_connection_string: str, unique_name: str) -> ContainerClient:
    return helpers.locks_container(storage_connection_string, unique_name)


@pytest.fixture
def locks(container: ContainerClient) -> FlushLocks:
    return FlushLocks(container, lease_seconds=15)


@pytest.fixture
def held(locks: FlushLocks) -> Iterator[HeldLease]:
    lease = locks.try_acquire_lb(LB_ID)
    assert lease is not None
    yield lease
    lease.release()


def recorded(container: ContainerClient) -> list[str]:
    return helpers.recorded(container, LB_ID)


def handed_over(held: HeldLease, locks: FlushLocks) -> HeldLease:
    """Release `held` and take the lease again, as the next writer would."""
    held.release()
    successor = locks.try_acquire_lb(LB_ID)
    assert successor is not None
    return successor


def test_a_fresh_lease_has_nothing_unfinished_and_a_proof_records_the_pool(held, container):
    assert held.unfinished == ()
    held.begin_write(POOL_A)
    assert recorded(container) == [POOL_A]
    held.begin_write(POOL_B)
    assert recorded(container) == sorted([POOL_A, POOL_B])


def test_an_accepted_put_clears_its_pool_and_the_next_holder_starts_clean(held, locks, container):
    held.begin_write(POOL_A)
    held.begin_write(POOL_B)
    held.put_answered(POOL_A, 201)
    assert recorded(container) == [POOL_B]
    held.put_answered(POOL_B, 200)
    assert recorded(container) == []

    successor = handed_over(held, locks)
    try:
        assert successor.unfinished == ()
    finally:
        successor.release()


@pytest.mark.parametrize("status", [None, 500, 503])
def test_a_put_without_a_definite_answer_is_left_for_the_next_holder(held, locks, container, status):
    held.begin_write(POOL_A)
    held.put_answered(POOL_A, status)  # connection reset / timeout / a 5xx: it may still land
    assert recorded(container) == [POOL_A]

    successor = handed_over(held, locks)
    try:
        assert successor.unfinished == (POOL_A,)
    finally:
        successor.release()


def test_a_refusal_clears_the_pool_unless_an_earlier_put_is_in_doubt(held, container):
    held.begin_write(POOL_A)
    held.put_answered(POOL_A, 400)  # refused, and nothing else of ours in flight
    assert recorded(container) == []

    held.begin_write(POOL_A)
    held.put_answered(POOL_A, None)  # in doubt
    held.begin_write(POOL_A)  # the retry
    held.put_answered(POOL_A, 409)  # busy: the ETag stayed, the first PUT may still match it
    assert recorded(container) == [POOL_A]
    held.begin_write(POOL_A)
    held.put_answered(POOL_A, 412)  # the ETag moved past every If-Match we sent
    assert recorded(container) == []


def test_a_holder_whose_lease_was_taken_over_cannot_record_and_does_not_touch_the_new_record(
        held, locks, container):
    helpers.expire(container, LB_ID)
    successor = locks.try_acquire_lb(LB_ID)
    assert successor is not None
    try:
        successor.begin_write(POOL_B)
        with pytest.raises(LeaseLost):
            held.begin_write(POOL_A)  # the proof of a writer that paused past its lease
        assert held.lost
        held.put_answered(POOL_B, 200)  # nothing of ours to clear; never the successor's record
        assert recorded(container) == [POOL_B]
    finally:
        successor.release()


def test_a_pool_the_successor_fenced_is_forgotten(held, locks, container):
    held.begin_write(POOL_A)
    held.begin_write(POOL_B)
    held.put_answered(POOL_B, 200)
    successor = handed_over(held, locks)  # the first holder never finished POOL_A (paused or died)
    try:
        assert successor.unfinished == (POOL_A,)
        successor.fenced(POOL_A)
        assert successor.unfinished == ()
        assert recorded(container) == []
    finally:
        successor.release()


def test_flush_locks_keep_no_write_record(locks, container):
    scope = locks.try_acquire_scope("0000-sub")
    assert scope is not None
    try:
        scope.begin_write(POOL_A)  # proves the lock; a flush lock names no pools
        assert scope.unfinished == ()
    finally:
        scope.release()


def test_pool_ids_travel_as_ascii_and_round_trip(held, locks, container):
    odd = "/subscriptions/0000/resourceGroups/rg-ü(1)/providers/Microsoft.Network/loadBalancers/lb/" \
          "backendAddressPools/p.1"
    assert writing_metadata([odd])["writing"].isascii()
    held.begin_write(odd)
    successor = handed_over(held, locks)
    try:
        assert successor.unfinished == (odd,)
    finally:
        successor.release()
