"""poolsync's event path in an Azure-sized subscription, under Azure's throttling (issue 11).

Prints figures (no pass/fail) with the targets beside them:

    python -m bench.azure_scale [--vms 20000] [--lbs 20] [--creates 1000] [--deletes 1000]
                                [--operation-seconds 5] [--timeout 300]
    python -m bench.azure_scale --quick          # 2,000 VMs, 4 LBs, 100 + 100 burst, 0.5 s operations

The world: one subscription, one VNet (/16) with one /21 subnet per load balancer, `--vms` VMs with one
NIC each (deleteOption Delete) spread evenly over the subnets, one Standard LB per subnet with one
IP-based pool and a rule selecting that subnet's CIDR, and two hand-added addresses per pool. The pools
start converged: they are filled directly in the emulator's world, not through ARM, with the names a
reconcile gives (each NIC's resourceGuid included); the setup's full reconcile must write no pool.
The emulator runs in
this process with Azure's documented subscription buckets (reads 250, refilled 25/s; writes 200,
refilled 10/s) and long-running operations of `--operation-seconds`, one at a time per load balancer.

Cases, measured one after the other on the same world and the same simulated Function instances
(`--instances` processes x `--concurrency` invocations, running the app's Event Grid function; failed
deliveries redelivered on Event Grid's schedule; the sweep timer on its default 5-minute schedule):
  1. one VM created, its event delivered;
  2. one VM deleted (its NIC goes with it), its event delivered;
  3. a burst of creates and deletes across every LB over `--burst-seconds`.
ARM calls are counted by the emulator from the first event until every delivery of the case ended.
"Converged" is checked against the emulator's world directly: every pool holds exactly the addresses
of the live VMs in its CIDR plus its hand-added ones.
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.instances import POOLSYNC, InstancePool, delete_event, write_event
from devstack.settings import local_settings
from emulator.throttling import BucketSettings
from emulator.topology import DEFAULT_RESOURCE_GROUP
from emulator.world import DEFAULT_SUBSCRIPTION
from shared import settings
from shared.core.naming import address_name

BASE = f"/subscriptions/{DEFAULT_SUBSCRIPTION}/resourceGroups/{DEFAULT_RESOURCE_GROUP}/providers"
VNET = "vnet-scale"
VNET_ID = f"{BASE}/Microsoft.Network/virtualNetworks/{VNET}"
SUBNET_SIZE = 2048  # a /21 per load balancer
FIRST_HOST = 4  # Azure reserves the first four addresses of a subnet (and the last)
HAND_ADDED_OFFSETS = (2040, 2041)  # in the pool's CIDR, used by no NIC
FRONTEND_OFFSET = 2030
MAX_LBS = 65536 // SUBNET_SIZE
AZURE_READS = BucketSettings(capacity=250, refill_per_second=25.0)  # per subscription + principal
AZURE_WRITES = BucketSettings(capacity=200, refill_per_second=10.0)


@dataclass(frozen=True)
class Scale:
    vms: int = 20000
    lbs: int = 20
    creates: int = 1000
    deletes: int = 1000
    burst_seconds: float = 10.0
    operation_seconds: float = 5.0
    lro_retry_after: int = 1
    instances: int = 4
    concurrency: int = 8
    timeout: float = 300.0  # per case, from its last event
    sweep_period: float = 30.0  # the sweep timer's default schedule (POOLSYNC_SWEEP_SCHEDULE)
    page_size: int = 1000

    def __post_init__(self) -> None:
        per_lb = -(-self.vms // max(1, self.lbs))
        creates_per_lb = -(-self.creates // max(1, self.lbs))
        if not 1 <= self.lbs <= MAX_LBS:
            raise ValueError(f"--lbs must be 1-{MAX_LBS} (one /21 each in a /16), got {self.lbs}")
        if self.vms < self.lbs:
            raise ValueError(f"--vms ({self.vms}) must be at least --lbs ({self.lbs})")
        if FIRST_HOST + per_lb + creates_per_lb + 1 > FRONTEND_OFFSET:
            raise ValueError(f"{per_lb} VMs + {creates_per_lb} creates per LB do not fit a /21")
        if self.deletes > self.vms - self.lbs:
            raise ValueError(f"--deletes ({self.deletes}) must leave one VM per LB")
        if min(self.creates, self.deletes, 0) < 0 or self.operation_seconds < 0 or self.timeout <= 0:
            raise ValueError("counts and seconds must not be negative; --timeout must be positive")


FULL = Scale()
QUICK = Scale(vms=2000, lbs=4, creates=100, deletes=100, burst_seconds=5.0, operation_seconds=0.5,
              instances=2, concurrency=4, timeout=60.0)


# -- the world (pure) ----------------------------------------------------------------------------------------


def lb_id(lb: int) -> str:
    return f"{BASE}/Microsoft.Network/loadBalancers/lb{lb}"


def pool_id(lb: int) -> str:
    return f"{lb_id(lb)}/backendAddressPools/pool"


def vm_id(name: str) -> str:
    return f"{BASE}/Microsoft.Compute/virtualMachines/{name}"


def nic_id(vm_name: str) -> str:
    return f"{BASE}/Microsoft.Network/networkInterfaces/{vm_name}-nic"


def subnet_cidr(lb: int) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(f"10.0.{lb * SUBNET_SIZE // 256}.0/21")


def host_ip(lb: int, offset: int) -> str:
    return str(subnet_cidr(lb).network_address + offset)


@dataclass(frozen=True)
class Vm:
    lb: int
    slot: int  # VM slots 0.. of one LB's subnet; the IP follows from it

    @property
    def name(self) -> str:
        return f"vm-{self.lb}-{self.slot}"

    @property
    def ip(self) -> str:
        return host_ip(self.lb, FIRST_HOST + self.slot)

    def topology(self) -> dict[str, Any]:
        return {"name": self.name, "subnet": f"{VNET}/lb{self.lb}", "ip": self.ip, "delete_option": "Delete"}


def initial_vms(scale: Scale) -> list[Vm]:
    return [Vm(index % scale.lbs, index // scale.lbs) for index in range(scale.vms)]


def hand_added(lb: int) -> list[dict[str, Any]]:
    return [{"name": f"manual-{lb}-{n}", "ip": host_ip(lb, offset), "virtual_network": VNET}
            for n, offset in enumerate(HAND_ADDED_OFFSETS)]


def vm_topology(scale: Scale) -> dict[str, Any]:
    """The VNet and the initial VMs (the emulator gives each NIC its resourceGuid when it loads them)."""
    return {
        "virtual_networks": [{"name": VNET, "address_space": ["10.0.0.0/16"],
                              "subnets": [{"name": f"lb{lb}", "prefix": str(subnet_cidr(lb))}
                                          for lb in range(scale.lbs)]}],
        "virtual_machines": [vm.topology() for vm in initial_vms(scale)],
    }


def topology(scale: Scale, nic_guids: Mapping[str, str]) -> dict[str, Any]:
    """The load balancers with converged pools: poolsync's own entries, named as a reconcile names them
    (`nic_guids`: lower-case NIC id -> the resourceGuid the emulator gave it), + hand-added ones."""
    members: dict[int, list[dict[str, Any]]] = {lb: [] for lb in range(scale.lbs)}
    for vm in initial_vms(scale):
        nic = nic_id(vm.name)
        members[vm.lb].append({"name": address_name(nic, "ipconfig1", nic_guids[nic.lower()]), "ip": vm.ip,
                               "virtual_network": VNET})
    return {
        "load_balancers": [
            {"name": f"lb{lb}", "sku": "Standard",
             "frontends": [{"name": "internal", "subnet": f"{VNET}/lb{lb}",
                            "private_ip": host_ip(lb, FRONTEND_OFFSET)}],
             "pools": [{"name": "pool", "addresses": members[lb] + hand_added(lb)}],
             "rules": [{"name": "http", "pool": "pool"}]}
            for lb in range(scale.lbs)
        ],
    }


def nic_guids(arm: Any) -> dict[str, str]:
    """Lower-case NIC id -> resourceGuid, as the emulator's world holds them."""
    with arm.world.lock:
        return {nic["id"].lower(): nic["properties"]["resourceGuid"] for nic in arm.world.nics.values()}


