"""The audit report: JSON with a versioned schema (report.schema.json) and a self-contained HTML page.

Both are pure renderings of an `AuditResult` plus the run's facts, so the HTTP API, the timer and the
blob copy carry exactly the same content. The HTML page has no external assets (inline CSS, no script).
"""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from shared.app.reconciler import PoolOutcome
from shared.core.audit_findings import CATALOGUE, SEVERITIES, AuditResult, Finding

SCHEMA_VERSION = 1
REPORT_KIND = "poolsync.audit"
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
CATEGORIES = ("drift", "platform", "unmanaged", "rules")

COVERAGE_NOTES = (
    "Application gateways and container groups have no NICs poolsync can list: their addresses are "
    "recognised only through their subnet (applicationGatewayIPConfigurations, or a delegation to "
    "Microsoft.ContainerInstance/containerGroups); otherwise they are reported as pointing at nothing.",
    "Azure does not record when adminState changed: ages of Down entries count from when poolsync "
    "drained them, or else from the first audit that saw them Down (a lower bound).",
)


@dataclass(frozen=True)
class RunFacts:
    run_id: str
    started: datetime
    finished: datetime
    remediate: bool
    subscriptions: Sequence[str]
    counts: Mapping[str, int]  # networkInterfaces, virtualMachines, loadBalancers, virtualNetworks
    drain_max_age_seconds: int
    artifacts: Mapping[str, str]
    notes: Sequence[str] = ()


def finding_json(finding: Finding, remediation: str | None = None) -> dict[str, Any]:
    return {
        "code": finding.code,
        "category": finding.category,
        "severity": finding.severity,
        "pool": finding.pool,
        "address": finding.address,
        "ip": finding.ip,
        "rule": finding.rule,
        "message": finding.message,
        "evidence": dict(finding.evidence),
        "fix": finding.fix,
        "remediable": finding.remediable,
        "remediation": remediation,
    }


def outcome_json(outcome: PoolOutcome) -> dict[str, Any]:
    out = outcome.as_dict()
    changes: dict[str, list[dict[str, Any]]] = {"added": [], "removed": [], "readdressed": []}
    if outcome.status == "written" and outcome.plan is not None:
        changes["added"] = [{"name": a.name, "ip": a.ip_address} for a in outcome.plan.adds]
        changes["removed"] = [{"name": r.name, "ip": r.ip_address} for r in outcome.plan.removes]
        changes["readdressed"] = [
            {"name": c.after.name, "ip": c.after.ip_address, "previousIp": c.before.ip_address}
            for c in outcome.plan.readdresses
        ]
    out["changes"] = changes
    return out


def build_report(result: AuditResult, run: RunFacts, outcomes: Iterable[PoolOutcome] = ()) -> dict[str, Any]:
    outcome_list = list(outcomes)
    status_by_pool = {outcome.pool_id.lower(): outcome.status for outcome in outcome_list}
    findings = [
        finding_json(f, status_by_pool.get((f.pool or "").lower()) if f.remediable else None)
        for f in result.findings
    ]
    per_pool = Counter((f.pool or "").lower() for f in result.findings)
    pools = [
        {
            "id": pool.pool_id,
            "loadBalancer": pool.lb_id,
            "exists": pool.exists,
            "sku": pool.sku,
            "addresses": pool.addresses,
            "managed": pool.managed,
            "unmanaged": pool.unmanaged,
            "nicMembers": pool.nic_members,
            "selected": pool.selected,
            "blocked": pool.blocked,
            "syncMode": pool.sync_mode,
            "provisioningState": pool.provisioning_state,
            "findings": per_pool[pool.pool_id.lower()],
            "plan": pool.plan.summary() if pool.plan is not None else None,
        }
        for pool in result.pools
    ]
    severities = Counter(f.severity for f in result.findings)
    categories = Counter(f.category for f in result.findings)
    return {
        "schemaVersion": SCHEMA_VERSION,
        "kind": REPORT_KIND,
        "runId": run.run_id,
        "startedAt": run.started.isoformat(),
        "finishedAt": run.finished.isoformat(),
        "durationSeconds": round(max(0.0, (run.finished - run.started).total_seconds()), 3),
        "mode": "remediate" if run.remediate else "read-only",
        "summary": {
            "pools": len(result.pools),
            "poolsMissing": sum(1 for pool in result.pools if not pool.exists),
            "findings": len(result.findings),
            "bySeverity": {severity: severities[severity] for severity in SEVERITIES},
            "byCategory": {category: categories[category] for category in CATEGORIES},
            "byCode": dict(sorted(Counter(f.code for f in result.findings).items())),
            "remediable": sum(1 for f in result.findings if f.remediable),
            "poolsChanged": sum(1 for outcome in outcome_list if outcome.status == "written"),
        },
        "inputs": {
            "subscriptions": sorted(run.subscriptions),
            "networkInterfaces": run.counts.get("networkInterfaces", 0),
            "virtualMachines": run.counts.get("virtualMachines", 0),
            "loadBalancers": run.counts.get("loadBalancers", 0),
            "virtualNetworks": run.counts.get("virtualNetworks", 0),
            "drainMaxAgeSeconds": run.drain_max_age_seconds,
        },
        "pools": pools,
        "findings": findings,
        "remediation": {"enabled": run.remediate, "outcomes": [outcome_json(o) for o in outcome_list]},
        "notes": [*COVERAGE_NOTES, *run.notes],
        "artifacts": dict(run.artifacts),
    }


