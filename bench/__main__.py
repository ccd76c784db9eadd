"""`make bench` = `python -m bench`: the benchmarks measured in one run, printed as ONE table.

- event burst: N VM-create events for one pool, poolsync (intents + one coalescing flusher per LB) against
  the naive read-modify-write handler (bench/burst.py);
- audit scale: the compliance audit over a large emulated estate, read-only and remediating
  (bench/audit_scale.py);
- membership: how fast the rules are evaluated over generated inventories (bench/membership.py);
- azure scale: the event path in an Azure-sized subscription under Azure's throttling - one create, one
  delete, a burst of creates and deletes over 20 LBs (bench/azure_scale.py); targets printed beside;
- scale sets: one Uniform scale set scaled out from 0 to 1,000 instances and in to 100, one event each, in
  the same world (bench/scale_sets.py); targets printed beside.

Each benchmark runs in its own child process (so peak memory is its own) through the functions its
module exposes; the figures come back as JSON and are printed together. Figures only, no pass/fail.

    python -m bench            # the full sizes (five minutes, plus up to ~25 for azure scale on 2 cores)
    python -m bench --quick    # small sizes, to see it work
    python -m bench --quick --jobs 4   # the sections at once: faster, figures disturbed (the test runs this)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Figure:
    benchmark: str
    case: str
    figure: str
    value: str


PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "burst": {"sizes": [50, 200, 1000], "duration": 10.0, "instances": 4, "concurrency": 8,
                  "operation_seconds": 1.0, "naive_timeout": 30.0},
        "audit": {"nics": 20000, "lbs": 50, "pools": 200, "page_size": 1000},
        "membership": {"nics": [10000, 100000], "rules": [100, 1000], "repeats": 3},
        "azure": {"preset": "full"},
        "scalesets": {"preset": "full"},
    },
    "quick": {
        "burst": {"sizes": [20], "duration": 2.0, "instances": 2, "concurrency": 4,
                  "operation_seconds": 0.2, "naive_timeout": 10.0},
        "audit": {"nics": 500, "lbs": 2, "pools": 4, "page_size": 100},
        "membership": {"nics": [2000], "rules": [50], "repeats": 1},
        "azure": {"preset": "quick"},
        "scalesets": {"preset": "quick"},
    },
}


# --- the sections (each runs in a child process) --------------------------------------------------

def burst_figures(sizes: list[int], duration: float, instances: int, concurrency: int,
                  operation_seconds: float, naive_timeout: float) -> list[Figure]:
    from bench.burst import NAIVE, POOLSYNC, bench_env, burst_topology, run_burst
    from devstack.azurite import Azurite
    from emulator import Emulator

    figures = []
    with tempfile.TemporaryDirectory(prefix="poolsync-bench-burst-") as scratch:
        azurite = Azurite(Path(scratch) / "azurite").start()
        arm = Emulator(profile="azure", state_dir=Path(scratch) / "arm",
                       operation_seconds=operation_seconds, page_size=1000).start()
        try:
            for size in sizes:
                for mode in (POOLSYNC, NAIVE):
                    arm.reset(burst_topology(0))
                    arm.operation_seconds = operation_seconds
                    settle = naive_timeout if mode == NAIVE else max(30.0, 10 * operation_seconds)
                    result = run_burst(arm, bench_env(arm, azurite.connection_string), size, mode=mode,
                                       instances=instances, duration=duration, concurrency=concurrency,
                                       settle_timeout=settle)
                    case = f"{size} events in {duration:g} s, {mode}"
                    seconds = result.seconds_to_converge
                    figures += [
                        Figure("event burst", case, "pool writes", str(result.pool_writes)),
                        Figure("event burst", case, "429 / 409 / 412 answers",
                               " / ".join(str(result.rejections[s]) for s in (429, 409, 412))),
                        Figure("event burst", case, "last event -> converged",
                               "not converged" if seconds is None
                               else f"{seconds:.1f} s ({seconds / operation_seconds:.1f} ARM ops)"),
                        Figure("event burst", case, "addresses lost",
                               f"{result.lost} ({result.overwritten} overwritten)"),
                    ]
        finally:
            arm.stop()
            azurite.stop()
    return figures


def audit_figures(nics: int, lbs: int, pools: int, page_size: int) -> list[Figure]:
    from bench.audit_scale import measure

    figures = []
    for run in measure(nics, lbs, pools, page_size).runs:
        case = f"{nics:,} NICs, {lbs} LBs, {pools} pools, {run.label}"
        figures += [
            Figure("audit scale", case, "seconds", f"{run.seconds:.1f}"),
            Figure("audit scale", case, "ARM calls (GETs / writes)",
                   f"{run.calls} ({run.gets} / {run.writes})"),
            Figure("audit scale", case, "findings", str(run.findings)),
            Figure("audit scale", case, "peak RSS MB", f"{run.peak_mb:.0f}"),
        ]
    return figures


def membership_figures(nics: list[int], rules: list[int], repeats: int) -> list[Figure]:
    import random

    from bench.membership import SEED, best_of, generate_inventory, generate_rules
    from shared.core.membership import compute_membership
    from shared.core.rules import parse_rules

    figures = []
    for nic_count in nics:
        inventory, ipconfigs = generate_inventory(nic_count, random.Random(SEED))
        for rule_count in rules:
            ruleset = parse_rules(generate_rules(rule_count, random.Random(SEED)), "bench")
            compute_membership(inventory, ruleset)  # builds and caches the index, as the app does
            seconds, desired = best_of(repeats, lambda: compute_membership(inventory, ruleset))  # noqa: B023
            case = f"{nic_count:,} NICs ({ipconfigs:,} ipconfigs) x {rule_count:,} rules"
            figures += [
                Figure("membership", case, "evaluation seconds", f"{seconds:.3f}"),
                Figure("membership", case, "ipconfigs per second", f"{ipconfigs / seconds:,.0f}"),
                Figure("membership", case, "desired addresses",
                       f"{sum(len(addresses) for addresses in desired.values()):,}"),
            ]
    return figures


def azure_figures(preset: str) -> list[Figure]:
    from bench.azure_scale import FULL, QUICK, figure_rows, measure, quiet_seconds

    scale = QUICK if preset == "quick" else FULL
    result = measure(scale)
    quiet = quiet_seconds(result.settings)
    world = f"{scale.vms:,} VMs, {scale.lbs} LBs, op {scale.operation_seconds:g} s"
    return [Figure("azure scale", f"{case.case} ({world})", figure,
                   f"{value}; target {target}" if target else value)
            for case in result.cases for figure, value, target in figure_rows(case, scale, quiet)]


def scale_set_figures(preset: str) -> list[Figure]:
    from bench.scale_sets import FULL, QUICK, figure_rows, measure

    sizes = QUICK if preset == "quick" else FULL
    results, quiet = measure(sizes)
    world = f"{sizes.vms:,} VMs beside it, op {sizes.operation_seconds:g} s"
    return [Figure("scale sets", f"{result.case} ({world})", figure, f"{value}; target {target}")
            for result in results for figure, value, target in figure_rows(result, sizes, quiet)]


SECTIONS: dict[str, tuple[str, Callable[..., list[Figure]]]] = {
    "burst": ("event burst: poolsync vs naive", burst_figures),
    "audit": ("audit scale", audit_figures),
    "membership": ("membership evaluation", membership_figures),
    "azure": ("azure scale: the event path under Azure's limits", azure_figures),
    "scalesets": ("scale sets: a Uniform set scaled out and in under Azure's limits", scale_set_figures),
}


# --- the parent: run each section in a child, print one table -------------------------------------

def run_section(name: str, preset: str) -> list[Figure]:
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        completed = subprocess.run(
            [sys.executable, "-m", "bench", "--section", name, "--preset", preset, "--json-out", out.name],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        if completed.returncode != 0:
            error = (completed.stderr.strip().splitlines() or ["no output"])[-1]
            return [Figure(SECTIONS[name][0].split(":")[0], "-", "error", error[:100])]
        return [Figure(**row) for row in json.loads(Path(out.name).read_text() or "[]")]


def render(figures: list[Figure]) -> str:
    headers = ("benchmark", "case", "figure", "value")
    rows = [(f.benchmark, f.case, f.figure, f.value) for f in figures]
    widths = [max(len(text) for text in column) for column in zip(headers, *rows, strict=False)]
    lines = ["  ".join(text.ljust(width) for text, width in zip(headers, widths, strict=True)).rstrip(),
             "  ".join("-" * width for width in widths)]
    previous: tuple[str, str] | None = None
    for row in rows:
        shown = list(row)
        if previous == row[:2]:  # one case, several figures: name it once
            shown[0] = shown[1] = ""
        previous = row[:2]
        lines.append("  ".join(text.ljust(width) for text, width in zip(shown, widths, strict=True)).rstrip())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (same as --preset quick)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="full")
    parser.add_argument("--only", choices=sorted(SECTIONS), action="append", help="run only these sections")
    parser.add_argument("--jobs", type=int, default=1,
                        help="sections measured at once (default 1; more is faster but disturbs the figures)")
    parser.add_argument("--section", choices=sorted(SECTIONS), help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--json-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    preset = "quick" if args.quick else args.preset

    if args.section:
        measured = SECTIONS[args.section][1](**PRESETS[preset][args.section])
        Path(args.json_out).write_text(json.dumps([asdict(f) for f in measured]))
        return 0

    def measure(name: str) -> list[Figure]:
        print(f"measuring {SECTIONS[name][0]} ({preset} sizes)...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        measured = run_section(name, preset)
        print(f"  {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
        return measured

    # Sections measured at once (--jobs > 1) disturb each other's figures: for seeing it work only.
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        figures = [figure for section in pool.map(measure, args.only or list(SECTIONS)) for figure in section]
    print(render(figures))
    return 0 if all(f.figure != "error" for f in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
