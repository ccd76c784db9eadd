"""Structured telemetry: one log line per fact, plus OpenTelemetry metrics.

Every fact is logged as `poolsync.<event> <JSON>` - the alert rules and KQL in
docs/operations.md parse exactly that shape - and counted on an OpenTelemetry
meter. With APPLICATIONINSIGHTS_CONNECTION_STRING set, `configure()` installs the
Azure Monitor distro, which exports the metrics (the host ships the log lines); without it the meter
is a no-op and `COUNTS` still records totals for tests and the local host.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics

from shared import settings

log = logging.getLogger("poolsync")
_meter = metrics.get_meter("poolsync")
_counters: dict[str, Any] = {}
_latency = _meter.create_histogram("poolsync.event_latency", unit="ms",
                                   description="event time to pool converged")
_lock = threading.Lock()
_configure_lock = threading.Lock()
COUNTS: Counter[str] = Counter()  # event name -> occurrences in this process
_configured = False

# Fields that become metric attributes (low cardinality only: never ids or addresses).
_METRIC_ATTRIBUTES = ("outcome", "reason", "kind", "operation_kind")


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Install the Azure Monitor exporter once per process, when a connection string is configured.

    Safe to call from several imports or threads: the exporter is installed at most once. Logs stay
    with the Functions host, which already ships them to Application Insights as traces (the alerts
    read those); exporting them here as well would count every alerted line twice."""
    global _configured
    env = settings.app_settings(env)
    with _configure_lock:
        if _configured or not settings.APPINSIGHTS_CONNECTION.raw(env):
            return _configured
        from azure.monitor.opentelemetry import configure_azure_monitor

        # The exporter reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING itself (Entra ID ingestion).
        configure_azure_monitor(
            connection_string=env["APPLICATIONINSIGHTS_CONNECTION_STRING"], disable_logging=True
        )
        _configured = True
        return True


def _counter(event: str) -> Any:
    with _lock:
        if event not in _counters:
            _counters[event] = _meter.create_counter(f"poolsync.{event}")
        return _counters[event]


def emit(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log `poolsync.<event> {json}` and count it."""
    with _lock:
        COUNTS[event] += 1
    attributes = {key: str(fields[key]).split(":")[0] for key in _METRIC_ATTRIBUTES if key in fields}
    _counter(event).add(1, attributes)
    if event == "event_applied" and isinstance(fields.get("latency_ms"), (int, float)):
        _latency.record(fields["latency_ms"])
    log.log(level, "poolsync.%s %s", event, json.dumps(fields, default=str, sort_keys=True),
            extra={"poolsync_event": event})