def rules(scale: Scale) -> dict[str, Any]:
    return {"version": 1, "rules": [
        {"name": f"lb{lb}", "pool": pool_id(lb), "virtualNetwork": VNET_ID, "cidrs": [str(subnet_cidr(lb))]}
        for lb in range(scale.lbs)]}


@dataclass(frozen=True)
class Change:
    kind: str  # "create" | "delete"
    vm: Vm


def single_create(scale: Scale) -> list[Change]:
    """A VM in a slot no other case uses (after the burst's creates)."""
    creates_per_lb = -(-scale.creates // scale.lbs)
    return [Change("create", Vm(0, scale.vms // scale.lbs + creates_per_lb))]


def single_delete(scale: Scale) -> list[Change]:
    """The last initial VM of the last LB: the burst deletes from the first slots."""
    return [Change("delete", initial_vms(scale)[-1])]


def burst(scale: Scale) -> list[Change]:
    """Creates into fresh slots and deletes of the first initial VMs, interleaved, round-robin over LBs."""
    first_free = scale.vms // scale.lbs + (scale.vms % scale.lbs > 0)
    creates = [Change("create", Vm(n % scale.lbs, first_free + n // scale.lbs)) for n in range(scale.creates)]
    deletes = [Change("delete", vm) for vm in initial_vms(scale)[:scale.deletes]]
    mixed: list[Change] = []
    for index in range(max(len(creates), len(deletes))):
        mixed += creates[index:index + 1] + deletes[index:index + 1]
    return mixed


def rules_answer(nics: Iterator[dict[str, Any]], live_vms: set[str], scale: Scale) -> dict[int, set[str]]:
    """The IPs each pool should hold: primary ipconfigs of NICs attached to live VMs, by CIDR, plus the
    hand-added ones (never poolsync's to remove)."""
    cidrs = [subnet_cidr(lb) for lb in range(scale.lbs)]
    answer = {lb: {a["ip"] for a in hand_added(lb)} for lb in range(scale.lbs)}
    for nic in nics:
        owner = (nic["properties"].get("virtualMachine") or {}).get("id")
        if not owner or owner.lower() not in live_vms:
            continue
        for config in nic["properties"]["ipConfigurations"]:
            if not config["properties"].get("primary"):
                continue
            ip = ipaddress.IPv4Address(config["properties"]["privateIPAddress"])
            for lb, cidr in enumerate(cidrs):
                if ip in cidr:
                    answer[lb].add(str(ip))
    return answer


def differences(answer: dict[int, set[str]], pools: dict[int, list[str]]) -> tuple[int, int]:
    """(missing, stale) addresses over every pool; duplicates count as stale."""
    missing = stale = 0
    for lb, wanted in answer.items():
        held = pools[lb]
        missing += len(wanted - set(held))
        stale += len(set(held) - wanted) + (len(held) - len(set(held)))
    return missing, stale


# -- measuring ------------------------------------------------------------------------------------------


@dataclass
class CaseResult:
    case: str
    events: int
    reads: int
    writes: int
    pool_gets: int
    pool_puts: int
    lro_polls: int
    throttled: int
    rejections: dict[str, int]
    writes_by_lb: dict[str, int]
    held: list[float]
    seconds_to_converge: float | None
    missing: int
    stale: int
    hand_added_lost: int
    failed: int
    failed_by_throttling: int
    late: int
    gave_up: int
    redeliveries: int
    sweeps: int
    errors: list[str] = field(default_factory=list)

    @property
    def lost(self) -> int:
        return self.missing + self.stale


def start_emulator(state_dir: Path, scale: Scale) -> tuple[Any, str]:
    """The emulator with Azure's limits: its own `profile="azure"` when it has one, else set here."""
    from emulator import Emulator

    try:
        emulator = Emulator(state_dir=state_dir, profile="azure", page_size=scale.page_size)  # type: ignore[call-arg]
        how = 'profile="azure"'
    except TypeError:  # an emulator without profiles
        emulator = Emulator(state_dir=state_dir, page_size=scale.page_size,
                            lro_retry_after=scale.lro_retry_after)
        emulator.configure_throttling(AZURE_READS, AZURE_WRITES)
        how = (f"configure_throttling(reads 250 @25/s, writes 200 @10/s), "
               f"LRO Retry-After {scale.lro_retry_after} s")
    emulator.operation_seconds = scale.operation_seconds
    return emulator.start(), how


def _apply(arm: Any, change: Change) -> dict[str, Any]:
    """Make the change in the world, as Azure would have done it, and return the event it sends."""
    if change.kind == "create":
        arm.load_topology({"virtual_machines": [change.vm.topology()]})
        return write_event(vm_id(change.vm.name))
    if arm.world.delete_vm(vm_id(change.vm.name)) is None:
        raise RuntimeError(f"{change.vm.name} does not exist")
    return delete_event(vm_id(change.vm.name))


def _pool_ips(arm: Any, scale: Scale) -> dict[int, list[str]]:
    return {lb: arm.world.pool_address_ips(pool_id(lb)) for lb in range(scale.lbs)}


def _pools_settled(arm: Any, scale: Scale) -> bool:
    return all(arm.world.get_pool(pool_id(lb))["properties"].get("provisioningState") == "Succeeded"
               for lb in range(scale.lbs))


def _count(requests: dict[str, int], method: str, suffix: str = "") -> int:
    return sum(n for key, n in requests.items()
               if key.split(" ", 1)[0] == method and key.lower().endswith(suffix.lower()))


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    return {key: n - before.get(key, 0) for key, n in after.items() if n - before.get(key, 0)}


def run_case(arm: Any, instances: InstancePool, scale: Scale, label: str, changes: list[Change],
             spread_seconds: float, one_instance: bool) -> CaseResult:
    before = arm.stats.snapshot()
    started = time.monotonic()
    last_event_at = started
    spacing = spread_seconds / max(1, len(changes))
    for index, change in enumerate(changes):
        delay = started + index * spacing - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        event = _apply(arm, change)
        last_event_at = time.monotonic()
        instances.deliver(event, 0 if one_instance else None)
    with arm.world.lock:
        answer = rules_answer(iter(list(arm.world.nics.values())), set(arm.world.vms), scale)
    give_up_at = last_event_at + scale.timeout
    converged_at = None
    while time.monotonic() < give_up_at:
        if _pools_settled(arm, scale) and differences(answer, _pool_ips(arm, scale)) == (0, 0):
            converged_at = time.monotonic()
            break
        time.sleep(0.25)
    # a handler may hold a delivery long past Event Grid's window (the host lets it run): wait for it
    reports = instances.drain(max(0.0, give_up_at - time.monotonic()), wait=scale.timeout)
    arm.wait_operations_done(60)
    after = arm.stats.snapshot()
    missing, stale = differences(answer, _pool_ips(arm, scale))
    held_ips = {ip for ips in _pool_ips(arm, scale).values() for ip in ips}
    requests = _delta(after["requests"], before["requests"])
    rejections = _delta(after["rejections"], before["rejections"])

    def total(key: str) -> int:
        return sum(int(report.get(key, 0)) for report in reports)

    return CaseResult(
        case=label, events=len(changes),
        reads=_count(requests, "GET"),
        writes=sum(n for key, n in requests.items() if key.split(" ", 1)[0] in ("PUT", "DELETE", "PATCH")),
        pool_gets=_count(requests, "GET", "backendAddressPools"),
        pool_puts=_count(requests, "PUT", "backendAddressPools"),
        lro_polls=_count(requests, "GET", "/operations"),
        throttled=sum(n for key, n in rejections.items() if key.startswith("429 ")),
        rejections=rejections,
        writes_by_lb=_delta(after["writes_by_load_balancer"], before["writes_by_load_balancer"]),
        held=[seconds for report in reports for seconds in report.get("held", [])],
        seconds_to_converge=None if converged_at is None else converged_at - last_event_at,
        missing=missing, stale=stale,
        hand_added_lost=sum(a["ip"] not in held_ips for lb in range(scale.lbs) for a in hand_added(lb)),
        failed=total("failed"), failed_by_throttling=total("failed_by_throttling"), late=total("late"),
        gave_up=total("gave_up"), redeliveries=total("redeliveries"), sweeps=total("sweeps"),
        errors=[error for report in reports for error in report.get("errors", [])][:5],
    )


@dataclass
class AzureScale:
    scale: Scale
    emulator: str
    seeded_seconds: float
    settings: dict[str, str]
    cases: list[CaseResult]


def measure(scale: Scale, cases: tuple[str, ...] = ("create", "delete", "burst")) -> AzureScale:
    from devstack.azurite import Azurite

    plans = {"create": ("one VM-create event", single_create(scale), 0.0, True),
             "delete": ("one VM-delete event", single_delete(scale), 0.0, True),
             "burst": (f"burst of {scale.creates:,} creates + {scale.deletes:,} deletes",
                       burst(scale), scale.burst_seconds, False)}
    with tempfile.TemporaryDirectory(prefix="poolsync-azure-scale-") as scratch:
        azurite = Azurite(Path(scratch) / "azurite").start()
        arm, how = start_emulator(Path(scratch) / "arm", scale)
        try:
            began = time.perf_counter()
            arm.load_topology(vm_topology(scale))
            arm.load_topology(topology(scale, nic_guids(arm)))
            seeded = time.perf_counter() - began
            suffix = uuid.uuid4().hex[:10]
            env = local_settings(arm.url, arm.ca_path, azurite.connection_string, rules=rules(scale),
                                 POOLSYNC_INTENTS_TABLE=f"scale{suffix}",
                                 POOLSYNC_LOCKS_CONTAINER=f"scale-{suffix}",
                                 POOLSYNC_MEMBERS_TABLE=f"members{suffix}")
            # Steady state, as after the hourly full reconcile: pools converged (seeded above) and the member
            # index filled. It runs before any case, so its reads are not counted.
            from shared.app.runtime import Runtime

            setup = Runtime.from_env(env).reconciler.reconcile(source="bench-setup")
            written = [o.pool_id for o in setup if o.status != "unchanged"]
            if written:  # the seeded world was not converged: every case would measure a repair too
                raise RuntimeError(f"the setup reconcile changed {len(written)} pool(s), e.g. {written[0]}")
            results = []
            with InstancePool(POOLSYNC, env, scale.instances, scale.concurrency,
                              sweep_period=scale.sweep_period) as instances:
                for name in cases:
                    label, changes, spread, one_instance = plans[name]
                    print(f"  case: {label}...", file=sys.stderr, flush=True)
                    results.append(run_case(arm, instances, scale, label, changes, spread, one_instance))
        finally:
            arm.stop()
            azurite.stop()
    return AzureScale(scale, how, seeded, env, results)


# -- presenting -----------------------------------------------------------------------------------------


def quiet_seconds(env: dict[str, str]) -> float:
    """The coalescing quiet period the app runs with."""
    return float(settings.COALESCE_QUIET.or_default(env))


def _percentile(ordered: list[float], share: float) -> float:
    """The nearest-rank percentile of an ascending list."""
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def figure_rows(result: CaseResult, scale: Scale, quiet: float) -> list[tuple[str, str, str]]:
    """(figure, value, target) rows of one case."""
    single = result.events == 1
    operation = scale.operation_seconds
    held = sorted(result.held)
    held_text = (f"p50 {statistics.median(held):.1f} s, p99 {_percentile(held, 0.99):.1f} s, "
                 f"max {held[-1]:.1f} s ({len(held)} deliveries)" if held else "no delivery returned")
    seconds = result.seconds_to_converge
    most_per_lb = max(result.writes_by_lb.values(), default=0)
    other_reads = result.reads - result.pool_gets - result.lro_polls
    rows = [
        ("ARM reads (pool GETs / LRO polls / other)",
         f"{result.reads:,} ({result.pool_gets:,} / {result.lro_polls:,} / {other_reads:,})",
         "other <= 10, plus the affected pools' GET" if single else ""),
        ("ARM writes (pool PUTs)", f"{result.writes:,} ({result.pool_puts:,})",
         "the affected pools' PUT" if single else ""),
        ("LBs written, most writes to one LB", f"{len(result.writes_by_lb)}, {most_per_lb}",
         "" if single else "<= 1 write per affected LB"),
        ("429 answers", f"{result.throttled:,}", ""),
        ("delivery held", held_text, "p99 < 3 s, max < 30 s (Event Grid's window)"),
        ("last event -> converged",
         f"did not converge in {scale.timeout:g} s" if seconds is None else f"{seconds:.1f} s",
         f"<= {quiet + 2 * operation:g} s (quiet {quiet:g} s + 2 operations)" if single else "<= 25 s"),
        ("lost (missing / stale)", f"{result.lost} ({result.missing} / {result.stale})", "0"),
        ("hand-added addresses removed", str(result.hand_added_lost), "0"),
        ("deliveries failed (by throttling / past 30 s)",
         f"{result.failed} ({result.failed_by_throttling} / {result.late}), "
         f"{result.redeliveries} redelivered, "
         f"{result.gave_up} given up", "0 by throttling"),
    ]
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="2,000 VMs, 4 LBs, 100 + 100 burst, 0.5 s operations")
    defaults = FULL
    for name, kind in (("vms", int), ("lbs", int), ("creates", int), ("deletes", int),
                       ("burst_seconds", float), ("operation_seconds", float), ("lro_retry_after", int),
                       ("instances", int), ("concurrency", int), ("timeout", float), ("sweep_period", float)):
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=None,
                            help=f"default {getattr(defaults, name)} (quick: {getattr(QUICK, name)})")
    parser.add_argument("--cases", default="create,delete,burst",
                        help="comma-separated: create, delete, burst")
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    overrides = {name: value for name, value in vars(args).items()
                 if value is not None and name not in ("quick", "cases")}
    try:
        scale = Scale(**{**base.__dict__, **overrides})
        cases = tuple(name.strip() for name in args.cases.split(",") if name.strip())
        unknown = set(cases) - {"create", "delete", "burst"}
        if unknown or not cases:
            raise ValueError(f"--cases: unknown {sorted(unknown)}; choose from create, delete, burst")
    except ValueError as error:
        parser.error(str(error))
    result = measure(scale, cases)
    print(f"{scale.vms:,} VMs, {scale.lbs} LBs, operation {scale.operation_seconds:g} s, "
          f"{scale.instances} instances x {scale.concurrency} invocations; emulator {result.emulator}; "
          f"seeded in {result.seeded_seconds:.1f} s")
    quiet = quiet_seconds(result.settings)
    for case in result.cases:
        print(f"\n{case.case}")
        for figure, value, target in figure_rows(case, scale, quiet):
            print(f"  {figure:<48} {value:<52} {('target ' + target) if target else ''}".rstrip())
        for message in case.errors[:3]:
            print(f"  error: {message}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
