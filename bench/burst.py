"""A scale-out burst: N VM-create events for one pool over D seconds, across several Function instances.

Prints a table (no pass/fail) comparing poolsync (durable intents + one coalescing flusher per load
balancer) with a naive handler doing what the Azure docs show for one event (GET the pool, append the
address, PUT it, retry on conflict): pool writes, 429/409/412 answers, seconds from the last event to
converged, lost addresses. Targets for poolsync: at most 3 writes per LB per burst, converged within 3
operation times after the last event, nothing lost.

    python -m bench.burst [--sizes 50,200,1000] [--duration 10] [--instances 4] [--operation-seconds 1]
    python -m bench.burst --sizes 50 --duration 3 --naive-timeout 15      # a quick run

The emulator runs in this process (its counters are read directly) with the per-load-balancer
single-operation rule. Each VM appears in the emulator at its time in the burst and its create event goes
straight to one of the simulated Function instances: child processes with their own runtime and a thread
pool, like a Functions host, redelivering failed events like Event Grid. The same machinery
drives tests/app/events/test_burst.py.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.instances import FAST_REDELIVERY, NAIVE, POOLSYNC, InstancePool, write_event
from devstack.settings import local_settings

__all__ = ["NAIVE", "POOLSYNC", "bench_env", "burst_topology", "run_burst"]
RESOURCE_GROUP = "rg-poolsync"
SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
BASE = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/{RESOURCE_GROUP}/providers"
VNET_ID = f"{BASE}/Microsoft.Network/virtualNetworks/vnet-burst"
LB_ID = f"{BASE}/Microsoft.Network/loadBalancers/lb-burst"
POOL_ID = f"{LB_ID}/backendAddressPools/pool-burst"


def burst_topology(vms: int = 0) -> dict[str, Any]:
    """One VNet (/16, one /20 subnet: room for 4,000 VMs), one Standard LB with an empty pool, N VMs."""
    return {
        "virtual_networks": [{"name": "vnet-burst", "address_space": ["10.0.0.0/16"],
                              "subnets": [{"name": "default", "prefix": "10.0.0.0/20"}]}],
        "load_balancers": [{"name": "lb-burst", "sku": "Standard", "pools": [{"name": "pool-burst"}],
                            "rules": [{"name": "http", "pool": "pool-burst"}]}],
        "virtual_machines": [{"count": vms, "name": "vm-{i}", "subnet": "vnet-burst/default",
                              "tags": {"role": "web"}, "delete_option": "Delete"}] if vms else [],
    }


def burst_rules() -> list[dict[str, Any]]:
    return [{"name": "web", "pool": POOL_ID, "virtualNetwork": VNET_ID, "cidrs": ["10.0.0.0/20"]}]


def vm_id(index: int) -> str:
    return f"{BASE}/Microsoft.Compute/virtualMachines/vm-{index}"


def naive_handler(env: dict[str, str], give_up_at: list[float]) -> Callable[[dict[str, Any]], None]:
    """What a hand-written handler following the docs does: read, append, PUT, retry on conflict.

    No If-Match: two instances that read the same pool overwrite each other's additions."""
    from azure.core.exceptions import HttpResponseError

    from shared.azure.clients import ArmSettings, compute_client, network_client
    from shared.core.ids import ResourceId

    settings = ArmSettings.from_env(env)
    network = network_client(settings, SUBSCRIPTION)
    compute = compute_client(settings, SUBSCRIPTION)
    pool = ResourceId.parse(POOL_ID)
    pool_name = str(pool.child_name)

    def handle(event: dict[str, Any]) -> None:
        vm = ResourceId.parse(event["subject"])
        vm_json = compute.virtual_machines.get(vm.resource_group, vm.name).as_dict()
        nic_ref = vm_json["properties"]["networkProfile"]["networkInterfaces"][0]["id"]
        nic = ResourceId.parse(nic_ref)
        config = network.network_interfaces.get(nic.resource_group, nic.name).as_dict()[
            "properties"]["ipConfigurations"][0]["properties"]
        while time.time() < give_up_at[0]:
            current = network.load_balancer_backend_address_pools.get(
                pool.resource_group, pool.name, pool_name).as_dict()
            addresses = current["properties"].get("loadBalancerBackendAddresses") or []
            if any(a["name"] == vm.name for a in addresses):
                return
            addresses.append({"name": vm.name, "properties": {
                "ipAddress": config["privateIPAddress"], "virtualNetwork": {"id": VNET_ID}}})
            body: Any = {"properties": {"loadBalancerBackendAddresses": addresses}}  # no If-Match
            try:
                network.load_balancer_backend_address_pools.begin_create_or_update(
                    pool.resource_group, pool.name, pool_name, body).result()
                return
            except HttpResponseError as error:
                if error.status_code not in (409, 412, 429):
                    raise
                retry_after = getattr(error.response, "headers", {}).get("Retry-After")
                time.sleep(float(retry_after) if retry_after else 1.0)
        raise TimeoutError(f"gave up adding {vm.name}")

    return handle


