"""`poolsync audit show ID [--open]`: a stored audit report through GET /api/audits/{id}/report."""

from __future__ import annotations

import argparse
import tempfile
import webbrowser
from pathlib import Path

from shared.api.audit_report import audit_report
from shared.api.context import ApiContext
from shared.api.http import ApiRequest, ApiResponse
from shared.api.operations import handle


def show_audit(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    route = {"auditId": args.audit_id}
    response = handle(audit_report, ApiRequest("GET", route_params=route), lambda: context.runtime)
    if response.status != 200 or not args.open:
        return response
    page = handle(audit_report, ApiRequest("GET", route_params=route, query={"format": "html"}),
                  lambda: context.runtime)
    directory = args.report_dir or Path(tempfile.gettempdir())
    path = directory / f"poolsync-audit-{response.body['runId']}.html"
    path.write_text(page.body, encoding="utf-8")
    webbrowser.open(path.resolve().as_uri())
    response.body.setdefault("artifacts", {})["opened"] = str(path)
    return response
