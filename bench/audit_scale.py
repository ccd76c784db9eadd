"""The compliance audit at scale on the ARM emulator: ARM calls, seconds, peak memory.

Prints figures only (no pass/fail): `python -m bench.audit_scale [--nics 20000] [--lbs 50] [--pools 200]`
(`--nics 2000 --lbs 5 --pools 20` is a quick run). Targets: under 60 s and 500 MB for 20,000 NICs,
50 LBs, 200 pools, with ARM calls O(pages + pools).

The emulator and Azurite run as child processes, so the peak RSS printed is the audit's own process.
The world: one VM per NIC spread over VNets of 2,000 NICs each, one rule per pool (a /25 per pool),
every pool pre-filled with 90% of what the rules select (10% missing) plus two stale managed entries
and one hand-added entry pointing at nothing. A read-only run is measured, then a remediating one.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devstack.azurite import Azurite
from devstack.settings import local_settings
from devstack.stack import EmulatorProcess
from emulator.topology import DEFAULT_RESOURCE_GROUP
from emulator.world import DEFAULT_SUBSCRIPTION
from shared.app.runtime import Runtime
from shared.audit.collect import run_audit
from shared.azure.retry import RetryStats
from shared.core.naming import address_name

NICS_PER_VNET = 2000
POOLS_PER_VNET = 20  # a /25 each: 10 /24s of 200 hosts
BASE = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}/providers"


def nic_id(name: str) -> str:
    return f"{BASE}/Microsoft.Network/networkInterfaces/{name}"


def vnet_id(vnet: int) -> str:
    return f"{BASE}/Microsoft.Network/virtualNetworks/vnet{vnet}"


def pool_id(lb: int, pool: int) -> str:
    return f"{BASE}/Microsoft.Network/loadBalancers/lb{lb}/backendAddressPools/pool{pool}"


def nic_ip(index: int) -> tuple[int, str]:
    """VNet and IP of NIC `index`: hosts .10-.209 of 10.<vnet>.<0-9>.0/24."""
    vnet, within = divmod(index, NICS_PER_VNET)
    third, host = divmod(within, 200)
    return vnet, f"10.{vnet}.{third}.{host + 10}"


def pool_cidr(global_pool: int) -> tuple[int, str]:
    vnet, within = divmod(global_pool, POOLS_PER_VNET)
    third, half = divmod(within, 2)
    return vnet, f"10.{vnet}.{third}.{128 * half}/25"


def free_hosts(cidr: str) -> tuple[str, int]:
    """First three octets of a pool's /25 and the first of its hosts no NIC uses (.1-.9 or .220-.255)."""
    network = cidr.split("/")[0]
    prefix, low = network.rsplit(".", 1)
    return prefix, 1 if low == "0" else 220