# -- the driver ---------------------------------------------------------------------------------------------


@dataclass
class BurstResult:
    mode: str
    events: int
    pool_writes: int
    rejections: dict[int, int]
    seconds_to_converge: float | None  # from the last event's delivery time; None = not within the wait
    lost: int
    overwritten: int  # of the lost: were in the pool once, then a stale read-modify-write dropped them
    instances: list[dict[str, Any]]


SWEEP_PERIOD = 30.0  # the sweep timer's default schedule (POOLSYNC_SWEEP_SCHEDULE)


def run_burst(
    arm: Any,
    env: dict[str, str],
    count: int,
    *,
    mode: str = POOLSYNC,
    instances: int = 4,
    duration: float = 10.0,
    concurrency: int = 8,
    settle_timeout: float = 120.0,
) -> BurstResult:
    """A scale-out of `count` VMs over `duration` seconds on a world holding `burst_topology(0)`: each VM
    appears in the emulator at its time and its create event goes at once to one of `instances` child
    processes (round-robin); then wait until the pool holds every VM's IP (or `settle_timeout`)."""
    instances_pool = InstancePool(mode, env, instances, concurrency, schedule=FAST_REDELIVERY,
                                  sweep_period=SWEEP_PERIOD,
                                  naive_factory=None if mode == POOLSYNC else naive_handler).start()
    before = arm.stats.snapshot()
    watcher = PoolWatcher(arm)
    watcher.start()
    spacing = duration / max(1, count)
    started_at = time.time()
    wanted: set[str] = set()
    last_event_at = started_at
    try:
        for index in range(1, count + 1):
            delay = started_at + (index - 1) * spacing - time.time()
            if delay > 0:
                time.sleep(delay)
            arm.load_topology(_vm_topology(index))  # the VM exists in Azure before its event is sent
            wanted.add(_ip_of(arm, index))
            last_event_at = time.time()
            instances_pool.deliver(write_event(vm_id(index)))
        converged_at = watcher.wait_for(wanted, last_event_at + settle_timeout)
        reports = instances_pool.drain(max(0.0, last_event_at + settle_timeout - time.time()), wait=30)
    finally:
        instances_pool.stop()
    assert arm.wait_operations_done(60)
    watcher.stop()
    present = set(arm.world.pool_address_ips(POOL_ID))
    after = arm.stats.snapshot()
    return BurstResult(
        mode=mode,
        events=count,
        pool_writes=after["writes_by_pool"].get(POOL_ID.lower(), 0) - before["writes_by_pool"].get(
            POOL_ID.lower(), 0),
        rejections={status: _rejections(after, status) - _rejections(before, status)
                    for status in (429, 409, 412)},
        seconds_to_converge=None if converged_at is None else max(0.0, converged_at - last_event_at),
        lost=len(wanted - present),
        overwritten=len((watcher.ever_seen & wanted) - present),
        instances=reports,
    )


def _vm_topology(index: int) -> dict[str, Any]:
    return {"virtual_machines": [{"name": f"vm-{index}", "subnet": "vnet-burst/default",
                                  "tags": {"role": "web"}, "delete_option": "Delete"}]}


