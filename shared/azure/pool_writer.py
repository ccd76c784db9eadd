"""Read a pool, apply a plan, write it back with If-Match - under the one retry policy.

Every attempt starts from a fresh GET: on 412 (someone else wrote the pool since
we read it) the retry re-reads and re-plans against the new contents, so other
writers' changes are never overwritten. The plan is a function of the snapshot
for exactly that reason.

Writes hold the load balancer's write lease. Just before each PUT the lease is proven and the pool
recorded on the lease's blob as being written (`HeldLease.begin_write`); the record is cleared once the
PUT was answered. A writer taking the lease first fences every pool an earlier holder left recorded: it
writes the pool back unchanged, so the ETag moves on and any PUT that holder prepared (it may have paused
right after its proof) fails with 412; its retry then re-reads and fails its proof.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared import telemetry
from shared.azure.clients import AzureClients
from shared.azure.retry import RetrySettings, RetryStats, call_with_retry
from shared.core.arm_json import address_to_json, as_json, pool_from_json
from shared.core.guard import GuardSettings, check_guard
from shared.core.ids import ResourceId
from shared.core.models import PoolAddress, PoolSnapshot
from shared.core.plan import PoolPlan, apply_plan
from shared.errors import LeaseError
from shared.storage.intents import FlushLocks, HeldLease, LeaseLost

PlanMaker = Callable[[PoolSnapshot], PoolPlan]
FAILED = "Failed"
LB_LEASE_WAIT_SECONDS = 30.0  # how long a writer waits for another writer of the same load balancer


class LoadBalancerBusy(LeaseError, RuntimeError):
    """Another poolsync writer held the load balancer's write lease for longer than we could wait."""


class PoolNotFenced(LoadBalancerBusy):
    """An earlier holder of the write lease may still land a PUT on a pool and fencing it failed: nothing
    on that load balancer is written until a holder manages to (the record stays on the lease's blob)."""

# Server-computed fields we must not echo back in a PUT body.
_READ_ONLY_POOL_FIELDS = (
    "backendIPConfigurations", "loadBalancingRules", "outboundRule", "outboundRules",
    "inboundNatRules", "provisioningState",
)
_READ_ONLY_ADDRESS_FIELDS = ("networkInterfaceIPConfiguration", "inboundNatRulesPortMapping")
# Fields rebuilt from PoolAddress on every write (absent adminState means None).
_MODELLED_ADDRESS_FIELDS = ("ipAddress", "virtualNetwork", "subnet", "adminState")


@dataclass(frozen=True)
class WriteResult:
    pool_id: str
    plan: PoolPlan
    written: bool  # a PUT was accepted (and, when waited for, completed)
    dry_run: bool = False
    attempts: int = 1
    etag: str | None = None
    operation_url: str | None = None  # set when the caller did not wait for the LRO
    addresses: tuple[PoolAddress, ...] = ()  # the pool's addresses after the write (or as planned)


def pool_put_body(raw_pool: dict[str, Any], addresses: list[PoolAddress]) -> dict[str, Any]:
    """The PUT body: the pool as read, minus read-only fields, with the new address list.

    Entries that did not change are sent back exactly as read, so fields poolsync
    does not model survive the round trip."""
    original = {entry.get("name"): entry for entry in (raw_pool.get("properties") or {}).get(
        "loadBalancerBackendAddresses") or []}
    entries = []
    for address in addresses:
        entry = address_to_json(address)
        previous = original.get(address.name)
        if previous is not None:
            kept = {
                key: value for key, value in (previous.get("properties") or {}).items()
                if key not in _READ_ONLY_ADDRESS_FIELDS and key not in _MODELLED_ADDRESS_FIELDS
            }
            entry = {**previous, "properties": {**kept, **entry["properties"]}}
        entries.append(entry)
    properties = {
        k: v for k, v in (raw_pool.get("properties") or {}).items() if k not in _READ_ONLY_POOL_FIELDS
    }
    properties["loadBalancerBackendAddresses"] = entries
    body: dict[str, Any] = {"properties": properties}
    if raw_pool.get("name"):
        body["name"] = raw_pool["name"]
    return body


