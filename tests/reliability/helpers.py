"""The local stack for reliability tests: the in-process ARM emulator (faults, captured events), Azurite,
and the Function app in separate worker processes (`python -m devstack.host`) that can be killed.

Events are captured from the emulator instead of pushed, so a test plays Event Grid: it decides when,
how often, in which order and to which worker each event is delivered, and redelivers what was not
acknowledged with a 2xx - exactly Event Grid's contract.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobLeaseClient, BlobServiceClient

from devstack.fleet import Fleet
from devstack.process import die_with_parent, stop_process, wait_for_line
from devstack.selfcheck import send
from devstack.stack import LISTENING, REPO_ROOT, app_settings
from emulator import Emulator
from shared.app.runtime import Runtime
from shared.azure.clients import ArmSettings
from shared.azure.retry import RetryStats
from shared.core.guard import DEFAULT_MAX_REMOVE_FRACTION
from shared.core.ids import id_key
from shared.core.membership import compute_membership
from shared.core.naming import address_name, is_managed_name

SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
RESOURCE_GROUP = "rg-reliability"
EVENT_FUNCTION = "eventgrid_resource_events"
SWEEP_FUNCTION = "intents_sweep_timer"  # flushes intents a crashed or out-of-budget flusher left behind
# The suite runs on the emulator's `azure` profile (Azure's throttle buckets per subscription and principal,
# the four busy-load-balancer answers, Failed states); only its long-running operations are shortened so the
# suite fits in CI. One scenario (test_worker_crash.py) keeps them Azure-long.
FAST_OPERATION_SECONDS = 0.2
AZURE_OPERATION_SECONDS = 6.0
WORKER_START_TIMEOUT = 120.0  # importing the Azure SDKs on a loaded 2-core machine
GROUPS = {"a": "10.20.1", "b": "10.20.2"}  # rule group -> its subnet's first three octets
BASE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers/Microsoft.Network"
VNET_ID = f"{BASE}/virtualNetworks/vnet-rel"
LB_ID = f"{BASE}/loadBalancers/lb-rel"


def pool_id(group: str) -> str:
    return f"{LB_ID}/backendAddressPools/pool-{group}"


def subnet_id(group: str) -> str:
    return f"{VNET_ID}/subnets/subnet-{group}"


# Rule CIDRs cover the lower half of each subnet: VMs live there (dynamic from .4, static .100-.127);
# hand-added addresses use .200-.250, which no rule claims and no VM gets.
RULES = {
    "version": 1,
    "rules": [
        {"name": f"group-{group}", "pool": pool_id(group), "virtualNetwork": VNET_ID,
         "cidrs": [f"{prefix}.0/25"], "tags": {"role": group}}
        for group, prefix in GROUPS.items()
    ],
}
HAND_ADDED = {pool_id(group): {f"appliance-{group}": f"{prefix}.250"} for group, prefix in GROUPS.items()}


def topology(vms_per_group: int = 3) -> dict[str, Any]:
    return {
        "defaults": {"resource_group": RESOURCE_GROUP},
        "virtual_networks": [{
            "name": "vnet-rel", "address_space": ["10.20.0.0/16"],
            "subnets": [{"name": f"subnet-{group}", "prefix": f"{prefix}.0/24"}
                        for group, prefix in GROUPS.items()],
        }],
        "load_balancers": [{
            "name": "lb-rel", "sku": "Standard",
            "pools": [{"name": f"pool-{group}", "addresses": [
                {"name": name, "ip": ip, "virtual_network": "vnet-rel"}
                for name, ip in HAND_ADDED[pool_id(group)].items()]} for group in GROUPS],
            "rules": [{"name": f"rule-{group}", "pool": f"pool-{group}", "frontend_port": 80 + n}
                      for n, group in enumerate(GROUPS)],
        }],
        "virtual_machines": [
            {"count": vms_per_group, "name": f"{group}-{{i}}", "subnet": f"vnet-rel/subnet-{group}",
             "tags": {"role": group}, "delete_option": "Delete"}
            for group in GROUPS
        ],
    }


def use_azure_profile(arm: Emulator, operation_seconds: float = FAST_OPERATION_SECONDS,
                      lro_retry_after: int = 0) -> None:
    arm.set_profile("azure")
    arm.operation_seconds = operation_seconds
    arm.lro_retry_after = lro_retry_after


def worker_settings(arm: Emulator, storage_connection_string: str, rules_path: Path) -> dict[str, str]:
    """App settings for workers: fast coalescing and retries, the shortest lease, isolated storage names."""
    suffix = uuid.uuid4().hex[:10]
    return app_settings(arm.url, arm.ca_path, storage_connection_string, rules_path, {
        "POOLSYNC_ARM_POLLING_INTERVAL": "0.05",
        "POOLSYNC_RETRY_DEADLINE": "30",
        "POOLSYNC_RETRY_MAX_ATTEMPTS": "40",
        "POOLSYNC_RETRY_BASE_BACKOFF": "0.05",
        "POOLSYNC_RETRY_MAX_BACKOFF": "0.5",
        "POOLSYNC_RETRY_AFTER_CAP": "1",
        "POOLSYNC_COALESCE_QUIET": "0.2",
        "POOLSYNC_COALESCE_MAX_WAIT": "2",
        "POOLSYNC_COALESCE_POLL": "0.1",
        "POOLSYNC_FLUSH_LEASE_SECONDS": "15",  # the shortest blob lease: a dead holder blocks for <= 15 s
        "POOLSYNC_FLUSH_BUDGET": "60",
        "POOLSYNC_INTENTS_TABLE": f"intents{suffix}",
        "POOLSYNC_MEMBERS_TABLE": f"members{suffix}",  # a test's index must not see another test's rows
        "POOLSYNC_REMOVALS_TABLE": f"removals{suffix}",  # nor its guard window another test's removals
        "POOLSYNC_LOCKS_CONTAINER": f"locks-{suffix}",
    })


def write_rules(directory: Path) -> Path:
    path = directory / "rules.json"
    path.write_text(json.dumps(RULES))
    return path


# --- HTTP -----------------------------------------------------------------------------------------



# --- workers --------------------------------------------------------------------------------------


@dataclass
class Worker:
    """One Function app process (`python -m devstack.host`)."""

    settings: dict[str, str]
    log_dir: Path
    key: str = field(default_factory=lambda: uuid.uuid4().hex)
    process: subprocess.Popen[bytes] | None = None
    url: str = ""
    name: str = field(default_factory=lambda: f"worker-{uuid.uuid4().hex[:6]}")

    def start(self) -> Worker:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{self.name}.log"
        with open(log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devstack.host", "--port", "0", "--master-key", self.key],
                cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                env={**os.environ, **self.settings, "PYTHONUNBUFFERED": "1"},
            )
        self.url = wait_for_line(log_path, self.process, LISTENING, WORKER_START_TIMEOUT)[1]
        return self

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """kill -9: no cleanup, no lease release - a crashed instance."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def pause(self) -> None:
        """SIGSTOP: the process holds what it holds and does nothing (a frozen VM, a long GC pause)."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.alive:
            assert self.process is not None
            stop_process(self.process, timeout=20)

    def deliver(self, events: list[dict[str, Any]]) -> int:
        """POST events as Event Grid does (one array, Notification); the status, 0 if the connection died."""
        url = f"{self.url}/runtime/webhooks/eventgrid?functionName={EVENT_FUNCTION}&code={self.key}"
        status, _ = send(url, "POST", json.dumps(events).encode(),
                         {"aeg-event-type": "Notification", "Content-Type": "application/json"})
        return status

    def fire(self, function_name: str) -> int:
        """Run a timer function now, through the admin API."""
        status, _ = send(f"{self.url}/admin/functions/{function_name}", "POST", b"{}",
                         {"x-functions-key": self.key, "Content-Type": "application/json"})
        return status

    def api(self, method: str, route: str, document: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
        body = raw if raw is not None else (json.dumps(document).encode() if document is not None else None)
        status, answer = send(f"{self.url}/api/{route}", method, body,
                              {"x-functions-key": self.key, "Content-Type": "application/json"})
        try:
            return status, json.loads(answer or b"null")
        except ValueError:
            return status, answer


# --- Event Grid, played by the test ---------------------------------------------------------------


class EventFeed:
    """The emulator's events, taken as they are published (the emulator has no webhook here)."""

    def __init__(self, arm: Emulator) -> None:
        self.arm = arm
        self._seen = 0

    def reset(self) -> None:
        self._seen = len(self.arm.events.published)

    def take(self) -> list[dict[str, Any]]:
        published = list(self.arm.events.published)
        new, self._seen = published[self._seen:], len(published)
        return new


