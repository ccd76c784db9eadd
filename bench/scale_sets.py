"""Scale sets on the event path, under Azure's limits (issue 18): a Uniform set scaled out from 0 to 1,000
instances, then in from 1,000 to 100, one event each (as ARM emits one for the capacity write).

Prints figures (no pass/fail) with the targets beside them:

    python -m bench.scale_sets [--vms 20000] [--scale-out 1000] [--scale-in-to 100]
                               [--operation-seconds 5] [--timeout 300]
    python -m bench.scale_sets --quick          # 2,000 VMs, 0 -> 200 -> 20, 0.5 s operations

The world: the azure scale benchmark's subscription (`--vms` VMs with one NIC each behind their own load
balancers, pools converged) plus a Uniform scale set in its own /21 subnet, selected by a rule with
`scaleSets` into its own IP-based pool of its own load balancer. The emulator runs its `azure` profile
(ARM buckets per subscription and principal, Network RP limits, busy-LB answers) with long-running
operations of `--operation-seconds`. The capacity change is made in the emulator's world as Azure's Compute
RP would make it, then the scale set's write event is delivered to simulated Function instances running
the app's Event Grid function. ARM calls are counted from the event until every delivery ended.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.azure_scale import (
    BASE,
    VNET,
    Scale,
    _count,
    _delta,
    nic_guids,
    start_emulator,
    topology,
    vm_topology,
)
from bench.instances import POOLSYNC, InstancePool
from devstack.settings import local_settings
from emulator.events import WRITE_SUCCESS, build_event
from emulator.topology import scale_set_body
from shared import settings

SET_NAME = "ss-bench"
SET_ID = f"{BASE}/Microsoft.Compute/virtualMachineScaleSets/{SET_NAME}"
LB = f"{BASE}/Microsoft.Network/loadBalancers/lb-scale-set"
POOL = f"{LB}/backendAddressPools/pool-scale-set"
SUBNET = "scale-set"
SUBNET_CIDR = "10.0.248.0/21"  # the last /21 of the azure scale world's /16 (its LBs take the first ones)
SUBNET_ID = f"{BASE}/Microsoft.Network/virtualNetworks/{VNET}/subnets/{SUBNET}"
COMPUTE_API = "2026-04-01"


@dataclass(frozen=True)
class Sizes:
    vms: int = 20000
    lbs: int = 20
    scale_out: int = 1000
    scale_in_to: int = 100
    operation_seconds: float = 5.0
    timeout: float = 300.0
    instances: int = 4
    concurrency: int = 8
    page_size: int = 1000

    def world(self) -> Scale:
        return Scale(
            vms=self.vms,
            lbs=self.lbs,
            creates=1,
            deletes=1,
            operation_seconds=self.operation_seconds,
            instances=self.instances,
            concurrency=self.concurrency,
            timeout=self.timeout,
            page_size=self.page_size,
        )


FULL = Sizes()
QUICK = Sizes(vms=2000, lbs=4, scale_out=200, scale_in_to=20, operation_seconds=0.5, timeout=120.0)


@dataclass
class Result:
    case: str
    instances: int
    reads: int
    instance_pages: int
    nic_pages: int
    pool_puts: int
    held: list[float]
    seconds_to_converge: float | None
    missing: int
    stale: int
    failed: int
    late: int


def load_world(arm: Any, sizes: Sizes) -> None:
    """The standalone-VM world (VMs first: the pools' converged entries carry their NICs' resourceGuids),
    plus the scale set's subnet and an empty pool for it."""
    vms = vm_topology(sizes.world())
    vms["virtual_networks"][0]["subnets"].append({"name": SUBNET, "prefix": SUBNET_CIDR})
    arm.load_topology(vms)
    lbs = topology(sizes.world(), nic_guids(arm))
    lbs["load_balancers"].append(
        {"name": "lb-scale-set", "sku": "Standard", "pools": [{"name": "pool-scale-set"}]}
    )
    arm.load_topology(lbs)


def rules(sizes: Sizes) -> dict[str, Any]:
    from bench.azure_scale import rules as vm_rules

    document = vm_rules(sizes.world())
    document["rules"].append(
        {
            "name": "scale-set",
            "pool": POOL,
            "virtualNetwork": f"{BASE}/Microsoft.Network/virtualNetworks/{VNET}",
            "cidrs": [SUBNET_CIDR],
            "scaleSets": [SET_NAME],
        }
    )
    return document


def _instance_ips(arm: Any) -> set[str]:
    return {
        nic["properties"]["ipConfigurations"][0]["properties"]["privateIPAddress"]
        for nic in arm.world.list_scale_set_nics(SET_ID) or []
    }


