"""A stateful property test of the whole event pipeline on the local stack.

Hypothesis drives VMs (create, delete, re-address), plays Event Grid badly (duplicates, reorders, holds
events back, redelivers what was not acknowledged), injects Azure faults (429, 409, 412, 5xx, dropped
connections, failed long-running operations) on the emulator's `azure` profile (throttle buckets,
busy-load-balancer answers, Failed states) and kills a worker in the middle of a flush. After quiescence,
Event Grid delivers what it still owes and the sweep timer runs until no intent is due (deferred intents
are made due by moving their NotBefore, in place of waiting out the back-off) - no full reconcile, so a
lost event shows. Then:

- every managed pool holds exactly the rules' answer, unless the guard must refuse the change, and then
  the refusal is visible: a pending intent that names the pool and a `guard_refused` line in a worker log;
- no hand-added address was lost;
- no write the emulator accepted removed more entries whose owners still exist than the guard allows
  (removals of gone owners are confirmed and always apply), emptied a pool that way, or removed an
  address poolsync did not add.
"""

from __future__ import annotations

import contextlib
import random
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    initialize,
    rule,
    run_state_machine_as_test,
)

from emulator import Emulator
from emulator.faults import CONFLICT, LRO_FAILED, PRECONDITION, RESET, SERVER_ERROR, THROTTLED, UNAVAILABLE
from shared.azure.clients import ArmSettings
from shared.core.guard import DEFAULT_MAX_REMOVE_FRACTION
from shared.core.ids import id_key
from tests.reliability.helpers import (
    FAST_OPERATION_SECONDS,
    GROUPS,
    HAND_ADDED,
    EventFeed,
    PoolWriteLog,
    Worker,
    attached_address_names,
    clear_table,
    deliver_until_acknowledged,
    fleet_for,
    leased_blobs,
    log_sizes,
    managed_part,
    pool_contents,
    pool_id,
    reading_runtime,
    rules_answer,
    subnet_id,
    sweep_until_nothing_due,
    telemetry_lines,
    topology,
    wait_until,
    worker_settings,
    write_rules,
)

FAULT_KINDS = (THROTTLED, CONFLICT, PRECONDITION, SERVER_ERROR, UNAVAILABLE, RESET, LRO_FAILED)
FAULT_TARGETS = {  # where a fault lands: (method, resource type suffix)
    "pool write": ("PUT", "backendAddressPools"),
    "pool read": ("GET", "backendAddressPools"),
    "NIC list/read": ("GET", "networkInterfaces"),
    "VM list/read": ("GET", "virtualMachines"),
}
WORKERS = 2
BASE_VMS_PER_GROUP = 3
MAX_KILLS_PER_EXAMPLE = 1


class Stack:
    """What one test run shares across hypothesis examples (processes are expensive to start)."""

    def __init__(self, arm: Emulator, arm_settings: ArmSettings, settings: dict[str, str],
                 storage_connection_string: str, log_dir: Path) -> None:
        self.arm = arm
        self.settings = settings
        self.storage = storage_connection_string
        self.log_dir = log_dir
        self.fleet = fleet_for(arm_settings)
        self.runtime = reading_runtime(settings)
        self.workers = [Worker(settings, log_dir).start() for _ in range(WORKERS)]
        self.write_log = PoolWriteLog(arm)
        self.coverage: Counter[str] = Counter()  # what the examples exercised, to show it was not vacuous

    def restart(self, index: int) -> None:
        self.workers[index].kill()
        self.workers[index] = Worker(self.settings, self.log_dir).start()

    def close(self) -> None:
        self.write_log.close()
        for worker in self.workers:
            worker.stop()


