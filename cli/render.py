"""Tables for people: each function takes an HTTP API answer body (success or error) and writes text."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TextIO

from shared.core.ids import ResourceId

MAX_FINDINGS_SHOWN = 20


def short_pool(pool_id: str | None) -> str:
    """`lb/pool` for a pool id; anything else as it is."""
    try:
        rid = ResourceId.parse(pool_id or "")
    except ValueError:
        return pool_id or "-"
    return f"{rid.name}/{rid.child_name}" if rid.child_name else str(rid)


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO) -> None:
    cells = [[str(h) for h in headers]] + [
        ["-" if c is None or c == "" else str(c) for c in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n"
        )


def last_outcome(last: dict[str, Any] | None) -> str:
    if not last:
        return "never"
    return f"{last.get('status')} {last.get('at')} ({last.get('source')})"


def _is_error(body: Any) -> bool:
    return isinstance(body, dict) and "error" in body


def pools(body: Any, out: TextIO) -> None:
    if _is_error(body):
        return
    if "pools" in body:
        rows = [
            (
                short_pool(p["id"]),
                p["source"],
                "yes" if p["exists"] else "MISSING",
                p["memberCount"],
                p["managedCount"],
                p["unmanagedCount"],
                p["drainedCount"],
                p["heldRemovals"],
                p["windowRemovals"],
                last_outcome(p["lastReconcile"]),
            )
            for p in body["pools"]
        ]
        table(
            rows,
            ("POOL", "SOURCE", "EXISTS", "MEMBERS", "MANAGED", "OTHER", "DRAINED", "HELD",
             "REMOVED IN WINDOW", "LAST RECONCILE"),
            out,
        )
        return
    out.write(f"pool            {body['id']}\n")
    out.write(
        f"source          {body['source']}   sku {body['sku']}   rules {', '.join(body['rules']) or '-'}\n"
    )
    out.write(f"virtual network {body['virtualNetwork'] or '-'}\n")
    out.write(f"last reconcile  {last_outcome(body.get('lastReconcile'))}\n\n")
    members: list[tuple[Any, ...]] = [
        (
            m["name"],
            m["ipAddress"],
            m["adminState"] or "None",
            "yes" if m["managed"] else "no",
            (m["owner"] or {}).get("vmName"),
            m["rule"],
        )
        for m in body["members"]
    ]
    if members:
        table(members, ("NAME", "IP", "ADMIN", "MANAGED", "VM", "RULE"), out)
    else:
        out.write("no members\n")


def reconcile(body: Any, out: TextIO) -> None:
    for outcome in body.get("pools", []) if isinstance(body, dict) else []:
        counts = (outcome.get("plan") or {}).get("counts") or {}
        shown = ", ".join(
            f"{key} {value}" for key, value in counts.items() if isinstance(value, int) and value
        )
        status = "held by the guard" if outcome["status"] == "refused" else outcome["status"]
        out.write(f"{short_pool(outcome['pool'])}: {status}" + (f" ({shown})" if shown else "") + "\n")
        if outcome.get("detail"):
            out.write(f"  {outcome['detail']}\n")
        for line in (outcome.get("plan") or {}).get("diff") or []:
            out.write(f"  {line}\n")
    if isinstance(body, dict) and body.get("dryRun"):
        out.write("dry run: nothing was written\n")


def audit(body: Any, out: TextIO) -> None:
    from shared.audit.report import log_summary  # loads the SDKs: only when there is a report to show

    if _is_error(body):
        return
    out.write(log_summary(body) + "\n")
    artifacts = body.get("artifacts") or {}
    if artifacts.get("opened"):
        out.write(f"opened {artifacts['opened']}\n")
    if artifacts.get("error"):
        out.write(f"report not stored: {artifacts['error']}\n")
    elif artifacts.get("json"):
        out.write(f"report stored in {artifacts['container']}: {artifacts['json']}, {artifacts['html']}\n")
    findings = body.get("findings") or []
    if findings:
        out.write("\n")
        rows = [
            (
                f["severity"],
                f["code"],
                short_pool(f.get("pool")),
                f.get("address") or f.get("ip"),
                f["message"],
            )
            for f in findings[:MAX_FINDINGS_SHOWN]
        ]
        table(rows, ("SEVERITY", "CODE", "POOL", "ADDRESS", "MESSAGE"), out)
        if len(findings) > MAX_FINDINGS_SHOWN:
            out.write(f"... and {len(findings) - MAX_FINDINGS_SHOWN} more (--output json or --report-dir)\n")
        commands = list(dict.fromkeys(f["command"] for f in findings if f.get("command")))
        if commands:
            out.write("\nto fix:\n" + "".join(f"  {command}\n" for command in commands))


def admin_change(body: Any, out: TextIO) -> None:
    if _is_error(body):
        return
    verb = "written" if body.get("written") else "already so, nothing written"
    for entry in body.get("addresses") or []:
        out.write(
            f"{short_pool(body['pool'])}: {entry['name']} {entry['ipAddress']} adminState "
            f"{entry['adminState']} ({verb})\n"
        )


def address_change(body: Any, out: TextIO) -> None:
    """add / remove: one line per address, and whether anything was written."""
    if _is_error(body):
        return
    verb = "written" if body.get("written") else "already so, nothing written"
    for entry in body.get("addresses") or []:
        out.write(f"{short_pool(body['pool'])}: {entry['name']} {entry['ipAddress']} ({verb})\n")
