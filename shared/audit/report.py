"""The audit report: JSON with a versioned schema (report.schema.json) and a self-contained HTML page.

Both are pure renderings of an `AuditResult` plus the run's facts, so the HTTP API, the timer and the
blob copy carry exactly the same content. The HTML page has no external assets (inline CSS, no script).
"""

from __future__ import annotations

import html
import json
import shlex
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from shared.app.outcomes import PoolOutcome
from shared.core.audit_model import CATALOGUE, SEVERITIES, AuditResult, Finding, PoolAudit
from shared.core.naming import PREFIX

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


APPLY_FIXES = frozenset({"pool_provisioning_failed"})  # a re-PUT fixes it, whatever the plan
REMOVE_FIXES = frozenset({"unmanaged_orphan", "non_vm_backend", "address_outside_vnet"})


def short_names(pool_ids: Iterable[str]) -> dict[str, str]:
    """pool id (lower) -> `<load balancer>/<pool>` where that is unique, else the id: what the CLI accepts."""
    ids = list(pool_ids)
    short = {pool_id.lower(): "/".join(pool_id.split("/")[-3::2]) for pool_id in ids}
    counts = Counter(name.lower() for name in short.values())
    return {key: name if counts[name.lower()] == 1 else pool_id for (key, name), pool_id in zip(
        short.items(), ids, strict=True)}


def fix_command(finding: Mapping[str, Any], names: Mapping[str, str]) -> str | None:
    """The `poolsync` command that fixes a finding, when one does (the others need a change in Azure)."""
    pool = names.get((finding.get("pool") or "").lower())
    if pool is None:
        return None
    pool = shlex.quote(pool)
    address = shlex.quote(finding["address"]) if finding.get("address") else None
    if finding["remediable"] or finding["code"] in APPLY_FIXES:
        return f"poolsync apply {pool}"
    if finding["code"] == "drain_overdue" and address:
        return f"poolsync enable {pool} {address}"
    if finding["code"] in REMOVE_FIXES and address and not finding["address"].startswith(PREFIX):
        return f"poolsync remove {pool} {address}"
    return None


def members_json(pool: PoolAudit) -> list[dict[str, Any]]:
    return [{"name": m.name, "ip": m.ip, "adminState": m.admin_state, "managed": m.managed,
             "owner": m.owner_kind, "vm": m.vm_id} for m in pool.members]


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
    names = short_names(pool.pool_id for pool in result.pools)
    for finding in findings:
        finding["command"] = fix_command(finding, names)
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
            "members": members_json(pool),
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
# Written for the on-call engineer: the verdict first, then per pool what is wrong and the command that
# fixes it, then who is in the pool. Short names everywhere, the full ids one hover (or click) away.