class PoolWriter:
    def __init__(
        self,
        clients: AzureClients,
        guard: GuardSettings | None = None,
        retry: RetrySettings | None = None,
        stats: RetryStats | None = None,
        locks: FlushLocks | None = None,
    ) -> None:
        self.clients = clients
        self.guard = guard or GuardSettings()
        self.retry = retry or RetrySettings()
        self.stats = stats
        self.locks = locks  # load balancers' write leases; None only where nothing else writes (unit tests)

    @contextlib.contextmanager
    def lb_lease(self, lb_id: str, wait: float = LB_LEASE_WAIT_SECONDS) -> Iterator[HeldLease | None]:
        """Hold the write lease of a load balancer (None without locks); LoadBalancerBusy if we cannot.

        Pools an earlier holder left recorded as being written are fenced first (PoolNotFenced if that
        fails); a clean hand-over costs no ARM call."""
        if self.locks is None:
            yield None
            return
        lease = self.locks.acquire_lb(lb_id, timeout=wait)
        if lease is None:
            raise LoadBalancerBusy(f"another poolsync writer holds {lb_id}")
        try:
            for pool_id in lease.unfinished:
                self._fence(pool_id, lease)
            yield lease
        finally:
            lease.release()

    def _fence(self, pool_id: str, lease: HeldLease) -> None:
        """Write the pool back unchanged with If-Match, so its ETag moves on: a PUT an earlier holder
        prepared from an older read can no longer match. PoolNotFenced if that cannot be done."""
        rid = ResourceId.parse(pool_id)
        operations = self._operations(rid)

        def attempt() -> tuple[str | None, str | None]:
            """(ETag before, ETag after) the write-back; (None, None) when the pool does not exist."""
            try:
                raw = as_json(operations.get(rid.resource_group, rid.name, rid.child_name))
            except ResourceNotFoundError:
                return None, None  # nothing to fence: an If-Match PUT fails on a missing pool as well
            snapshot = pool_from_json(raw)
            poller = operations.begin_create_or_update(
                rid.resource_group, rid.name, rid.child_name, pool_put_body(raw, list(snapshot.addresses)),
                headers={"If-Match": snapshot.etag} if snapshot.etag else {},
                polling=self.clients.settings.lro_polling(),
            )
            return snapshot.etag, pool_from_json(as_json(poller.result())).etag

        try:
            before, after = call_with_retry(attempt, settings=self.retry, stats=self.stats,
                                            operation=f"fence pool {rid.child_name}")
        except AzureError as error:
            raise _not_fenced(pool_id, error) from error
        if after is not None and after == before:
            raise _not_fenced(pool_id, f"writing it back left its ETag {before} unchanged")
        try:
            lease.fenced(pool_id)
        except LeaseLost as error:
            raise _not_fenced(pool_id, error) from error
        telemetry.emit("pool_fenced", logging.WARNING, pool=pool_id, etag=after,
                       reason="an earlier holder of the write lease recorded a write it never finished"
                       if after is not None else "recorded as being written by an earlier holder; pool gone")

    def _operations(self, pool_id: ResourceId) -> Any:
        return self.clients.network(pool_id.subscription).load_balancer_backend_address_pools

    def read(self, pool_id: str) -> PoolSnapshot:
        rid = ResourceId.parse(pool_id)
        return pool_from_json(call_with_retry(
            lambda: as_json(self._operations(rid).get(rid.resource_group, rid.name, rid.child_name)),
            settings=self.retry, stats=self.stats, operation=f"GET pool {rid.child_name}",
        ))

    def apply(
        self,
        pool_id: str,
        make_plan: PlanMaker,
        *,
        force: bool = False,
        force_reason: str | None = None,
        dry_run: bool = False,
        wait: bool = True,
        lease: HeldLease | None = None,
        fence: HeldLease | None = None,
        guarded: bool = False,
        before_write: Callable[[PoolPlan], None] | None = None,
        deadline: float | None = None,
    ) -> WriteResult:
        """Plan against a fresh read and write the result; GuardRefused propagates, unretried.

        A real write holds the load balancer's write lease (`lease`, or one taken here) and proves it just
        before the PUT, recording the pool as being written until the PUT is answered; `fence` (the event
        flusher's subscription lock: a flusher that lost it may have a successor working from a newer read)
        is proven too. `guarded` plans (`guarded_plan`) hold back what the guard refuses.
        `before_write` runs after planning, before the PUT (the member index is written there). `deadline`
        (time.monotonic) bounds the retries. A pool left in provisioningState Failed is re-PUT even when
        the plan is empty: Azure refuses dependent writes until then."""
        if lease is None and not dry_run and self.locks is not None:
            with self.lb_lease(str(ResourceId.parse(pool_id).parent)) as held:
                return self.apply(pool_id, make_plan, force=force, force_reason=force_reason, wait=wait,
                                  lease=held, fence=fence, guarded=guarded, before_write=before_write,
                                  deadline=deadline)
        rid = ResourceId.parse(pool_id)
        operations = self._operations(rid)
        attempts = 0
        retry = self.retry
        if deadline is not None:
            retry = dataclasses.replace(retry, deadline_seconds=max(1.0, deadline - time.monotonic()))

        def attempt() -> WriteResult:
            nonlocal attempts
            attempts += 1
            raw = as_json(operations.get(rid.resource_group, rid.name, rid.child_name))
            snapshot = pool_from_json(raw)
            plan = make_plan(snapshot)
            if not plan.is_empty and not guarded:  # before a dry run returns too: it answers as a real run
                check_guard(plan, snapshot, self.guard, force=force)
            repair = snapshot.provisioning_state == FAILED
            if (plan.is_empty and not repair) or dry_run:
                return WriteResult(pool_id, plan, written=False, dry_run=dry_run, attempts=attempts,
                                   etag=snapshot.etag, addresses=snapshot.addresses)
            if force:
                telemetry.emit("guard_overridden", logging.WARNING, pool=pool_id,
                               reason=force_reason or "no reason given", plan=plan.summary())
            addresses = apply_plan(snapshot.addresses, plan)
            if before_write is not None:
                before_write(plan)
            # LeaseLost: another writer may own this now; do not write
            if fence is not None:
                fence.check()
            if lease is not None:
                lease.begin_write(pool_id)  # proven, and recorded: a new holder fences this pool first
            if repair:
                telemetry.emit("pool_repair", logging.WARNING, pool=pool_id,
                               reason="provisioningState Failed")
            started = time.monotonic()
            try:
                poller = operations.begin_create_or_update(
                    rid.resource_group, rid.name, rid.child_name, pool_put_body(raw, addresses),
                    headers={"If-Match": snapshot.etag} if snapshot.etag else {"If-None-Match": "*"},
                    polling=self.clients.settings.lro_polling(),
                )
            except Exception as error:  # no status (connection error, timeout): it may still land
                if lease is not None:
                    lease.put_answered(pool_id, getattr(error, "status_code", None))
                raise
            if lease is not None:
                lease.put_answered(pool_id, 200)  # accepted: the pool has a new ETag
            if not wait:
                return WriteResult(pool_id, plan, written=True, attempts=attempts,
                                   operation_url=_operation_url(poller), addresses=tuple(addresses))
            written = pool_from_json(as_json(poller.result()))
            telemetry.emit("pool_write", pool=pool_id, outcome="ok",
                           adds=len(plan.adds) + len(plan.manual_adds), removes=len(plan.removes),
                           readdresses=len(plan.readdresses), admin_changes=len(plan.admin_changes),
                           attempt=attempts,
                           duration_ms=round((time.monotonic() - started) * 1000))
            return WriteResult(pool_id, plan, written=True, attempts=attempts, etag=written.etag,
                               addresses=written.addresses)

        return call_with_retry(attempt, settings=retry, stats=self.stats, operation=f"write pool {pool_id}")


def _not_fenced(pool_id: str, cause: BaseException | str) -> PoolNotFenced:
    detail = f"{type(cause).__name__}: {cause}".splitlines()[0] if isinstance(cause, BaseException) else cause
    telemetry.emit("pool_fence_failed", logging.ERROR, pool=pool_id, error=detail)
    return PoolNotFenced(f"{pool_id} may still get a write from an earlier holder of the write lease and "
                         f"could not be fenced: {detail}")


def _operation_url(poller: Any) -> str | None:
    """The Azure-AsyncOperation (or Location) URL of a started LRO, for callers that poll themselves."""
    try:
        response = poller.polling_method()._initial_response.http_response  # no public accessor
    except AttributeError:
        return None
    return response.headers.get("Azure-AsyncOperation") or response.headers.get("Location")