def deliver_until_acknowledged(workers: Callable[[], list[Worker]], events: Iterable[dict[str, Any]],
                               timeout: float = 180.0) -> None:
    """Event Grid's promise: every event is redelivered until some worker answers 2xx."""
    for event in events:
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            live = [w for w in workers() if w.alive]
            status = live[attempt % len(live)].deliver([event]) if live else 0
            if 200 <= status < 300:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"event {event.get('id')} was never acknowledged (last status {status})")
            attempt += 1
            time.sleep(min(0.2 * attempt, 2.0))


# --- storage: leases and intents --------------------------------------------------------------------


def leased_blobs(storage_connection_string: str, container: str) -> list[str]:
    service = BlobServiceClient.from_connection_string(storage_connection_string)
    try:
        return [blob.name for blob in service.get_container_client(container).list_blobs()
                if blob.lease.state == "leased"]
    except ResourceNotFoundError:
        return []


def expire_leases(storage_connection_string: str, container: str) -> int:
    """End every lease in `container` now: what the clock does to a dead holder's lease (<= 60 s)."""
    service = BlobServiceClient.from_connection_string(storage_connection_string)
    client = service.get_container_client(container)
    ended = 0
    for name in leased_blobs(storage_connection_string, container):
        BlobLeaseClient(client.get_blob_client(name)).break_lease(lease_break_period=0)
        ended += 1
    return ended