_CSS = """
body{font-family:Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em 2em;color:#1b1b1b;max-width:80em}
h1{font-size:1.4em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em}
h3{font-size:1.05em;margin:1.4em 0 .2em}h3 .muted{font-weight:normal;font-size:.85em}
table{border-collapse:collapse;margin:.4em 0 .8em}
th,td{border:1px solid #d0d0d0;padding:.25em .55em;text-align:left;vertical-align:top;font-size:.88em}
th{background:#f3f3f3}
code{font-size:.9em;background:#f6f6f6;padding:0 .2em}
.verdict{font-size:1.05em;padding:.6em .9em;border-radius:4px;margin:.6em 0}
.verdict.ok{background:#dff6dd;color:#0b5a08}.verdict.warning{background:#fff4ce;color:#5c3c00}
.verdict.error{background:#fde7e9;color:#a4262c}
tr.sev-error td:first-child,td.sev-error{background:#fde7e9;color:#a4262c;font-weight:600}
tr.sev-warning td:first-child,td.sev-warning{background:#fff4ce;color:#8a5a00;font-weight:600}
tr.sev-info td:first-child,td.sev-info{background:#e5f1fb;color:#005a9e;font-weight:600}
tr.down td{background:#fff4ce}
.muted{color:#666}.small{font-size:.85em}
details summary{cursor:pointer;color:#005a9e}
#summary td,#by-code td{text-align:right}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _short(resource_id: str | None) -> str:
    """The last name of a resource id (`web-1`), or `lb/pool` for a pool."""
    if not resource_id:
        return ""
    parts = resource_id.strip("/").split("/")
    if len(parts) >= 10 and parts[-2].lower() == "backendaddresspools":
        return f"{parts[-3]}/{parts[-1]}"
    return parts[-1]


def _id_ref(resource_id: str | None) -> str:
    """A short name with its full id on hover."""
    if not resource_id:
        return ""
    return f'<span title="{_e(resource_id)}">{_e(_short(resource_id))}</span>'


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s"


def _when(stamp: str) -> str:
    """`2026-12-06 00:05 UTC` from an ISO time (seconds and microseconds are noise here)."""
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    offset = moment.utcoffset()
    zone = " UTC" if offset is not None and not offset.total_seconds() else ""
    return f"{moment:%Y-%m-%d %H:%M}{zone}"


def _findings_table(findings: Sequence[Mapping[str, Any]]) -> str:
    if not findings:
        return '<p class="muted">No findings.</p>'
    rows = []
    for f in findings:
        remediation = f" ({_e(f['remediation'])})" if f["remediation"] else ""
        command = f.get("command")
        fix = f"<code>{_e(command)}</code>" if command else _e(f["fix"])
        detail = "" if not command else f'<div class="muted small">{_e(f["fix"])}</div>'
        evidence = json.dumps(f["evidence"], sort_keys=True, indent=1)
        rows.append(
            f'<tr class="sev-{_e(f["severity"])}" data-code="{_e(f["code"])}">'
            f"<td>{_e(f['severity'])}</td><td>{_e(f['code'])}</td>"
            f"<td>{_e(f['address'] or f['rule'] or '')}"
            f"<div class=\"muted small\">{_e(f['ip'] or '')}</div></td>"
            f"<td>{_e(f['message'])}{remediation}</td><td>{fix}{detail}</td>"
            f"<td><details><summary>show</summary><pre class=\"small\">{_e(evidence)}</pre>"
            "</details></td></tr>"
        )
    return (
        "<table><thead><tr><th>Severity</th><th>Finding</th><th>Address</th><th>What</th>"
        "<th>Fix</th><th>Evidence</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


MEMBERS_SHOWN_OPEN = 50  # a larger pool's members fold away (one click), so the findings stay in view


def _members_table(members: Sequence[Mapping[str, Any]]) -> str:
    if not members:
        return '<p class="muted">No members.</p>'
    rows = "".join(
        f'<tr class="{"down" if m["adminState"] == "Down" else ""}" data-member="{_e(m["name"])}">'
        f"<td>{_e(m['name'])}</td><td>{_e(m['ip'])}</td><td>{_id_ref(m['vm']) or _e(m['owner'])}</td>"
        f"<td>{_e(m['adminState'] or 'None')}</td><td>{'poolsync' if m['managed'] else 'by hand'}</td></tr>"
        for m in members
    )
    opened = " open" if len(members) <= MEMBERS_SHOWN_OPEN else ""
    return (f"<details{opened}><summary>{len(members)} members</summary>"
            "<table><thead><tr><th>Name</th><th>IP</th><th>VM</th>"
            f"<th>Admin state</th><th>Added</th></tr></thead><tbody>{rows}</tbody></table></details>")


def _verdict(summary: Mapping[str, Any]) -> str:
    by = summary["bySeverity"]
    if not summary["findings"]:
        return f'<p class="verdict ok">All {summary["pools"]} managed pools are in order.</p>'
    level = "error" if by["error"] else "warning" if by["warning"] else "ok"
    counts = ", ".join(f"{count} {name}{'s' if count != 1 else ''}" for name, count in by.items() if count)
    fixed = f'; {summary["remediable"]} fixed by a reconcile' if summary["remediable"] else ""
    return f'<p class="verdict {level}">{counts} in {summary["pools"]} managed pools{fixed}.</p>'


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
        f'<tr><th>{_e(label)}</th><td class="{"sev-" + key if key in SEVERITIES and value else "count"}" '
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
        members = pool.get("members") or []
        state = "missing" if not pool["exists"] else ("blocked" if pool["blocked"] else "writable")
        drained = sum(1 for m in members if m["adminState"] == "Down")
        nic_members = f", {pool['nicMembers']} NIC-based members" if pool["nicMembers"] else ""
        facts = (
            f'{pool["addresses"]} addresses ({pool["managed"]} by poolsync, {pool["unmanaged"]} by hand'
            f'{f", {drained} drained" if drained else ""}), {pool["selected"]} selected by the rules'
            f"{nic_members}; "
            f'SKU {_e(pool["sku"] or "unknown")}; {state}'
        )
        sections.append(
            f'<section class="pool" data-pool="{_e(pool["id"])}" data-findings="{len(pool_findings)}">'
            f'<h3>{_id_ref(pool["id"])} <span class="muted">{len(pool_findings)} finding(s)</span></h3>'
            f'<p class="muted small">{facts}<br>id <code>{_e(pool["id"])}</code></p>'
            f"{_findings_table(pool_findings)}{_members_table(members)}</section>"
        )
    other = [finding for findings in by_pool.values() for finding in findings]
    if other:
        sections.append(
            f'<section class="pool" data-pool="" data-findings="{len(other)}"><h3>Rules and other pools</h3>'
            f"{_findings_table(other)}</section>"
        )
    outcome_rows = "".join(
        f'<tr data-pool="{_e(o["pool"])}"><td>{_id_ref(o["pool"])}</td><td>{_e(o["status"])}</td>'
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
    inputs = report["inputs"]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>poolsync audit {_e(report['runId'])}</title><style>{_CSS}</style></head><body>"
        f"<h1>poolsync audit</h1>"
        f'<p class="muted">{_e(_when(report["startedAt"]))}, took {_duration(report["durationSeconds"])}, '
        f'{_e(report["mode"])}; read {inputs["virtualMachines"]} VMs, {inputs["networkInterfaces"]} NICs, '
        f'{inputs["loadBalancers"]} load balancers. Run <code>{_e(report["runId"])}</code>.</p>'
        f"{_verdict(summary)}"
        f"<h2>Pools</h2>{''.join(sections)}"
        f"<h2>Remediation</h2>{remediation}"
        f'<h2>Counts</h2><table id="summary"><tbody>{count_rows}</tbody></table>'
        '<table id="by-code"><thead><tr><th>Finding</th><th>Count</th></tr></thead>'
        f"<tbody>{code_rows}</tbody></table>"
        f'<h2>Notes</h2><ul class="small">{notes}</ul>'
        "</body></html>\n"
    )