@cache
def report_schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def validate_report(report: Mapping[str, Any]) -> None:
    """Raise jsonschema.ValidationError when `report` does not follow the schema."""
    jsonschema.Draft202012Validator(report_schema()).validate(report)


def log_summary(report: Mapping[str, Any]) -> str:
    """One line for the function log."""
    summary = report["summary"]
    severity = ", ".join(f"{count} {name}" for name, count in summary["bySeverity"].items())
    codes = ", ".join(f"{code}={count}" for code, count in summary["byCode"].items()) or "none"
    text = (
        f"audit {report['runId']} ({report['mode']}): {summary['pools']} pools, "
        f"{summary['findings']} findings ({severity}); by code: {codes}"
    )
    if report["remediation"]["enabled"]:
        text += f"; remediation wrote {summary['poolsChanged']} pool(s)"
    return text


# --- HTML --------------------------------------------------------------------------------------------

_CSS = """
body{font-family:Segoe UI,Helvetica,Arial,sans-serif;margin:2em;color:#1b1b1b}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:2em}h3{font-size:1em;word-break:break-all}
table{border-collapse:collapse;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;vertical-align:top;font-size:.9em}
th{background:#f3f3f3}
code{font-size:.85em;word-break:break-all}
tr.sev-error td:first-child,td.sev-error{background:#fde7e9;color:#a4262c;font-weight:600}
tr.sev-warning td:first-child,td.sev-warning{background:#fff4ce;color:#8a5a00;font-weight:600}
tr.sev-info td:first-child,td.sev-info{background:#e5f1fb;color:#005a9e;font-weight:600}
.muted{color:#666}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _findings_table(findings: Sequence[Mapping[str, Any]]) -> str:
    if not findings:
        return '<p class="muted">No findings.</p>'
    rows = []
    for f in findings:
        evidence = json.dumps(f["evidence"], sort_keys=True)
        remediation = f" ({_e(f['remediation'])})" if f["remediation"] else ""
        rows.append(
            f'<tr class="sev-{_e(f["severity"])}" data-code="{_e(f["code"])}">'
            f"<td>{_e(f['severity'])}</td><td>{_e(f['code'])}</td>"
            f"<td>{_e(f['address'] or f['rule'] or '')}</td><td>{_e(f['ip'] or '')}</td>"
            f"<td>{_e(f['message'])}</td><td>{_e(f['fix'])}"
            f"{' <em>remediable</em>' if f['remediable'] else ''}{remediation}</td>"
            f"<td><code>{_e(evidence)}</code></td></tr>"
        )
    return (
        "<table><thead><tr><th>Severity</th><th>Finding</th><th>Address / rule</th><th>IP</th><th>What</th>"
        "<th>Fix</th><th>Evidence</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def render_html(report: Mapping[str, Any]) -> str:
    summary = report["summary"]
    counts = [
        ("pools", "Managed pools", summary["pools"]),
        ("poolsMissing", "Pools missing", summary["poolsMissing"]),
        ("findings", "Findings", summary["findings"]),
        *((severity, severity.capitalize(), summary["bySeverity"][severity]) for severity in SEVERITIES),
        ("remediable", "Remediable", summary["remediable"]),
        ("poolsChanged", "Pools changed", summary["poolsChanged"]),
    ]
    count_rows = "".join(
        f'<tr><th>{_e(label)}</th><td class="{"sev-" + key if key in SEVERITIES else "count"}" '
        f'data-count="{_e(key)}">{value}</td></tr>'
        for key, label, value in counts
    )
    code_rows = "".join(
        f'<tr><td class="sev-{_e(CATALOGUE[code][1]) if code in CATALOGUE else "info"}">{_e(code)}</td>'
        f'<td data-code-count="{_e(code)}">{count}</td></tr>'
        for code, count in summary["byCode"].items()
    )
    by_pool: dict[str, list[Mapping[str, Any]]] = {}
    for finding in report["findings"]:
        by_pool.setdefault((finding["pool"] or "").lower(), []).append(finding)
    sections = []
    for pool in report["pools"]:
        pool_findings = by_pool.pop(pool["id"].lower(), [])
        state = "missing" if not pool["exists"] else ("blocked" if pool["blocked"] else "writable")
        facts = (
            f'{pool["addresses"]} addresses ({pool["managed"]} managed, {pool["unmanaged"]} unmanaged), '
            f'{pool["nicMembers"]} NIC-based members, {pool["selected"]} selected by the rules; '
            f'SKU {_e(pool["sku"] or "unknown")}; {state}'
        )
        sections.append(
            f'<section class="pool" data-pool="{_e(pool["id"])}" data-findings="{len(pool_findings)}">'
            f'<h3>{_e(pool["id"])}</h3><p class="muted">{facts}</p>{_findings_table(pool_findings)}</section>'
        )
    other = [finding for findings in by_pool.values() for finding in findings]
    if other:
        sections.append(
            f'<section class="pool" data-pool="" data-findings="{len(other)}"><h3>Rules and other pools</h3>'
            f"{_findings_table(other)}</section>"
        )
    outcome_rows = "".join(
        f'<tr data-pool="{_e(o["pool"])}"><td>{_e(o["pool"])}</td><td>{_e(o["status"])}</td>'
        f'<td><pre>{_e(o["diff"])}</pre></td><td>{_e(o["detail"])}</td></tr>'
        for o in report["remediation"]["outcomes"]
    )
    remediation = (
        "<table><thead><tr><th>Pool</th><th>Status</th><th>Changes</th><th>Detail</th></tr></thead>"
        f"<tbody>{outcome_rows}</tbody></table>"
        if report["remediation"]["enabled"]
        else '<p class="muted">Read-only run: nothing was changed.</p>'
    )
    notes = "".join(f"<li>{_e(note)}</li>" for note in report["notes"])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>poolsync audit {_e(report['runId'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>poolsync compliance audit</h1>"
        f'<p>Run <code>{_e(report["runId"])}</code>, {_e(report["startedAt"])} '
        f'to {_e(report["finishedAt"])}, '
        f'mode <strong>{_e(report["mode"])}</strong>, schema version {_e(report["schemaVersion"])}.</p>'
        f'<h2>Summary</h2><table id="summary"><tbody>{count_rows}</tbody></table>'
        '<table id="by-code"><thead><tr><th>Finding</th><th>Count</th></tr></thead>'
        f"<tbody>{code_rows}</tbody></table>"
        f"<h2>Pools</h2>{''.join(sections)}"
        f"<h2>Remediation</h2>{remediation}"
        f"<h2>Notes</h2><ul>{notes}</ul>"
        "</body></html>\n"
    )
