"""The telemetry contract: `poolsync.<event> {json}` lines that docs/operations.md and the alerts parse."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest

from shared import telemetry

ROOT = Path(__file__).resolve().parents[2]


def test_emit_logs_one_parsable_line_and_counts_it(caplog: pytest.LogCaptureFixture) -> None:
    before = telemetry.COUNTS["guard_refused"]
    with caplog.at_level(logging.INFO, logger="poolsync"):
        telemetry.emit("guard_refused", logging.WARNING, pool="/subscriptions/x/pool", removes=7,
                       reason="would remove 7 of 10")
    [record] = [r for r in caplog.records if r.getMessage().startswith("poolsync.guard_refused ")]
    event, _, payload = record.getMessage().partition(" ")
    assert event == "poolsync.guard_refused"
    expected = {"pool": "/subscriptions/x/pool", "removes": 7, "reason": "would remove 7 of 10"}
    assert json.loads(payload) == expected
    assert record.levelno == logging.WARNING
    assert telemetry.COUNTS["guard_refused"] == before + 1


def test_every_emitted_event_is_documented_for_operators() -> None:
    """An event the code emits but the operations guide does not describe is invisible to on-call."""
    sources = [p.read_text() for folder in ("shared", "handlers") for p in (ROOT / folder).glob("*.py")]
    emitted = {name for text in sources for name in re.findall(r'emit\(\s*"([a-z_]+)"', text)}
    documented = set(re.findall(r"`poolsync\.([a-z_]+)`", (ROOT / "docs" / "operations.md").read_text()))
    assert emitted, "no telemetry found: the pattern no longer matches the code"
    assert emitted <= documented, f"undocumented telemetry events: {sorted(emitted - documented)}"


def test_configure_is_a_no_op_without_a_connection_string() -> None:
    assert telemetry.configure({}) is False