def run_case(arm: Any, pool: InstancePool, sizes: Sizes, label: str, capacity: int) -> Result:
    before = arm.stats.snapshot()
    arm.world.put_scale_set(SET_ID, scale_set_body("westeurope", SUBNET_ID, capacity, nic_name="nic"))
    wanted = _instance_ips(arm)
    event = build_event(WRITE_SUCCESS, SET_ID, "PATCH", COMPUTE_API)
    delivered_at = time.monotonic()
    pool.deliver(event, 0)
    converged_at = None
    while time.monotonic() < delivered_at + sizes.timeout:
        held = set(arm.world.pool_address_ips(POOL))
        settled = arm.world.get_pool(POOL)["properties"].get("provisioningState") == "Succeeded"
        if settled and held == wanted:
            converged_at = time.monotonic()
            break
        time.sleep(0.1)
    reports = pool.drain(max(0.0, delivered_at + sizes.timeout - time.monotonic()), wait=sizes.timeout)
    arm.wait_operations_done(60)
    requests = _delta(arm.stats.snapshot()["requests"], before["requests"])
    held = set(arm.world.pool_address_ips(POOL))
    return Result(
        case=label,
        instances=len(wanted),
        reads=_count(requests, "GET"),
        instance_pages=_count(requests, "GET", "virtualMachineScaleSets/virtualMachines"),
        nic_pages=_count(requests, "GET", "virtualMachines/networkInterfaces"),
        pool_puts=_count(requests, "PUT", "backendAddressPools"),
        held=[s for report in reports for s in report.get("held", [])],
        seconds_to_converge=None if converged_at is None else converged_at - delivered_at,
        missing=len(wanted - held),
        stale=len(held - wanted),
        failed=sum(int(r.get("failed", 0)) for r in reports),
        late=sum(int(r.get("late", 0)) for r in reports),
    )


def measure(sizes: Sizes) -> tuple[list[Result], float]:
    from devstack.azurite import Azurite
    from shared.app.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="poolsync-scale-sets-") as scratch:
        azurite = Azurite(Path(scratch) / "azurite").start()
        arm, _ = start_emulator(Path(scratch) / "arm", sizes.world())
        try:
            load_world(arm, sizes)
            suffix = uuid.uuid4().hex[:10]
            env = local_settings(
                arm.url,
                arm.ca_path,
                azurite.connection_string,
                rules=rules(sizes),
                POOLSYNC_INTENTS_TABLE=f"sets{suffix}",
                POOLSYNC_LOCKS_CONTAINER=f"sets-{suffix}",
                POOLSYNC_MEMBERS_TABLE=f"members{suffix}",
            )
            arm.world.put_scale_set(SET_ID, scale_set_body("westeurope", SUBNET_ID, 0, nic_name="nic"))
            Runtime.from_env(env).reconciler.reconcile(source="bench-setup")  # index built, pools converged
            quiet = float(settings.COALESCE_QUIET.get(env))
            with InstancePool(POOLSYNC, env, sizes.instances, sizes.concurrency) as pool:
                results = [
                    run_case(arm, pool, sizes, f"scale-out 0 -> {sizes.scale_out:,}", sizes.scale_out),
                    run_case(
                        arm,
                        pool,
                        sizes,
                        f"scale-in {sizes.scale_out:,} -> {sizes.scale_in_to:,}",
                        sizes.scale_in_to,
                    ),
                ]
        finally:
            arm.stop()
            azurite.stop()
    return results, quiet


def figure_rows(result: Result, sizes: Sizes, quiet: float) -> list[tuple[str, str, str]]:
    operation = sizes.operation_seconds
    held = max(result.held, default=0.0)
    pages = result.instance_pages + result.nic_pages
    seconds = result.seconds_to_converge
    return [
        (
            "ARM reads (instance + NIC list pages / other)",
            f"{result.reads:,} ({pages} / {result.reads - pages})",
            f"<= list pages + 10 = {pages + 10}",
        ),
        ("pool PUTs", str(result.pool_puts), "<= 3"),
        (
            "event -> pool holds exactly the instances",
            f"did not converge in {sizes.timeout:g} s" if seconds is None else f"{seconds:.1f} s",
            f"<= {quiet + 3 * operation:g} s (quiet {quiet:g} s + 3 operations)",
        ),
        ("delivery held (longest)", f"{held:.1f} s", "<= 30 s"),
        (
            "lost (missing / stale)",
            f"{result.missing + result.stale} ({result.missing} / {result.stale})",
            "0",
        ),
        ("deliveries failed (past 30 s)", f"{result.failed} ({result.late})", "0"),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_sets", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--vms", type=int)
    parser.add_argument("--scale-out", type=int)
    parser.add_argument("--scale-in-to", type=int)
    parser.add_argument("--operation-seconds", type=float)
    parser.add_argument("--timeout", type=float)
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    changes = {
        name: value
        for name, value in (
            ("vms", args.vms),
            ("scale_out", args.scale_out),
            ("scale_in_to", args.scale_in_to),
            ("operation_seconds", args.operation_seconds),
            ("timeout", args.timeout),
        )
        if value is not None
    }
    sizes = replace(sizes, **changes)
    results, quiet = measure(sizes)
    print(
        f"scale sets: {sizes.vms:,} VMs beside the set, azure profile, "
        f"operations {sizes.operation_seconds:g} s"
    )
    for result in results:
        print(f"\n{result.case} ({result.instances:,} instances)")
        for figure, value, target in figure_rows(result, sizes, quiet):
            print(f"  {figure:<48} {value:<28} target {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