class EventPipeline(RuleBasedStateMachine):
    stack: Stack  # set by the test before running

    vms = Bundle("vms")

    def __init__(self) -> None:
        super().__init__()
        stack = self.stack
        stack.arm.faults.clear()
        stack.arm.operation_seconds = FAST_OPERATION_SECONDS
        stack.arm.reset(topology(vms_per_group=BASE_VMS_PER_GROUP))
        # A new world: the guard window's removals of an earlier example's pools are not this one's
        clear_table(stack.storage, stack.settings["POOLSYNC_REMOVALS_TABLE"])
        stack.runtime.reconciler.reconcile()  # start in sync (and index the members): the rest is the events'
        stack.write_log.clear()
        self.log_mark = log_sizes(stack.log_dir)  # guard_refused lines of earlier examples do not count
        self.feed = EventFeed(stack.arm)
        self.feed.reset()
        self.held: list[dict[str, Any]] = []  # captured, not yet delivered (or to be redelivered)
        self.hand_added = {pool: dict(entries) for pool, entries in HAND_ADDED.items()}
        self.armed_faults: list[dict[str, Any]] = []
        self.delivered = 0
        self.kills = 0
        self.counter = 0
        self._wait_for_free_locks()

    def _wait_for_free_locks(self) -> None:
        # A worker killed in an earlier example may still hold a lease; it expires by itself.
        locks = self.stack.settings["POOLSYNC_LOCKS_CONTAINER"]
        wait_until(lambda: not leased_blobs(self.stack.storage, locks), 90, "flush leases to be free")

    @contextlib.contextmanager
    def _azure_misbehaving(self) -> Iterator[None]:
        """The armed faults, only while poolsync works: the test's own VM changes must go through."""
        for fault in self.armed_faults:
            self.stack.arm.faults.add(**fault)
        try:
            yield
        finally:
            self.stack.arm.faults.clear()

    def _capture(self) -> None:
        self.held += self.feed.take()

    # -- the world changes ---------------------------------------------------------------------------
    @rule(target=vms, group=st.sampled_from([*GROUPS, "c"]))
    def create_vm(self, group: str) -> str:
        self.counter += 1
        name = f"{group}-h{self.counter}"
        subnet_group = "a" if group == "c" else group  # role c: in a rule's range, but no rule's tag
        self.stack.fleet.create_vm(name, subnet_id(subnet_group), {"role": group})
        self._capture()
        return name

    @rule(vm=consumes(vms))
    def delete_vm(self, vm: str) -> None:
        self.stack.fleet.delete_vm(vm)
        self._capture()

    @rule(vm=vms, octet=st.integers(100, 140))
    def readdress_vm(self, vm: str, octet: int) -> None:
        subnet_group = "b" if vm.startswith("b") else "a"
        try:
            self.stack.fleet.readdress_vm(vm, f"{GROUPS[subnet_group]}.{octet}")
        except HttpResponseError as error:  # the address is taken: Azure refuses, nothing changes
            assert error.status_code in (400, 409), error
        self._capture()

    @rule(group=st.sampled_from(list(GROUPS)), moved=st.integers(2, BASE_VMS_PER_GROUP))
    def move_vms_out_of_the_rules(self, group: str, moved: int) -> None:
        """Re-address several of a group's first VMs outside the rule's CIDR at once: unconfirmed removals
        (the VMs still exist), often more than the guard allows in one round."""
        for number in range(1, moved + 1):
            with contextlib.suppress(HttpResponseError):  # taken by an earlier move: nothing changes
                self.stack.fleet.readdress_vm(f"{group}-{number}", f"{GROUPS[group]}.{127 + number}")
        self._capture()

    @rule(group=st.sampled_from(list(GROUPS)), octet=st.integers(200, 240))
    def operator_adds_an_address(self, group: str, octet: int) -> None:
        worker = next(w for w in self.stack.workers if w.alive)
        pool = pool_id(group)
        name, ip = f"manual-{group}-{octet}", f"{GROUPS[group]}.{octet}"
        parts = pool.split("/")
        route = f"pools/{parts[2]}/{parts[4]}/{parts[8]}/{parts[10]}/addresses"
        with self._azure_misbehaving():
            status, body = worker.api("POST", route, {"name": name, "ipAddress": ip})
        if status in (200, 202):
            self.hand_added[pool][name.lower()] = ip
        else:  # faults may outlive the retries, or the name/IP is taken: then nothing was added
            assert status in (409, 422, 429, 502, 503, 504), (status, body)

    # -- Event Grid, misbehaving ------------------------------------------------------------------------
    # Draws never depend on how many events exist (that is the emulator's business, not hypothesis's):
    # a seed decides the order, what is held back and what is sent twice.
    @rule(seed=st.integers(0, 2**32 - 1), hold_back=st.booleans(), duplicate=st.booleans(),
          batch_size=st.integers(1, 3), worker=st.integers(0, WORKERS - 1))
    def deliver_events(self, seed: int, hold_back: bool, duplicate: bool, batch_size: int,
                       worker: int) -> None:
        self._capture()
        if not self.held:
            return
        rng = random.Random(seed)
        pending = list(self.held)
        rng.shuffle(pending)
        kept = pending[: rng.randint(1, len(pending) // 2)] if hold_back and len(pending) > 1 else []
        sending = pending[len(kept):]
        if duplicate:
            sending += rng.sample(sending, k=min(2, len(sending)))
            rng.shuffle(sending)
        self.held = kept
        target = self.stack.workers[worker]
        with self._azure_misbehaving():
            for start in range(0, len(sending), batch_size):
                batch = sending[start:start + batch_size]
                status = target.deliver(batch) if target.alive else 0
                if 200 <= status < 300:
                    self.delivered += len(batch)
                else:
                    self.held += batch  # not acknowledged: Event Grid delivers it again later

    @initialize(kind=st.sampled_from(FAULT_KINDS), where=st.sampled_from(sorted(FAULT_TARGETS)),
                times=st.integers(1, 3), seed=st.integers(0, 2**16))
    def azure_misbehaves_from_the_start(self, kind: str, where: str, times: int, seed: int) -> None:
        """One fault armed in every example, so no run of the test can pass without Azure misbehaving
        (the rule below may be drawn late or never in a short example)."""
        self._arm_fault(kind, where, times, seed)

    @rule(kind=st.sampled_from(FAULT_KINDS), where=st.sampled_from(sorted(FAULT_TARGETS)),
          times=st.integers(1, 3), seed=st.integers(0, 2**16))
    def inject_faults(self, kind: str, where: str, times: int, seed: int) -> None:
        self._arm_fault(kind, where, times, seed)

    def _arm_fault(self, kind: str, where: str, times: int, seed: int) -> None:
        method, resource_type = FAULT_TARGETS[where]
        if kind == LRO_FAILED and method != "PUT":
            kind = SERVER_ERROR  # only writes have long-running operations
        self.armed_faults.append({"kind": kind, "rate": 0.7, "seed": seed, "method": method,
                                  "resource_type": resource_type, "times": times, "retry_after": 0})

    @rule(index=st.integers(0, WORKERS - 1))
    def kill_a_worker_mid_flush(self, index: int) -> None:
        """Deliver to a worker with slow pool writes, kill -9 it once its queue-triggered flush holds a lease
        (and, when the events need one, has a pool write under way), start a new one. The other workers
        are paused (SIGSTOP) meanwhile, so the flush request is the victim's to take."""
        self._capture()
        if self.kills >= MAX_KILLS_PER_EXAMPLE:  # each restart costs seconds: bound the run time
            return
        self.kills += 1
        stack = self.stack
        victim = stack.workers[index]
        others = [worker for worker in stack.workers if worker is not victim and worker.alive]
        if not self.held:  # give it something to flush
            self.counter += 1
            stack.fleet.create_vm(f"a-k{self.counter}", subnet_id("a"), {"role": "a"})
            self._capture()
        locks = stack.settings["POOLSYNC_LOCKS_CONTAINER"]
        wait_until(lambda: not leased_blobs(stack.storage, locks), 60, "live flushes to end")
        sending, self.held = self.held, []
        def pool_puts() -> int:
            return stack.arm.stats.requests("PUT", "backendAddressPools")

        puts_before = pool_puts()
        stack.arm.operation_seconds = 3.0
        for other in others:
            other.pause()
        try:
            with self._azure_misbehaving():
                status = victim.deliver(sending) if victim.alive else 0
                if 200 <= status < 300:
                    self.delivered += len(sending)  # recorded: the flush owes them now
                else:
                    self.held += sending  # not acknowledged: Event Grid delivers them again later
                killed = "worker killed idle"
                with contextlib.suppress(AssertionError):
                    wait_until(lambda: bool(leased_blobs(stack.storage, locks)), 20, "the victim's flush")
                    killed = "worker killed holding a lease"
                    with contextlib.suppress(AssertionError):  # events that change no pool write nothing
                        wait_until(lambda: pool_puts() > puts_before, 5, "the victim's pool write")
                        killed = "worker killed mid pool write"
                stack.coverage[killed] += 1
                stack.restart(index)  # kill -9, then a fresh process
        finally:
            for other in others:
                other.resume()
            stack.arm.operation_seconds = FAST_OPERATION_SECONDS

    # -- the check -------------------------------------------------------------------------------------
    def teardown(self) -> None:
        stack = self.stack
        try:
            stack.arm.faults.clear()
            stack.arm.operation_seconds = FAST_OPERATION_SECONDS
            self._capture()
            deliver_until_acknowledged(lambda: stack.workers, self.held)
            self.delivered += len(self.held)
            self.held = []
            # Time passes: a killed worker's lease runs out (test_worker_crash waits for that for real),
            # back-offs end, and the sweep timer flushes what is due.
            left = sweep_until_nothing_due(lambda: stack.workers, stack.arm, stack.storage, stack.settings)
            self._check_converged_by_events_and_sweep(left)
        finally:
            stack.arm.faults.clear()

    def _check_converged_by_events_and_sweep(self, pending: list[dict[str, Any]]) -> None:
        stack = self.stack
        stack.coverage["Azure faults injected"] += stack.arm.stats.faults_injected()
        stack.coverage["events delivered"] += self.delivered
        wanted = rules_answer(stack.runtime)
        refused = telemetry_lines(stack.log_dir, "guard_refused", self.log_mark)
        refusals = {id_key(line["pool"]) for line in refused}
        deferred_because = " ".join(str(row.get("DeferredBecause") or "") for row in pending).lower()
        differing = []
        for group in GROUPS:
            pool = pool_id(group)
            contents = pool_contents(stack.arm, pool)
            for name, ip in self.hand_added[pool].items():
                assert contents.get(name.lower()) == ip, f"hand-added {name} ({ip}) lost from pool-{group}"
            if managed_part(contents) == wanted[id_key(pool)]:
                continue
            differing.append(group)
            self._assert_refusal_is_required(managed_part(contents), wanted[id_key(pool)], group)
            assert id_key(pool) in refusals, f"pool-{group} differs from the rules, no guard_refused logged"
            assert id_key(pool) in deferred_because, f"pool-{group} differs, yet no intent waits for it"
        stack.coverage["guard refused, visibly" if differing else "converged by events + sweep"] += 1
        if not differing:
            assert pending == [], f"every pool matches, yet intents are pending: {[dict(r) for r in pending]}"
        assert stack.write_log.guard_violations() == []

    def _assert_refusal_is_required(self, managed: dict[str, str | None], wanted: dict[str, str],
                                    group: str) -> None:
        """The pool may differ only by removals the guard must refuse: entries whose owners still exist,
        more than the allowed share. Adds and readdresses go ahead, except onto an IP a held entry keeps."""
        kept = {name: ip for name, ip in managed.items() if name not in wanted}
        owners_gone = sorted(set(kept) - attached_address_names(self.stack.arm))
        assert not owners_gone, f"pool-{group} kept entries whose owner is gone (confirmed): {owners_gone}"
        for name, ip in wanted.items():
            assert managed.get(name) == ip or ip in kept.values(), (
                f"pool-{group}: {name} ({ip}) missing although no held entry keeps its IP")
        # The guard counts this example's earlier unconfirmed removals of the pool too (its window).
        earlier = len(self.stack.write_log.unconfirmed_removed(pool_id(group)) - set(managed))
        assert earlier + len(kept) > DEFAULT_MAX_REMOVE_FRACTION * (len(managed) + earlier) + 1e-9, (
            f"pool-{group}: the guard held back {sorted(kept)} of {len(managed)} (after {earlier} earlier "
            "unconfirmed removals), a change it allows")


@pytest.fixture
def stack(arm: Emulator, arm_settings: ArmSettings, storage_connection_string: str,
          tmp_path: Path) -> Iterator[Stack]:
    arm.reset(topology())
    settings_ = worker_settings(arm, storage_connection_string, write_rules(tmp_path))
    running = Stack(arm, arm_settings, settings_, storage_connection_string, tmp_path / "logs")
    try:
        yield running
    finally:
        running.close()


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_pools_converge_to_the_rules_whatever_event_grid_and_azure_do(stack: Stack) -> None:
    EventPipeline.stack = stack
    run_state_machine_as_test(
        EventPipeline,
        settings=settings(max_examples=10, stateful_step_count=15, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]),
    )
    print("exercised:", dict(stack.coverage))
    # Not vacuous: Azure misbehaved, workers died holding a lease, events flowed.
    assert stack.coverage["Azure faults injected"] > 0
    coverage = stack.coverage
    assert coverage["worker killed holding a lease"] + coverage["worker killed mid pool write"] > 0
    assert stack.coverage["events delivered"] > 0
