"""The telemetry contract: `poolsync.<event> {json}` lines that docs/operations.md and the alerts parse."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from shared import telemetry
from tests.api.test_auth_and_health import broken_configuration  # noqa: F401  (fixture: rules that fail)

ROOT = Path(__file__).resolve().parents[1]


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


# Runs in a fresh interpreter: importing function_app must install the exporter exactly once, even
# when configure() is called again later (several modules, several threads). The distro's entry
# point is replaced by a recorder so nothing leaves the machine.
_STARTUP_PROBE = """
import json, sys, threading
import azure.monitor.opentelemetry as distro
calls = []
distro.configure_azure_monitor = lambda **kwargs: calls.append(kwargs)
import function_app
from shared import telemetry
after_import = len(calls)
threads = [threading.Thread(target=telemetry.configure) for _ in range(8)]
for thread in threads: thread.start()
for thread in threads: thread.join()
print(json.dumps({"after_import": after_import, "calls": calls, "again": telemetry.configure()}))
"""


def _start_app(env_extra: dict[str, str]) -> dict:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")}
    env.update(env_extra)
    done = subprocess.run([sys.executable, "-c", _STARTUP_PROBE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_app_start_up_installs_the_exporter_once_when_a_connection_string_is_set() -> None:
    connection = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://127.0.0.1:9/"
    result = _start_app({"APPLICATIONINSIGHTS_CONNECTION_STRING": connection})
    assert result["after_import"] == 1, "function_app did not configure telemetry at start-up"
    [call] = result["calls"]
    assert call["connection_string"] == connection
    # The host already ships the log lines; exporting them too would double every alert count.
    assert call["disable_logging"] is True
    assert result["again"] is True


# The real distro, in a fresh interpreter: what configure() leaves installed is what the worker exports.
# Nothing leaves the machine: the ingestion endpoint is a closed local port and nothing is flushed.
_EXPORT_PROBE = """
import json, logging
from opentelemetry import metrics, trace
from azure.monitor.opentelemetry.exporter import AzureMonitorMetricExporter
from azure.monitor.opentelemetry.exporter._quickpulse._state import is_quickpulse_enabled
from shared import telemetry
assert telemetry.configure() is True
provider = metrics.get_meter_provider()
readers = list(provider._measurement_consumer._reader_storages)  # this provider's, not statsbeat's
print(json.dumps({
    "tracer_provider": type(trace.get_tracer_provider()).__module__,
    "root_handlers": [type(h).__module__ for h in logging.getLogger().handlers],
    "meters": sorted(m.name for m in provider._meters.values()),
    "metric_exporters": [type(getattr(r, "_exporter", None)).__name__ for r in readers],
    "live_metrics": is_quickpulse_enabled(),
}))
import os; os._exit(0)
"""


def _exported(tmp_path: Path, env_extra: dict[str, str] | None = None) -> dict[str, Any]:
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLICATIONINSIGHTS_", "OTEL_"))}
    connection = ("InstrumentationKey=00000000-0000-0000-0000-000000000000;"
                  "IngestionEndpoint=http://127.0.0.1:9/;LiveEndpoint=http://127.0.0.1:9/")
    env.update({"TMPDIR": str(tmp_path), **(env_extra or {})})
    env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = connection
    done = subprocess.run([sys.executable, "-c", _EXPORT_PROBE], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_worker_exports_its_metrics_and_nothing_the_dashboards_do_not_read(tmp_path: Path) -> None:
    exported = _exported(tmp_path)
    assert exported["metric_exporters"] == ["AzureMonitorMetricExporter"]  # poolsync.* -> customMetrics
    # No second copy of the log lines (the host exports them), no worker spans, no live metrics, no
    # performance counters: the distro's defaults turn all of these on.
    assert not [module for module in exported["root_handlers"] if module.startswith("opentelemetry")]
    assert exported["tracer_provider"] == "opentelemetry.trace"  # the API's proxy: no SDK tracer installed
    assert exported["live_metrics"] is False
    assert not [meter for meter in exported["meters"] if "performance_counters" in meter]


def test_a_deployment_may_still_choose_to_export_worker_spans(tmp_path: Path) -> None:
    """The exporter settings are defaults, not overrides: an operator may set one (to trace a problem)."""
    exported = _exported(tmp_path, {"OTEL_TRACES_EXPORTER": "azure_monitor_opentelemetry_exporter"})
    assert exported["tracer_provider"] == "opentelemetry.sdk.trace"
    assert not [module for module in exported["root_handlers"] if module.startswith("opentelemetry")]


def test_host_and_worker_telemetry_use_the_documented_opentelemetry_mode() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["telemetryMode"] == "OpenTelemetry"


def test_app_start_up_exports_nothing_without_a_connection_string() -> None:
    result = _start_app({})
    assert result == {"after_import": 0, "calls": [], "again": False}


# --- failed HTTP answers are logged ---------------------------------------------------------------

SECRET = "s3cret-function-key"


def _http_functions() -> dict[str, Any]:
    import azure.functions as func

    from handlers import http_api

    app = func.FunctionApp()
    app.register_functions(http_api.bp)
    return {f.get_function_name(): f.get_user_function() for f in app.get_functions()}


def _request(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Any:
    import azure.functions as func

    return func.HttpRequest(method=method, url=url, body=body, params={"code": SECRET},
                            headers={"content-type": "application/json", **(headers or {})})


def _failure_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("poolsync.http_failed ")]
    return [json.loads(line.partition(" ")[2]) for line in lines]


@pytest.mark.parametrize(
    ("function", "method", "body", "status", "code"),
    [
        ("http_list_pools", "GET", b"", 503, "ConfigurationError"),
        ("http_reconcile", "POST", b'{"x": "' + b"a" * 300_000 + b'"}', 413, "PayloadTooLarge"),
        ("http_health", "GET", b"", 503, "configuration"),
    ],
)
@pytest.mark.usefixtures("broken_configuration")
def test_every_failed_answer_logs_one_line_without_body_or_key(
    caplog: pytest.LogCaptureFixture, function: str, method: str, body: bytes,
    status: int, code: str,
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    request = _request(method, f"http://localhost/api/x?code={SECRET}", body + SECRET.encode(),
                       {"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01", "x-functions-key": SECRET})
    with caplog.at_level(logging.INFO, logger="poolsync"):
        response = _http_functions()[function](request)
    assert response.status_code == status
    [line] = _failure_lines(caplog)
    route = {"http_list_pools": "pools", "http_reconcile": "reconcile", "http_health": "health"}[function]
    expected = {"route": route, "method": method, "status": status, "code": code, "operation_id": trace_id}
    assert line == expected
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in everything
    assert '"x": "aaa' not in everything  # no request body


@pytest.mark.usefixtures("broken_configuration")
def test_a_forged_traceparent_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    forged = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\npoolsync.guard_overridden {}"
    with caplog.at_level(logging.INFO, logger="poolsync"):
        request = _request("GET", "http://localhost/api/pools", headers={"traceparent": forged})
        _http_functions()["http_list_pools"](request)
    [line] = _failure_lines(caplog)
    assert line["operation_id"] is None  # not a valid traceparent: not trusted as an id
    assert not [r for r in caplog.records if "\n" in r.getMessage() and r.name == "poolsync"]


def test_successful_answers_log_no_failure_line(caplog: pytest.LogCaptureFixture) -> None:
    from handlers import http_api
    from shared.api.operations import ApiResponse

    with caplog.at_level(logging.INFO, logger="poolsync"):
        for status in (200, 202, 399):
            request = _request("GET", "http://localhost/api/pools")
            http_api.log_failure("pools", request, ApiResponse(status, {}))
        http_api.log_failure("pools", _request("GET", "http://localhost/api/pools"), ApiResponse(404, {}))
    assert [line["status"] for line in _failure_lines(caplog)] == [404]
