"""Structured telemetry: one log line per fact, plus OpenTelemetry metrics.

Every fact is logged as `poolsync.<event> <JSON>` - the alert rules and KQL in
docs/operations.md parse exactly that shape - and counted on an OpenTelemetry
meter. With APPLICATIONINSIGHTS_CONNECTION_STRING set, `configure()` installs the
Azure Monitor distro, which exports the metrics (the host ships the log lines); without it the meter
is a no-op and `COUNTS` still records totals for tests and the local host.

The Functions host runs with `"telemetryMode": "OpenTelemetry"` (host.json): it exports its own logs and
the worker's log lines it forwards, each tagged with the invocation's trace, so host and worker lines
correlate. The worker's part is the documented `configure_azure_monitor()` call, limited to what the
dashboards and alerts read.
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

# What the worker exports: poolsync's metrics (customMetrics), nothing else. The alerts and the workbook read
# the traces table, which the host fills with the worker's lines: a second copy from the worker would double
# every alert count. Worker spans, live metrics and performance counters are read by nothing poolsync ships.
EXPORT_OPTIONS: dict[str, Any] = {
    "disable_logging": True,
    "disable_tracing": True,
    "enable_live_metrics": False,
    "enable_performance_counters": False,
    # Without a tracer these would only make spans nobody records.
    "instrumentation_options": {name: {"enabled": False} for name in ("azure_sdk", "requests", "urllib",
                                                                      "urllib3")},
}
# azure-monitor-opentelemetry 1.8 overwrites its disable_logging / disable_tracing arguments with what these
# OpenTelemetry settings say (absent = enabled), so they are set too unless the deployment chose otherwise.
EXPORTERS_OFF = {"OTEL_LOGS_EXPORTER": "none", "OTEL_TRACES_EXPORTER": "none"}


def configure(env: Mapping[str, str] | None = None) -> bool:
    """Install the Azure Monitor exporter once per process, when a connection string is configured.

    Safe to call from several imports or threads: the exporter is installed at most once. Logs stay
    with the Functions host, which already ships them to Application Insights as traces (the alerts
    read those); exporting them here as well would count every alerted line twice. See EXPORT_OPTIONS."""
    global _configured
    env = settings.app_settings(env)
    with _configure_lock:
        if _configured or not settings.APPINSIGHTS_CONNECTION.raw(env):
            return _configured
        from azure.monitor.opentelemetry import configure_azure_monitor

        # The exporter reads APPLICATIONINSIGHTS_AUTHENTICATION_STRING itself (Entra ID ingestion).
        settings.default_library_settings(EXPORTERS_OFF)
        connection = env["APPLICATIONINSIGHTS_CONNECTION_STRING"]
        configure_azure_monitor(connection_string=connection, **EXPORT_OPTIONS)
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
