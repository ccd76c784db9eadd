"""`make bench` (python -m bench) measures the three benchmarks in one run and prints them as one table.
Only the shape is checked here; the figures themselves are for people to read."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prints_one_table_with_every_benchmark() -> None:
    completed = subprocess.run([sys.executable, "-m", "bench", "--quick"], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=900)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.strip().splitlines()
    assert lines[0].split() == ["benchmark", "case", "figure", "value"]
    assert set(lines[1].replace(" ", "")) == {"-"}  # one header, one table
    benchmarks = {line.split("  ")[0] for line in lines[2:] if line and not line.startswith(" ")}
    assert benchmarks == {"event burst", "audit scale", "membership"}
    body = "\n".join(lines[2:])
    for figure in ("pool writes", "addresses lost", "ARM calls (GETs / writes)", "peak RSS MB",
                   "ipconfigs per second"):
        assert figure in body
    assert ", poolsync" in body and ", naive" in body  # the comparison, measured in the same run