def wait_until(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _intents_table(storage_connection_string: str, table: str) -> Any:
    from azure.data.tables import TableServiceClient

    return TableServiceClient.from_connection_string(storage_connection_string).get_table_client(table)


def clear_table(storage_connection_string: str, table: str) -> int:
    """Delete every row of a table (it stays, so processes that created it keep writing); the count."""
    client = _intents_table(storage_connection_string, table)
    try:
        rows = list(client.list_entities(select=["PartitionKey", "RowKey"]))
    except ResourceNotFoundError:
        return 0
    for row in rows:
        with contextlib.suppress(ResourceNotFoundError):
            client.delete_entity(row["PartitionKey"], row["RowKey"])
    return len(rows)


def intent_rows(storage_connection_string: str, table: str) -> list[dict[str, Any]]:
    """Every pending intent row, due or deferred (Subject, Attempts, NotBefore, DeferredBecause, ...)."""
    try:
        return list(_intents_table(storage_connection_string, table).list_entities())
    except ResourceNotFoundError:
        return []


def pending_intent_count(storage_connection_string: str, table: str) -> int:
    return len(intent_rows(storage_connection_string, table))


def make_deferred_intents_due(storage_connection_string: str, table: str) -> int:
    """Move every deferred intent's NotBefore to now: what waiting out the back-off (10 s doubling) does,
    without the wait. Only while no flusher runs (the write changes the row's ETag)."""
    from azure.data.tables import UpdateMode

    client = _intents_table(storage_connection_string, table)
    now = datetime.now(UTC)
    moved = 0
    for row in intent_rows(storage_connection_string, table):
        if row.get("NotBefore") is not None and row["NotBefore"] > now:
            client.update_entity({"PartitionKey": row["PartitionKey"], "RowKey": row["RowKey"],
                                  "NotBefore": now}, mode=UpdateMode.MERGE)
            moved += 1
    return moved


def sweep_until_nothing_due(workers: Callable[[], list[Worker]], arm: Emulator,
                            storage_connection_string: str, settings: dict[str, str],
                            max_sweeps: int = 10) -> list[dict[str, Any]]:
    """Play the clock and the sweep timer: let live flushes finish, end dead holders' leases, make what was
    deferred due, run `intents_sweep_timer` on a live worker, and again, until no intent is left or two
    sweeps in a row took every pending intent and deferred them all again (the guard keeps refusing; one
    such sweep may still have changed a pool, e.g. by an owner a conflict pulled in). Returns the intents
    still pending."""
    table, locks = settings["POOLSYNC_INTENTS_TABLE"], settings["POOLSYNC_LOCKS_CONTAINER"]
    left: list[dict[str, Any]] = []
    unchanged_sweeps = 0
    for _ in range(max_sweeps):
        arm.wait_operations_done(60)
        # A live worker's queue-triggered flush ends by itself within seconds; what is still leased after
        # that belongs to a killed worker, and ending it is the test's stand-in for its lease running out.
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not leased_blobs(storage_connection_string, locks), 15, "live flushes to end")
        expire_leases(storage_connection_string, locks)
        make_deferred_intents_due(storage_connection_string, table)
        pending = intent_rows(storage_connection_string, table)
        attempts = {row["RowKey"]: row.get("Attempts", 0) for row in pending}
        worker = next(w for w in workers() if w.alive)
        status = worker.fire(SWEEP_FUNCTION)
        assert status in (202, 500), f"the sweep timer answered {status}"  # 500: a pool failed, intents kept
        arm.wait_operations_done(60)
        left = intent_rows(storage_connection_string, table)
        if not left:
            break
        # A verdict only when this sweep's own round took every pending intent and deferred it again: a
        # sweep that found the lock busy (a queue-triggered flush) or lost its lease decided nothing.
        redeferred = {row["RowKey"] for row in left} == set(attempts) and all(
            row.get("Attempts", 0) > attempts[row["RowKey"]] for row in left)
        broken = any("LeaseLost" in str(row.get("DeferredBecause") or "") for row in left)
        unchanged_sweeps = unchanged_sweeps + 1 if status == 202 and redeferred and not broken else 0
        if unchanged_sweeps == 2:
            break
    return left