def build(nics: int, lbs: int, pools: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(topology, rules document)."""
    vnets = max(1, -(-nics // NICS_PER_VNET), -(-pools // POOLS_PER_VNET))
    per_lb = -(-pools // lbs)
    topology: dict[str, Any] = {
        "virtual_networks": [
            {"name": f"vnet{v}", "address_space": [f"10.{v}.0.0/16"],
             "subnets": [{"name": "default", "prefix": f"10.{v}.0.0/20"}]}
            for v in range(vnets)
        ],
        "load_balancers": [],
        "virtual_machines": [],
    }
    members: dict[int, list[tuple[str, str, int]]] = {}  # pool -> [(name, ip, vnet)]
    for index in range(nics):
        vnet, ip = nic_ip(index)
        name = f"vm{index}"
        topology["virtual_machines"].append(
            {"name": name, "subnet": f"vnet{vnet}/default", "ip": ip, "tags": {"poolsync": "true"}}
        )
        host = int(ip.rsplit(".", 1)[1])
        global_pool = vnet * POOLS_PER_VNET + int(ip.split(".")[2]) * 2 + (host >= 128)
        if global_pool < pools:
            member = (address_name(nic_id(f"{name}-nic"), "ipconfig1"), ip, vnet)
            members.setdefault(global_pool, []).append(member)
    rules = []
    lb_entries: dict[int, dict[str, Any]] = {}
    for global_pool in range(pools):
        lb = global_pool // per_lb
        vnet, cidr = pool_cidr(global_pool)
        entry = lb_entries.setdefault(lb, {
            "name": f"lb{lb}",
            "frontends": [
                {"name": "internal", "subnet": f"vnet{vnet}/default",
                 "private_ip": f"10.{vnet}.15.{lb % 250 + 1}"}
            ],
            "pools": [],
        })
        present = members.get(global_pool, [])
        kept = [m for position, m in enumerate(present) if position % 10 != 0]  # 10% missing
        prefix, free = free_hosts(cidr)
        stale = [(address_name(nic_id(f"gone{global_pool}-{n}"), "ipconfig1"), f"{prefix}.{free + n}", vnet)
                 for n in range(2)]
        addresses = [{"name": name, "ip": ip, "virtual_network": f"vnet{v}"} for name, ip, v in kept + stale]
        addresses.append(
            {"name": f"manual{global_pool}", "ip": f"{prefix}.{free + 5}", "virtual_network": f"vnet{vnet}"}
        )
        entry["pools"].append({"name": f"pool{global_pool}", "addresses": addresses})
        rules.append({"name": f"rule{global_pool}", "pool": pool_id(lb, global_pool),
                      "virtualNetwork": vnet_id(vnet), "cidrs": [cidr], "tags": {"poolsync": "true"}})
    topology["load_balancers"] = list(lb_entries.values())
    return topology, {"version": 1, "rules": rules}


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def calls(stats: dict[str, Any]) -> tuple[int, int, int]:
    """(all requests, list/GET requests, writes)."""
    requests = stats["requests"]
    total = sum(requests.values())
    gets = sum(n for key, n in requests.items() if key.startswith("GET "))
    writes = sum(n for key, n in requests.items() if key.startswith(("PUT ", "DELETE ", "PATCH ")))
    return total, gets, writes


@dataclass(frozen=True)
class AuditRun:
    label: str
    findings: int
    calls: int
    gets: int
    writes: int
    seconds: float
    peak_mb: float


@dataclass(frozen=True)
class AuditScale:
    world: dict[str, int]
    seeded_seconds: float
    baseline_mb: float
    runs: list[AuditRun]


def measure(nics: int, lbs: int, pools: int, page_size: int) -> AuditScale:
    """Seed the world in an emulator process, then run the audit read-only and remediating."""
    with tempfile.TemporaryDirectory(prefix="audit-bench-") as temp:
        root = Path(temp)
        started = time.perf_counter()
        topology, rules = build(nics, lbs, pools)
        (root / "topology.json").write_text(json.dumps(topology))
        emulator = EmulatorProcess(root / "emulator", root / "topology.json", None, operation_seconds=0.05,
                                   page_size=page_size).start()
        azurite = Azurite(root / "azurite").start()
        try:
            world = emulator.admin("GET", "/health")["world"]
            seeded = time.perf_counter() - started
            runtime = Runtime.from_env(
                local_settings(emulator.url, emulator.ca_path, azurite.connection_string, rules=rules),
                retry_stats=RetryStats(),
            )
            baseline = peak_mb()
            runs = []
            for label, remediate in (("read-only", False), ("remediate", True)):
                emulator.admin("POST", "/stats/reset")
                began = time.perf_counter()
                report = run_audit(runtime, remediate=remediate)
                seconds = time.perf_counter() - began
                total, gets, writes = calls(emulator.admin("GET", "/stats"))
                findings = report["summary"]["findings"]
                runs.append(AuditRun(label, findings, total, gets, writes, seconds, peak_mb()))
        finally:
            azurite.stop()
            emulator.stop()
    return AuditScale(world, seeded, baseline, runs)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nics", type=int, default=20000)
    parser.add_argument("--lbs", type=int, default=50)
    parser.add_argument("--pools", type=int, default=200)
    parser.add_argument("--page-size", type=int, default=1000, help="emulator list page size")
    args = parser.parse_args()

    scale = measure(args.nics, args.lbs, args.pools, args.page_size)
    print(f"seeded in {scale.seeded_seconds:.1f} s: {scale.world}")
    print(f"page size {args.page_size}; peak RSS before the audit (topology built) "
          f"{scale.baseline_mb:.0f} MB")
    header = (f"{'run':<10} {'NICs':>6} {'LBs':>4} {'pools':>5} {'findings':>8} {'ARM calls':>9} "
              f"{'GETs':>5} {'writes':>6} {'seconds':>8} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for run in scale.runs:
        print(f"{run.label:<10} {args.nics:>6} {args.lbs:>4} {args.pools:>5} {run.findings:>8} "
              f"{run.calls:>9} {run.gets:>5} {run.writes:>6} {run.seconds:>8.1f} {run.peak_mb:>8.0f}")


if __name__ == "__main__":
    main()
