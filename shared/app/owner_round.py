"""The event path's round: read the VMs/NICs events named, plan only the entries the member index says
poolsync wrote for them, and pull in the owners of entries whose IP blocks a change.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from shared import telemetry
from shared.app.outcomes import OwnerRound, PoolOutcome, blocked_by_ip
from shared.azure.inventory import InventoryReader
from shared.core.changes import KIND_NIC, KIND_VM, ChangeSet, Owner, OwnerState, owner_change
from shared.core.ids import ResourceId, id_key
from shared.core.member_record import MemberRecord
from shared.core.models import Inventory
from shared.core.scale_sets import KIND_SCALE_SET, merged, scale_set_round
from shared.storage.intents import HeldLease
from shared.storage.member_index import MemberIndex

if TYPE_CHECKING:
    from shared.app.reconciler import Reconciler

log = logging.getLogger("poolsync.reconciler")

MAX_PULLS = 4  # times one round pulls in the owners of entries whose IP blocks a change
OWNER_READ_LIMIT = 24  # more GETs than this for one round: one list read of the subscription is cheaper


class _Once:
    """Calls `callback` the first time it is called, never again."""

    def __init__(self, callback: Callable[[], None] | None) -> None:
        self._callback = callback

    def __call__(self) -> None:
        callback, self._callback = self._callback, None
        if callback is not None:
            callback()


def read_owners(reader: InventoryReader, owners: list[Owner], records: list[MemberRecord],
                expect_present: Collection[str] = ()) -> OwnerState:
    """The owners by GETs when that is cheap, else by one list read of their subscriptions.

    A list read silently leaves out what poolsync may not read, so an owner an event just wrote
    (`expect_present`, id keys) that the list does not show is read by a GET of its own: a 403 makes it
    undecided instead of "gone from the list" (an unconfirmed removal the guard would let through)."""
    vm_ids = [o.id for o in owners if o.kind == KIND_VM]
    nic_ids = [o.id for o in owners if o.kind == KIND_NIC] + [r.nic_id for r in records]
    if reader.owner_read_estimate(vm_ids, nic_ids) <= OWNER_READ_LIMIT:
        return reader.read_owners(vm_ids, nic_ids)
    subscriptions = {ResourceId.parse(o.id).subscription.lower() for o in owners}
    inventory = reader.subscriptions(subscriptions)
    missing = [o for o in owners if o.key in expect_present
               and o.key not in (inventory.vms if o.kind == KIND_VM else inventory.nics)]
    checked, unchecked = missing[:OWNER_READ_LIMIT], missing[OWNER_READ_LIMIT:]
    if not checked:
        return OwnerState(inventory, direct=False)
    direct = reader.read_owners([o.id for o in checked if o.kind == KIND_VM],
                                [o.id for o in checked if o.kind == KIND_NIC])
    for vm in direct.inventory.vms.values():
        inventory.add_vm(vm)
    for nic in direct.inventory.nics.values():
        inventory.add_nic(nic)
    # beyond the budget: decide nothing now, the intents wait for a later round
    unreadable = direct.unreadable | {o.key for o in unchecked}
    return OwnerState(inventory, gone=direct.gone, direct=False, unreadable=frozenset(unreadable))


def reconcile_owners(
    reconciler: Reconciler, owners: list[Owner], *, deadline: float | None = None, source: str = "events",
    fence: HeldLease | None = None, expect_present: Collection[str] = (),
    reads_done: Callable[[], None] | None = None,
) -> OwnerRound:
    """The event path: read these VMs/NICs now, find the entries the index says poolsync wrote for them,
    and plan only those entries.

    When an add or move is blocked by another managed entry holding the IP (a VM replaced on the same
    static IP before its predecessor's delete event came; two VMs that swapped IPs), the blocking
    entry's owner is pulled into the round and those pools are planned again with both read, so a swap
    or replacement lands in one write instead of being reported "unchanged" and forgotten.
    `expect_present`: id keys of owners an event wrote (see `read_owners`). `reads_done` is called once
    the first pass's reads are done and the index rows of what it may add are written (a next round
    may then read: it sees those rows)."""
    result = OwnerRound()
    round_owners = list(owners)
    known = {owner.key for owner in owners}
    signal = _Once(reads_done)
    for _ in range(1 + MAX_PULLS):
        changes, outcomes = _owner_pass(reconciler, round_owners, deadline=deadline, source=source,
                                        fence=fence, expect_present=expect_present, reads_done=signal)
        signal()  # a pass that had nothing to write still ends the reads
        result.add(changes, outcomes)
        blocked_pools = {id_key(o.pool_id) for o in outcomes if blocked_by_ip(o)}
        pulled = [owner for owner in _blocking_owners(reconciler.index, outcomes) if owner.key not in known]
        if not pulled:
            break
        known |= {owner.key for owner in pulled}
        round_owners = [o for o in round_owners
                        if changes.pools_by_owner.get(o.key, set()) & blocked_pools]
        round_owners += pulled
        log.info("owners round: %d entries block a change; reading their owners too", len(pulled))
    for owner_key, reason in result.undecided.items():
        telemetry.emit("owner_unreadable", logging.WARNING, owner=owner_key, reason=reason,
                       has_entries=owner_key in result.waiting)
    return result


def _owner_pass(reconciler: Reconciler, owners: list[Owner], *, deadline: float | None, source: str,
                fence: HeldLease | None, expect_present: Collection[str] = (),
                reads_done: Callable[[], None] | None = None) -> tuple[ChangeSet, list[PoolOutcome]]:
    started = time.monotonic()
    scale_sets = [o.id for o in owners if o.kind == KIND_SCALE_SET]
    owners = [o for o in owners if o.kind != KIND_SCALE_SET]
    vm_ids = [o.id for o in owners if o.kind == KIND_VM]
    nic_ids = [o.id for o in owners if o.kind == KIND_NIC]
    set_records = reconciler.index.for_scale_sets(scale_sets) if reconciler.index and scale_sets else []
    if owners and reconciler.index is not None \
            and reconciler.inventory.owner_read_estimate(vm_ids, nic_ids) > OWNER_READ_LIMIT:
        # A list read whatever the index adds: read the index and the subscription side by side.
        with ThreadPoolExecutor(max_workers=1) as side:
            listed = side.submit(read_owners, reconciler.inventory, owners, [], expect_present)
            records = reconciler.index.for_owners(vm_ids, nic_ids)
            indexed = time.monotonic()
            state = listed.result()
    else:
        records = reconciler.index.for_owners(vm_ids, nic_ids) if reconciler.index else []
        indexed = time.monotonic()
        state = read_owners(reconciler.inventory, owners, records, expect_present) if owners \
            else OwnerState(Inventory())
    # A scale set's own lists (paged, never a GET per instance) say which instances exist now.
    instances = scale_set_round(reconciler.inventory.scale_sets.reads(scale_sets), set_records)
    read = time.monotonic()
    changes = owner_change(reconciler.rules, owners + instances.owners, merged(state, instances.state),
                           records + set_records)
    instances.settle(changes, {id_key(pool_id) for pool_id in reconciler.managed_pool_ids()})
    outcomes = reconciler.apply_changes(changes, source=source, deadline=deadline, fence=fence,
                                        reads_done=reads_done) if changes.pools else []
    log.info("owners round: %d owners, %d index records (%.2fs), %s read (%.2fs), %d pools written "
             "in %.2fs", len(owners), len(records), indexed - started, "GET" if state.direct else "list",
             read - indexed, len(changes.pools), time.monotonic() - read)
    return changes, outcomes


def _blocking_owners(index: MemberIndex | None, outcomes: list[PoolOutcome]) -> list[Owner]:
    """The NICs of the managed entries whose IP blocked a change in these outcomes (from the index)."""
    if index is None:
        return []
    owners: dict[str, Owner] = {}
    for outcome in outcomes:
        if not blocked_by_ip(outcome) or outcome.plan is None:
            continue
        for record in index.records_named(outcome.pool_id, outcome.plan.ip_blockers()):
            owners.setdefault(id_key(record.nic_id), Owner(KIND_NIC, record.nic_id))
    return list(owners.values())
