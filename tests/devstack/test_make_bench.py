"""`make bench` (python -m bench) measures the benchmarks in one run and prints them as one table.
Only the shape is checked here; the figures themselves are for people to read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prints_one_table_with_every_benchmark() -> None:
    # --jobs: the sections side by side; the figures are not checked here, so disturbing them is harmless.
    completed = subprocess.run([sys.executable, "-m", "bench", "--quick", "--jobs", "4"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert lines[0].split() == ["benchmark", "case", "figure", "value"]
    assert set(lines[1].replace(" ", "")) == {"-"}  # one header, one table
    benchmarks = {line.split("  ")[0] for line in lines[2:] if line and not line.startswith(" ")}
    assert benchmarks == {"event burst", "audit scale", "membership", "azure scale", "scale sets"}
    body = "\n".join(lines[2:])
    for figure in ("pool writes", "addresses lost", "ARM calls (GETs / writes)", "peak RSS MB",
                   "ipconfigs per second"):
        assert figure in body
    assert ", poolsync" in body and ", naive" in body  # the comparison, measured in the same run

    azure_cases = _rows_by_case(lines[2:], "azure scale")
    assert [case.split(" (")[0] for case in azure_cases] == [
        "one VM-create event", "one VM-delete event", "burst of 100 creates + 100 deletes"]
    for case, rows in azure_cases.items():
        for figure in AZURE_FIGURES:
            assert any(figure in row for row in rows), (case, figure, rows)
        assert any("; target " in row for row in rows), rows  # the targets stand beside the figures
    scale_set_cases = _rows_by_case(lines[2:], "scale sets")
    assert [case.split(" (")[0] for case in scale_set_cases] == ["scale-out 0 -> 200", "scale-in 200 -> 20"]
    for rows in scale_set_cases.values():
        assert any("pool holds exactly the instances" in row and "; target " in row for row in rows), rows


AZURE_FIGURES = ("ARM reads (pool GETs / LRO polls / other)", "ARM writes (pool PUTs)", "429 answers",
                 "delivery held", "last event -> converged", "lost (missing / stale)",
                 "deliveries failed (by throttling / past 30 s)")


def _rows_by_case(rows: list[str], benchmark: str) -> dict[str, list[str]]:
    """The table names a case on its first row only; later rows of the case leave both columns blank."""
    cases: dict[str, list[str]] = {}
    current = None
    for row in rows:
        if not row.startswith(" "):
            columns = [column.strip() for column in row.split("  ") if column.strip()]
            current = columns[1] if columns[0] == benchmark else None
        if current is not None:
            cases.setdefault(current, []).append(row)
    return cases