def _ip_of(arm: Any, index: int) -> str:
    nic = arm.world.get_nic(f"{BASE}/Microsoft.Network/networkInterfaces/vm-{index}-nic")
    return str(nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"])


def _rejections(snapshot: dict[str, Any], status: int) -> int:
    return sum(n for key, n in snapshot["rejections"].items() if key.split(" ", 1)[0] == str(status))


class PoolWatcher(threading.Thread):
    """Samples the pool every 50 ms: when it first held every wanted IP (write finished), and every IP it
    ever held (to tell addresses overwritten by a stale write from ones never added)."""

    def __init__(self, arm: Any) -> None:
        super().__init__(name="pool-watcher", daemon=True)
        self.arm = arm
        self.ever_seen: set[str] = set()
        self._expected: set[str] | None = None
        self._converged: threading.Event = threading.Event()
        self.converged_at: float | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(0.05):
            pool = self.arm.world.get_pool(POOL_ID)
            ips = {a["properties"].get("ipAddress") for a in pool["properties"].get(
                "loadBalancerBackendAddresses") or []}
            self.ever_seen |= ips
            expected = self._expected
            if (expected is not None and not self._converged.is_set() and expected <= ips
                    and pool["properties"].get("provisioningState") == "Succeeded"):
                self.converged_at = time.time()
                self._converged.set()

    def wait_for(self, expected: set[str], give_up_at: float) -> float | None:
        self._expected = set(expected)
        self._converged.wait(max(0.0, give_up_at - time.time()))
        return self.converged_at

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=5)


def bench_env(arm: Any, storage_connection_string: str, **overrides: str) -> dict[str, str]:
    suffix = uuid.uuid4().hex[:10]
    defaults = {
        "POOLSYNC_INTENTS_TABLE": f"burst{suffix}", "POOLSYNC_LOCKS_CONTAINER": f"burst-{suffix}",
        "POOLSYNC_RETRY_BASE_BACKOFF": "0.2", "POOLSYNC_RETRY_MAX_BACKOFF": "2",
    }
    rules = {"version": 1, "rules": burst_rules()}
    return local_settings(arm.url, arm.ca_path, storage_connection_string, rules=rules,
                          **{**defaults, **overrides})


def _row(result: BurstResult, operation_seconds: float) -> str:
    seconds = result.seconds_to_converge
    converge = ("not converged" if seconds is None
                else f"{seconds:.1f} s ({seconds / operation_seconds:.1f} op)")
    rejected = "/".join(str(result.rejections[status]) for status in (429, 409, 412))
    return (f"{result.events:>6}  {result.mode:<9} {result.pool_writes:>11}  {rejected:>12}  {converge:>22}"
            f"  {result.lost:>5} ({result.overwritten} overwritten)")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50,200,1000", help="events per burst, comma-separated")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds the events are spread over")
    parser.add_argument("--instances", type=int, default=4, help="simulated Function instances (processes)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent invocations per instance")
    parser.add_argument("--operation-seconds", type=float, default=1.0, help="duration of one ARM write")
    parser.add_argument("--naive-timeout", type=float, default=30.0,
                        help="seconds after the last event the naive handler gets to converge")
    parser.add_argument("--page-size", type=int, default=1000, help="emulator list page size")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args(argv)

    from devstack.azurite import Azurite
    from emulator import Emulator

    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    with tempfile.TemporaryDirectory(prefix="poolsync-burst-") as scratch:
        azurite = Azurite(Path(scratch) / "azurite").start()
        arm = Emulator(profile="azure", state_dir=Path(scratch) / "arm",
                       operation_seconds=args.operation_seconds, page_size=args.page_size).start()
        try:
            print(f"burst over {args.duration:g} s, {args.instances} instances x {args.concurrency} "
                  f"invocations, ARM write = {args.operation_seconds:g} s, one operation per LB at a time")
            print(f"{'events':>6}  {'handler':<9} {'pool writes':>11}  {'429/409/412':>12}  "
                  f"{'last event->converged':>22}  {'lost':>5}")
            for size in sizes:
                modes = [POOLSYNC] if args.skip_naive else [POOLSYNC, NAIVE]
                for mode in modes:
                    arm.reset(burst_topology(0))
                    arm.operation_seconds = args.operation_seconds
                    settle = args.naive_timeout if mode == NAIVE else max(30.0, 10 * args.operation_seconds)
                    result = run_burst(
                        arm, bench_env(arm, azurite.connection_string), size, mode=mode,
                        instances=args.instances, duration=args.duration, concurrency=args.concurrency,
                        settle_timeout=settle,
                    )
                    print(_row(result, args.operation_seconds), flush=True)
        finally:
            arm.stop()
            azurite.stop()


if __name__ == "__main__":
    main()