# --- worker logs ------------------------------------------------------------------------------------


def log_sizes(log_dir: Path) -> dict[str, int]:
    """How far every worker log has been written: pass to `telemetry_lines` to see only what follows."""
    return {path.name: path.stat().st_size for path in log_dir.glob("*.log")}


def telemetry_lines(log_dir: Path, event: str, since: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """The fields of each `poolsync.<event> {json}` line any worker (alive or killed) logged after `since`."""
    marker = f"poolsync.{event} "
    found = []
    for path in sorted(log_dir.glob("*.log")):
        with open(path, "rb") as log:
            log.seek((since or {}).get(path.name, 0))
            text = log.read().decode(errors="replace")
        for line in text.splitlines():
            at = line.find(marker)
            if at >= 0:
                with contextlib.suppress(ValueError):
                    found.append(json.loads(line[at + len(marker):]))
    return found


# --- what must hold ----------------------------------------------------------------------------------


@dataclass
class PoolWrite:
    pool_id: str
    before: dict[str, str | None]  # name (lower) -> IP
    after: dict[str, str | None]
    owned: set[str]  # managed names whose NIC ipconfig still exists on a VM at write time

    @property
    def unconfirmed_removals(self) -> list[str]:
        """Managed entries removed although their owner is still there: only these the guard limits (an
        owner that is gone - VM or NIC deleted, NIC detached - is a confirmed removal, always allowed)."""
        return [name for name in self.before if is_managed_name(name) and name not in self.after
                and name in self.owned]


class PoolWriteLog:
    """Every pool write the emulator accepts, with the pool before and after: to check the guard held."""

    def __init__(self, arm: Emulator) -> None:
        self.arm = arm
        self.writes: list[PoolWrite] = []
        self._lock = threading.Lock()
        self._original = arm.world.put_pool

        def recording_put_pool(resource_id: str, body: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            with arm.world.lock:  # before, write and after as one step: no other write in between
                before = _addresses(arm.world.get_pool(resource_id))
                owned = attached_address_names(arm)
                result = self._original(resource_id, body, *args, **kwargs)
                after = _addresses(arm.world.get_pool(resource_id))
            with self._lock:
                self.writes.append(PoolWrite(resource_id, before, after, owned))
            return result

        arm.world.put_pool = recording_put_pool  # type: ignore[method-assign]

    def close(self) -> None:
        self.arm.world.put_pool = self._original  # type: ignore[method-assign]

    def clear(self) -> None:
        with self._lock:
            self.writes.clear()

    def unconfirmed_removed(self, pool: str) -> set[str]:
        """Managed entries of `pool` the recorded writes removed while their owners still existed."""
        with self._lock:
            writes = [write for write in self.writes if id_key(write.pool_id) == id_key(pool)]
        return {name for write in writes for name in write.unconfirmed_removals}

    def guard_violations(self, max_remove_fraction: float = DEFAULT_MAX_REMOVE_FRACTION) -> list[str]:
        with self._lock:
            writes = list(self.writes)
        problems = []
        for write in writes:
            managed_before = [name for name in write.before if is_managed_name(name)]
            unconfirmed = write.unconfirmed_removals
            if unconfirmed and len(unconfirmed) > max_remove_fraction * len(managed_before) + 1e-9:
                problems.append(f"{write.pool_id}: removed {len(unconfirmed)} of {len(managed_before)} "
                                f"managed entries whose owners still exist: {sorted(unconfirmed)}")
            if unconfirmed and write.before and not write.after:
                problems.append(f"{write.pool_id}: emptied a pool of {len(write.before)} addresses")
            foreign = [name for name in write.before if not is_managed_name(name) and name not in write.after]
            if foreign:
                problems.append(f"{write.pool_id}: removed addresses poolsync did not add: {sorted(foreign)}")
        return problems


def attached_address_names(arm: Emulator) -> set[str]:
    """The managed names of every ipconfig of every NIC attached to a VM, as the emulator holds them now."""
    with arm.world.lock:
        nics = list(arm.world.nics.values())
    names = set()
    for nic in nics:
        properties = nic.get("properties") or {}
        if not properties.get("virtualMachine"):
            continue
        for ipconfig in properties.get("ipConfigurations") or []:
            names.add(address_name(nic["id"], ipconfig["name"], properties.get("resourceGuid")).lower())
    return names


def _addresses(pool: dict[str, Any] | None) -> dict[str, str | None]:
    if pool is None:
        return {}
    entries = (pool.get("properties") or {}).get("loadBalancerBackendAddresses") or []
    return {entry["name"].lower(): (entry.get("properties") or {}).get("ipAddress") for entry in entries}


def reading_runtime(settings: dict[str, str]) -> Runtime:
    """A runtime in the test process, only for reading what Azure holds and what the rules want."""
    return Runtime.from_env(settings, retry_stats=RetryStats())


def rules_answer(runtime: Runtime) -> dict[str, dict[str, str]]:
    """pool key -> managed name -> IP, as the rules decide for the inventory now."""
    desired = compute_membership(runtime.reconciler.read_inventory(), runtime.rules)
    return {pool: {name.lower(): want.ip_address for name, want in wanted.items()}
            for pool, wanted in desired.items()}


def pool_contents(arm: Emulator, pool: str) -> dict[str, str | None]:
    return _addresses(arm.world.get_pool(pool))


def managed_part(contents: dict[str, str | None]) -> dict[str, str | None]:
    return {name: ip for name, ip in contents.items() if is_managed_name(name)}


def fleet_for(arm_settings: ArmSettings) -> Fleet:
    return Fleet(arm_settings, SUBSCRIPTION, RESOURCE_GROUP)


def pool_keys() -> list[str]:
    return [id_key(pool_id(group)) for group in GROUPS]
