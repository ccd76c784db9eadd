"""Bring managed pools to what the rules say, through the plan/guard/writer path.

Every caller that changes pools - the event flusher, the HTTP API's reconcile,
the audit's remediation - goes through here, so the guard and the ownership rule
(never remove what poolsync did not add) hold everywhere.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from azure.core.exceptions import AzureError, HttpResponseError

from shared import telemetry
from shared.app import owner_round
from shared.app.outcomes import DONE, Journal, NoJournal, OwnerRound, PoolOutcome
from shared.app.pool_memory import PoolMemory, Recall
from shared.azure.inventory import InventoryReader
from shared.azure.pool_writer import LB_LEASE_WAIT_SECONDS, LoadBalancerBusy, PoolWriter
from shared.core.arm_json import pool_from_json
from shared.core.changes import (
    ChangeSet,
    Owner,
    OwnerState,
    PoolWork,
    nic_filtered_out,
    records_for,
    removal_confirmation,
)
from shared.core.guard import GuardRefused, guarded_plan
from shared.core.ids import ResourceId, id_key
from shared.core.member_record import MemberRecord
from shared.core.membership import compute_membership
from shared.core.models import DesiredAddress, Inventory, PoolSnapshot
from shared.core.naming import is_managed_name
from shared.core.plan import PoolPlan
from shared.core.rules import RuleProblem, RuleSet
from shared.core.rules_azure import AzureFacts, validate_against_azure
from shared.core.scale_sets import sets_a_list_may_hide
from shared.errors import GuardError
from shared.storage.intents import HeldLease, LeaseLost
from shared.storage.member_index import MemberIndex

log = logging.getLogger("poolsync.reconciler")

Desired = Mapping[str, Mapping[str, DesiredAddress]]  # pool key -> address name -> address


# Every affected load balancer is written at once: each costs one PUT, well inside Azure's write bucket
# (200, refilled 10/s), and Azure runs one operation per load balancer anyway.
MAX_PARALLEL_LBS = 50
VERIFY_LIMIT = 25  # direct reads one pool may spend confirming removals the guard held back




def _refused_by_azure(error: AzureError | None) -> bool:
    """Azure answered the write with a permanent validation error (400): the content, not the moment, is
    wrong, so retrying the same plan cannot help."""
    return isinstance(error, HttpResponseError) and error.status_code == 400




def _lb_of(pool_id: str) -> str:
    return str(ResourceId.parse(pool_id).parent)


def _by_lb(pool_ids: Iterable[str]) -> dict[str, list[str]]:
    by_lb: dict[str, list[str]] = {}
    for pool_id in pool_ids:
        by_lb.setdefault(id_key(_lb_of(pool_id)), []).append(pool_id)
    return by_lb


class UnmanagedPool(GuardError, PermissionError):
    """The pool is not named by the rules: poolsync must not touch it."""




class Reconciler:
    """Every pool write poolsync makes on its own account goes through here (the HTTP API's manual edits
    use `apply`). Writes of one load balancer hold its write lease; reads that decide a write happen after
    the lease is held, so no writer acts on a state older than one another writer already acted on."""

    def __init__(self, rules: RuleSet, inventory: InventoryReader, writer: PoolWriter,
                 journal: Journal | None = None, index: MemberIndex | None = None,
                 memory: PoolMemory | None = None,
                 due_owners: Callable[[], set[str]] | None = None) -> None:
        self.rules = rules
        # id keys of the resources due intents name: an event round may hold their rows (see reconcile)
        self.due_owners = due_owners
        self.memory = memory  # the guard's window and drains that outlive their entry (None: no storage)
        self.inventory = inventory
        self.writer = writer
        self.journal: Journal = journal or NoJournal()
        self.index = index
        self._managed = {id_key(pool_id): pool_id for pool_id in rules.managed_pool_ids()}

    # -- what is managed -----------------------------------------------------------------------
    def managed_pool_ids(self) -> list[str]:
        return list(self._managed.values())

    def require_managed(self, pool_id: str) -> str:
        """The canonical spelling of a managed pool id, or UnmanagedPool."""
        canonical = self._managed.get(id_key(pool_id))
        if canonical is None:
            raise UnmanagedPool(f"pool is not managed by poolsync: {pool_id}")
        return canonical

    def watched_subscriptions(self) -> set[str]:
        """Where the VMs and NICs live: the subscriptions of the rules' virtual networks."""
        return {ResourceId.parse(rule.virtual_network_id).subscription.lower() for rule in self.rules.rules}

    def pools_of_subscription(self, subscription: str) -> list[str]:
        """Managed pools whose rules take VMs from this subscription."""
        wanted = subscription.lower()
        return list({rule.pool_key: rule.pool_id for rule in self.rules.rules
                     if ResourceId.parse(rule.virtual_network_id).subscription.lower() == wanted}.values())

    # -- deciding ------------------------------------------------------------------------------
    def desired(self, inventory: Inventory) -> Desired:
        return compute_membership(inventory, self.rules)

    def read_inventory(self) -> Inventory:
        return self.inventory.subscriptions(self.watched_subscriptions())

    # -- acting --------------------------------------------------------------------------------
    def reconcile(
        self,
        pool_ids: Iterable[str] | None = None,
        *,
        dry_run: bool = False,
        force: bool = False,
        force_reason: str | None = None,
        wait: bool = True,
        source: str = "reconcile",
        deadline: float | None = None,
        by: str | None = None,
    ) -> list[PoolOutcome]:
        """Full reconcile of the given managed pools (all by default): the anti-entropy path.

        Takes the write lease of every load balancer involved, then reads the inventory once (so the read
        is newer than any write another poolsync writer made), plans each pool against it and writes the
        load balancers in parallel; rebuilds the member index of the pools it saw. `source` (http, events,
        audit, ...) and `by` (who asked, for an operator's run) are recorded with a real run's outcomes."""
        requested = self._managed.values() if pool_ids is None else pool_ids
        targets = list(dict.fromkeys(self.require_managed(pool_id) for pool_id in requested))
        if not targets:
            return []
        by_lb = _by_lb(targets)
        with contextlib.ExitStack() as held:
            leases: dict[str, HeldLease | None] = {}
            busy: dict[str, str] = {}
            for lb_key, pools in by_lb.items():
                if dry_run:
                    leases[lb_key] = None
                    continue
                try:
                    leases[lb_key] = held.enter_context(self.writer.lb_lease(_lb_of(pools[0])))
                except LoadBalancerBusy as error:
                    busy[lb_key] = str(error)
            # The index before the inventory: a row an event round writes while the inventory is read (for
            # a VM the lists may miss; it then waits for our lease to add it) is not in this read, so the
            # rebuild below cannot delete it.
            records = self.index.all_records() if self.index is not None and not dry_run else []
            # An event round writes its rows before it waits for our lease, then adds what it read - maybe
            # a VM deleted before our inventory read. Its intent stays due until then: the rebuild keeps
            # the rows of owners due intents name, so the delete that follows finds the entry (not those
            # of deferred intents: a row kept for ever would make an unreadable owner wait for ever).
            due = self.due_owners() if records and self.due_owners is not None else set()
            inventory = self.read_inventory()
            desired = self.desired(inventory)
            state = OwnerState(inventory, direct=False)
            target_keys = {id_key(pool) for pool in targets}
            refused_sets = self._unreadable_sets(inventory, [r for r in records if r.pool_key in target_keys])
            by_pool: dict[str, dict[str, MemberRecord]] = {}
            for record in records:
                by_pool.setdefault(record.pool_key, {})[record.name.lower()] = record

            def reconcile_lb(lb_key: str) -> list[PoolOutcome]:
                pools = by_lb[lb_key]
                if lb_key in busy:
                    return [PoolOutcome(pool, "failed", None, busy[lb_key]) for pool in pools]
                outcomes = []
                for pool in pools:
                    work = PoolWork(pool, dict(desired.get(id_key(pool), {})))
                    work.records = by_pool.get(id_key(pool), {})
                    work.confirmed = {name: reason for name, r in work.records.items()
                                      if (reason := removal_confirmation(r, state)) is not None}
                    work.kept = {name for name, r in work.records.items()
                                 if id_key(r.scale_set_id or "") in refused_sets
                                 or nic_filtered_out(r, inventory)}
                    outcomes.append(self._apply_work(work, full=True, lease=leases[lb_key], dry_run=dry_run,
                                                     force=force, force_reason=force_reason, wait=wait,
                                                     deadline=deadline))
                return outcomes

            outcomes_by_pool = self._per_lb(list(by_lb), reconcile_lb)
        outcomes = [outcomes_by_pool[pool_id] for pool_id in targets]
        if not dry_run:
            self._rebuild_index(outcomes, desired, by_pool, records, due)
            if self.index is not None:
                failed = [o.pool_id for o in outcomes if o.status == "failed"]
                self.index.record_build([o.pool_id for o in outcomes if o.status != "failed"], failed,
                                        everything={id_key(p) for p in targets} == set(self._managed))
                for pool_id in failed:
                    telemetry.emit("index_pool_unbuilt", logging.WARNING, pool=pool_id,
                                   reason="full reconcile failed; retried with a back-off")
            self.journal.record(outcomes, source, by)
        return outcomes

    def _unreadable_sets(self, inventory: Inventory, records: Iterable[MemberRecord]) -> set[str]:
        """Id keys of the recorded scale sets whose instances a list read may not show all of
        (`sets_a_list_may_hide`), and of those not listed whose GET answers 403."""
        hidden, unlisted = sets_a_list_may_hide(inventory, records)
        return hidden | (self.inventory.scale_sets.refused_among(unlisted) if unlisted else set())

    def rebuild_unbuilt(self, *, deadline: float | None = None) -> list[PoolOutcome]:
        """Full reconcile of the pools whose index rows a failed full reconcile could not build, when their
        back-off is due (the event path calls this; it never runs a full reconcile per event)."""
        if self.index is None:
            return []
        due = [pool_id for pool_id in self.index.unbuilt_due() if id_key(pool_id) in self._managed]
        return self.reconcile(due, source="index-repair", deadline=deadline) if due else []

    def index_ready(self) -> bool:
        """False until a full reconcile filled the member index: the event path cannot work from it yet."""
        return self.index is None or self.index.is_built()

    def reconcile_owners(
        self, owners: list[Owner], *, deadline: float | None = None, source: str = "events",
        fence: HeldLease | None = None, expect_present: Collection[str] = (),
        reads_done: Callable[[], None] | None = None,
    ) -> OwnerRound:
        """The event path for these VMs/NICs (see `shared.app.owner_round.reconcile_owners`)."""
        return owner_round.reconcile_owners(self, owners, deadline=deadline, source=source, fence=fence,
                                            expect_present=expect_present, reads_done=reads_done)

    def apply_changes(self, changes: ChangeSet, *, source: str = "events", fence: HeldLease | None = None,
                      deadline: float | None = None,
                      reads_done: Callable[[], None] | None = None) -> list[PoolOutcome]:
        """The event path: each affected pool gets a plan limited to the owners' entries."""
        by_lb = _by_lb([work.pool_id for work in changes.pools.values()])
        if self.index is not None:
            # The round's index rows in one batch, before any PUT (a row too many is harmless, one too few
            # is not): every entry a plan may add is one of the owners' desired entries.
            began = time.monotonic()
            rows = [record for work in changes.pools.values()
                    for record in records_for(work.pool_id, work.wanted, list(work.wanted))]
            self.index.remember(rows)
            log.info("index rows of %d entries written in %.2fs", len(rows), time.monotonic() - began)
        if reads_done is not None:
            reads_done()

        def apply_lb(lb_key: str) -> list[PoolOutcome]:
            pools = by_lb[lb_key]
            wait = LB_LEASE_WAIT_SECONDS if deadline is None else max(0.0, min(LB_LEASE_WAIT_SECONDS,
                                                                              deadline - time.monotonic()))
            try:
                with self.writer.lb_lease(_lb_of(pools[0]), wait=wait) as lease:
                    return [self._apply_work(changes.pools[id_key(pool)], full=False, lease=lease,
                                             fence=fence, deadline=deadline, index_rows=False)
                            for pool in pools]
            except LoadBalancerBusy as error:
                return [PoolOutcome(pool, "failed", None, str(error)) for pool in pools]

        outcomes = list(self._per_lb(list(by_lb), apply_lb).values())
        if self.index is not None:  # rows of what the writes removed, once for the round, after the PUTs
            self.index.forget([record for outcome in outcomes
                               for record in self._removed_records(changes.pools[id_key(outcome.pool_id)],
                                                                   outcome)])
        self.journal.record(outcomes, source)
        return outcomes

    def _per_lb(self, lb_keys: list[str], run: Callable[[str], list[PoolOutcome]]) -> dict[str, PoolOutcome]:
        """Azure runs one operation at a time per load balancer: pools of one LB go in sequence, different
        LBs in parallel."""
        if not lb_keys:
            return {}
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_LBS, len(lb_keys))) as executor:
            batches = list(executor.map(run, lb_keys))
        return {outcome.pool_id: outcome for batch in batches for outcome in batch}

    def _apply_work(self, work: PoolWork, *, full: bool, lease: HeldLease | None,
                    fence: HeldLease | None = None, dry_run: bool = False,
                    force: bool = False, force_reason: str | None = None, wait: bool = True,
                    deadline: float | None = None, index_rows: bool = True) -> PoolOutcome:
        """Plan and write one pool; with `index_rows` its member-index rows are written around the PUT
        (else the caller writes the rows of a whole round at once)."""
        guard = self.writer.guard
        scope = (work.not_kept if work.kept else None) if full else work.in_scope
        recalled: list[Recall] = []  # read once per pool write, at its first plan (under the write lease)

        def make_plan(snapshot: PoolSnapshot) -> PoolPlan:
            recall = self._recall(work.pool_id, recalled)

            def planned() -> PoolPlan:
                return guarded_plan(snapshot, work.wanted, guard, scope=scope, confirmed=work.confirmed,
                                    force=force, recent_unconfirmed=recall.recent_unconfirmed,
                                    admin_of_new=recall.admin_of_new)

            first = planned()
            return planned() if first.held and self._verify_held(work, first) else first

        def remember(planned: PoolPlan) -> None:
            if self.memory is not None:
                self.memory.before_write(work.pool_id, planned, forced=force)
            if index_rows and self.index is not None:  # else the round wrote them all before its PUTs
                names = [a.name for a in planned.adds] + [c.after.name for c in planned.readdresses]
                names += [c.after.name for c in planned.renames]
                self.index.remember(records_for(work.pool_id, work.wanted, names))

        options: dict[str, Any] = dict(fence=fence, dry_run=dry_run, force=force, force_reason=force_reason,
                                       wait=wait, lease=lease, guarded=True, before_write=remember,
                                       deadline=deadline)
        outcome = self.apply(work.pool_id, make_plan, **options)
        if outcome.status == "failed" and _refused_by_azure(outcome.error):
            outcome = self._apply_removals_alone(work, make_plan, outcome, options)
        if index_rows and self.index is not None:
            self.index.forget(self._removed_records(work, outcome))
        if not full and not dry_run and outcome.status != "failed":
            self._follow_moved_nics(work, outcome.plan)
        if not full and outcome.status in DONE and outcome.plan is not None and outcome.plan.conflicts:
            detail = "; ".join(f"{c.name}: {c.reason}" for c in outcome.plan.conflicts)
            telemetry.emit("pool_conflict", logging.WARNING, pool=work.pool_id, detail=detail[:500],
                           written=outcome.status == "written")
            outcome = replace(outcome, status="conflict", detail=detail)
        return outcome

    def _apply_removals_alone(self, work: PoolWork, make_plan: Callable[[PoolSnapshot], PoolPlan],
                              refused: PoolOutcome, options: dict[str, Any]) -> PoolOutcome:
        """Azure refused the plan (e.g. more addresses than a pool holds): removals of owners that are gone
        must not wait on additions that cannot land, so write the removals alone; the pool is `rejected`,
        an alert naming the rules that select into it."""
        error = refused.error
        code = getattr(getattr(error, "error", None), "code", None) or "BadRequest"
        rules = sorted(rule.name for rule in self.rules.rules_for_pool(work.pool_id))
        removals = self.apply(work.pool_id, lambda snapshot: make_plan(snapshot).removals_only(), **options)
        applied = len(removals.plan.removes) if removals.plan is not None \
            and removals.status in ("written", "refused") else None
        detail = (f"Azure refused the write ({code}); "
                  + (f"{applied} removals applied alone" if applied is not None
                     else f"removals alone: {removals.status} {removals.detail}".strip())
                  + f"; rules {', '.join(rules)}: {refused.detail}")
        telemetry.emit("pool_write_refused", logging.ERROR, pool=work.pool_id, code=code, rules=rules,
                       removals_applied=applied or 0, detail=refused.detail[:500])
        if removals.status == "failed":
            return replace(refused, detail=detail)
        return replace(removals, status="rejected", detail=detail)

    def _recall(self, pool_id: str, recalled: list[Recall]) -> Recall:
        """The pool's memory (`shared.app.pool_memory`), read at the first call for one write."""
        if not recalled:
            recalled.append(self.memory.recall(pool_id) if self.memory is not None else Recall())
        return recalled[0]

    def _verify_held(self, work: PoolWork, planned: PoolPlan) -> bool:
        """Read the owners of held removals directly; True when that confirmed any of them."""
        records = [work.records[e.name.lower()] for e in planned.held if e.name.lower() in work.records]
        records = records[:VERIFY_LIMIT]
        if not records:
            return False
        state = self.inventory.read_owners(nic_ids=[r.nic_id for r in records])
        found = {r.name.lower(): reason for r in records
                 if (reason := removal_confirmation(r, state)) is not None}
        work.confirmed.update(found)
        return bool(found)

    @staticmethod
    def _removed_records(work: PoolWork, outcome: PoolOutcome) -> list[MemberRecord]:
        """The index records of the entries a completed write removed from the pool."""
        written = outcome.result is not None and outcome.result.written
        if outcome.status not in ("written", "refused", "rejected", "conflict") or not written \
                or outcome.plan is None:
            return []
        return [work.records[e.name.lower()] for e in outcome.plan.removes if e.name.lower() in work.records]

    def _follow_moved_nics(self, work: PoolWork, planned: PoolPlan | None) -> None:
        """An entry left as it is may now belong to another VM (its NIC was moved while its events were
        late): record the VM it belongs to, or that VM's delete event would find nothing to remove."""
        if self.index is None or planned is None or not planned.unchanged:
            return
        stale = [record for record in records_for(work.pool_id, work.wanted, planned.unchanged)
                 if (known := work.records.get(record.name.lower())) is None
                 or id_key(known.vm_id) != id_key(record.vm_id)]
        if stale:
            self.index.remember(stale)

    def _rebuild_index(self, outcomes: list[PoolOutcome], desired: Desired,
                       known: Mapping[str, Mapping[str, MemberRecord]], read: list[MemberRecord],
                       due: Collection[str] = ()) -> None:
        """Anti-entropy for the member index: the rows of each pool seen become what the pool holds, plus
        the rows of owners whose intents are due (an event round may be about to add them)."""
        if self.index is None:
            return
        seen: list[str] = []
        records: list[MemberRecord] = [record for record in read if record.owned_by(due)]
        for outcome in outcomes:
            if outcome.result is None or outcome.status == "failed":
                continue
            pool_key = id_key(outcome.pool_id)
            present = [a.name for a in outcome.result.addresses if is_managed_name(a.name)]
            wanted = desired.get(pool_key, {})
            records += records_for(outcome.pool_id, wanted, present)
            wanted_names = {name.lower() for name in wanted}
            held = known.get(pool_key, {})
            records += [held[n.lower()] for n in present
                        if n.lower() not in wanted_names and n.lower() in held]
            seen.append(outcome.pool_id)
        if seen:
            self.index.rebuild(seen, records, existing=read)

    def apply(
        self, pool_id: str, make_plan: Callable[[PoolSnapshot], PoolPlan], **options: Any
    ) -> PoolOutcome:
        """Run one plan through the writer and turn the result into an outcome (never raises for Azure errors
        that outlived the retries, a busy load balancer or a lost lease: the outcome says `failed`)."""
        pool_id = self.require_managed(pool_id)
        try:
            result = self.writer.apply(pool_id, make_plan, **options)
        except GuardRefused as refused:
            telemetry.emit("guard_refused", logging.WARNING, pool=pool_id, reason=refused.reason,
                           removes=len(refused.plan.removes), plan=refused.plan.summary())
            return PoolOutcome(pool_id, "refused", refused.plan, str(refused))
        except (AzureError, LoadBalancerBusy, LeaseLost) as error:
            detail = f"{type(error).__name__}: {error}".splitlines()[0]
            telemetry.emit("pool_write", logging.ERROR, pool=pool_id, outcome="failed", error=detail)
            return PoolOutcome(pool_id, "failed", None, detail,
                               error=error if isinstance(error, AzureError) else None)
        if result.plan.held:
            telemetry.emit("guard_refused", logging.WARNING, pool=pool_id, reason=result.plan.hold_reason,
                           removes=len(result.plan.held), held=[e.name for e in result.plan.held][:20],
                           written=result.written, dry_run=result.dry_run)
            return PoolOutcome(pool_id, "refused", result.plan, result.plan.hold_reason, result=result)
        if result.dry_run:
            status = "unchanged" if result.plan.is_empty else "planned"
        else:
            status = "written" if result.written else "unchanged"
        return PoolOutcome(pool_id, status, result.plan, result=result)

    # -- start-up validation ---------------------------------------------------------------------
    def read_facts(self) -> AzureFacts:
        """VNet address spaces and pool snapshots (with their LB's SKU) for the rules' checks."""
        spaces: dict[str, list[str]] = {}
        for vnet_id in {rule.virtual_network_id for rule in self.rules.rules}:
            vnet = self.inventory.virtual_network(vnet_id)
            if vnet is not None:
                address_space = (vnet.get("properties") or {}).get("addressSpace") or {}
                spaces[id_key(vnet_id)] = list(address_space.get("addressPrefixes") or [])
        pools: dict[str, PoolSnapshot] = {}
        for lb_id in self.rules.managed_lb_ids():
            lb = self.inventory.load_balancer(lb_id)
            if lb is None:
                continue
            sku = (lb.get("sku") or {}).get("name")
            for pool in (lb.get("properties") or {}).get("backendAddressPools") or []:
                pools[id_key(pool["id"])] = pool_from_json(pool, lb_sku=sku)
        scale_sets: dict[str, tuple[str, ...]] = {}
        named = {entry for rule in self.rules.rules for entry in rule.scale_sets if entry.startswith("/")}
        for set_id in named:
            profile = self.inventory.scale_sets.profile(set_id)
            if profile is not None:
                scale_sets[id_key(set_id)] = profile.pool_ids
        return AzureFacts(vnet_address_spaces=spaces, pools=pools, scale_sets=scale_sets)

    def validate_against_azure(self) -> list[RuleProblem]:
        return validate_against_azure(self.rules, self.read_facts())
