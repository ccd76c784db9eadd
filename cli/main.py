"""`poolsync`: the runbook operations of the HTTP API from a shell, without the Functions host.

Each subcommand builds the `ApiRequest` the HTTP API would receive and hands it to the same
`shared.api.operations` operation, so validation, the blast-radius guard, ETags and errors are the API's.
`--output json` prints the API's answer body unchanged (documented in shared/api/openapi.json; errors are
`{"error": {"code", "message", "target"}}`).

Exit codes: 0 done, 1 the operation failed or was refused (guard, Azure, not managed), 2 usage or
validation error (the message names the argument).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from cli import render
from cli.settings import AUTH_CHOICES, SettingsError, credential_for, load_settings
from shared.api import operations as http_ops
from shared.api.operations import ApiContext, ApiError, ApiRequest, ApiResponse
from shared.app.runtime import Runtime
from shared.audit.report import render_html
from shared.core.ids import InvalidResourceId, ResourceId, id_key
from shared.core.rules import RulesError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
POOL_TYPE = "microsoft.network/loadbalancers/backendaddresspools"
ALL = "all"

# Where an API error's `target` came from on the command line.
ARGUMENT_OF_TARGET = {
    "pool": "POOL",
    "subscriptionId": "POOL",
    "resourceGroup": "POOL",
    "loadBalancer": "POOL",
    "address": "ADDRESS",
    "reason": "--reason",
    "force": "--force",
}


class UsageError(Exception):
    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"argument {argument}: {message}")


# --- turning arguments into API requests -----------------------------------------------------------


def resolve_pool(context: ApiContext, text: str) -> str:
    """A pool id as given, or `<load balancer>/<pool>` / `<pool>` looked up among the managed pools."""
    if text.startswith("/"):
        return text
    wanted = text.strip("/").lower()
    known = [pool for pool, _ in context.all_pools()]

    def short(pool_id: str) -> str:
        rid = ResourceId.parse(pool_id)
        return f"{rid.name}/{rid.child_name}"

    matches = [
        p
        for p in known
        if short(p).lower() == wanted or (ResourceId.parse(p).child_name or "").lower() == wanted
    ]
    if len(matches) == 1:
        return matches[0]
    names = ", ".join(short(p) for p in known) or "none"
    if not matches:
        raise UsageError("POOL", f"no managed pool is called {text!r} (managed: {names})")
    raise UsageError(
        "POOL",
        f"{text!r} names several pools; use <load balancer>/<pool>: " + ", ".join(short(p) for p in matches),
    )


def pool_route(context: ApiContext, text: str) -> dict[str, str]:
    pool_id = resolve_pool(context, text)
    try:
        rid = ResourceId.parse(pool_id)
    except InvalidResourceId as error:
        raise UsageError("POOL", str(error)) from None
    if rid.full_type.lower() != POOL_TYPE or rid.child_name is None:
        raise UsageError("POOL", f"is a {rid.full_type} id, not a backend pool id")
    return {
        "subscriptionId": rid.subscription,
        "resourceGroup": rid.resource_group,
        "loadBalancer": rid.name,
        "pool": rid.child_name,
    }


def reconcile_request(context: ApiContext, args: argparse.Namespace, *, dry_run: bool) -> ApiRequest:
    pools: Any = ALL if args.pool == [ALL] else [resolve_pool(context, text) for text in args.pool]
    if ALL in args.pool and pools != ALL:
        raise UsageError("POOL", f"{ALL!r} cannot be combined with pool names")
    body: dict[str, Any] = {"pool": pools, "dryRun": dry_run}
    if getattr(args, "force", False):
        body["force"] = True
    if getattr(args, "reason", None) is not None:
        body["reason"] = args.reason
    return ApiRequest("POST", body=json.dumps(body).encode())


# --- the subcommands -------------------------------------------------------------------------------

Command = Callable[[ApiContext, argparse.Namespace], ApiResponse]


def handle(context: ApiContext, operation: http_ops.Operation, request: ApiRequest) -> ApiResponse:
    return http_ops.handle(operation, request, lambda: context.runtime)


def cmd_pools(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    if args.pool is None:
        return handle(context, http_ops.list_pools, ApiRequest("GET"))
    response = handle(
        context, http_ops.get_pool, ApiRequest("GET", route_params=pool_route(context, args.pool))
    )
    if response.status == 200:  # the detail answer has no outcome; the listing's journal has it
        last = context.runtime.reconciler.journal.last()
        response.body["lastReconcile"] = last.get(id_key(response.body["id"]))
    return response


def cmd_plan(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    return handle(context, http_ops.reconcile, reconcile_request(context, args, dry_run=True))


def cmd_apply(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    if args.reason is not None and not args.force:
        raise UsageError("--reason", "only goes with --force")
    return handle(context, http_ops.reconcile, reconcile_request(context, args, dry_run=False))


def cmd_audit(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    response = handle(context, http_ops.run_audit_now, ApiRequest("POST"))
    if response.status == 200 and args.report_dir is not None:
        write_report(response.body, args.report_dir)
    return response


def write_report(report: dict[str, Any], directory: Path) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{report['runId']}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (directory / f"{report['runId']}.html").write_text(render_html(report), encoding="utf-8")
    except OSError as error:
        raise UsageError("--report-dir", f"cannot write to {directory}: {error.strerror or error}") from None


def admin_command(operation: http_ops.Operation) -> Command:
    def command(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
        params = {**pool_route(context, args.pool), "address": args.address}
        query = {"force": "true", "reason": args.reason} if args.force else {}
        return handle(context, operation, ApiRequest("POST", route_params=params, query=query))

    return command


COMMANDS: dict[str, tuple[Command, Callable[[Any, TextIO], None]]] = {
    "pools": (cmd_pools, render.pools),
    "plan": (cmd_plan, render.reconcile),
    "diff": (cmd_plan, render.reconcile),
    "apply": (cmd_apply, render.reconcile),
    "audit": (cmd_audit, render.audit),
    "drain": (admin_command(http_ops.drain_address), render.admin_change),
    "enable": (admin_command(http_ops.enable_address), render.admin_change),
}


# --- the parser ------------------------------------------------------------------------------------

EPILOG = """\
POOL is a backend pool resource id, or <load balancer>/<pool> (or just <pool> when unique) among the
pools the rules name or POOLSYNC_MANUAL_POOLS lists.

settings come from the environment, then --settings local.settings.json on top (the app settings of the
Function app: POOLSYNC_RULES or POOLSYNC_RULES_FILE, POOLSYNC_ARM_ENDPOINT, AzureWebJobsStorage, ...).

exit codes: 0 done, 1 failed or refused (guard, Azure, pool not managed), 2 usage or validation error.
--output json prints the HTTP API's answer body (shared/api/openapi.json) unchanged.

examples:
  poolsync --settings local.settings.json pools
  poolsync plan all
  poolsync apply lb-web/web --force --reason "CHG-1234 scale-in"
  poolsync drain lb-web/web 10.0.1.7
  poolsync audit --report-dir ./reports --output json
"""


def common_options(defaults: bool) -> argparse.ArgumentParser:
    """Options valid before and after the subcommand; after it they leave the values given before alone
    (SUPPRESS), or `poolsync -o json pools` would end up with the subcommand's default, table."""
    common = argparse.ArgumentParser(add_help=False)

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    common.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        default=default(None),
        help="local.settings.json whose Values are the app settings (on top of the environment)",
    )
    common.add_argument(
        "--auth",
        choices=AUTH_CHOICES,
        default=default("default"),
        help="Entra ID credential: default = DefaultAzureCredential (or the local emulator's "
        "POOLSYNC_ARM_STATIC_TOKEN), cli = az login, managed-identity (AZURE_CLIENT_ID)",
    )
    common.add_argument(
        "--output",
        "-o",
        choices=("table", "json"),
        default=default("table"),
        help="table for people (default), json for scripts",
    )
    common.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        default=default(False),
        help="log Azure calls and retries to stderr",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = common_options(defaults=False)
    parser = argparse.ArgumentParser(
        prog="poolsync",
        parents=[common_options(defaults=True)],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Inspect and change the load balancer backend pools poolsync manages, with the same "
        "checks and guard as its HTTP API, from this machine.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            parents=[common],
            help=help_text,
            description=description,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    pools = add(
        "pools",
        "list the managed pools, or show one with its members",
        "Without POOL: every managed pool with member counts and its last reconcile. With POOL: its "
        "members (name, IP, adminState, poolsync-managed or not, the VM holding the IP, the rule).",
    )
    pools.add_argument("pool", nargs="?", metavar="POOL", help="the pool to show")

    for name, what in (
        ("plan", "show what a reconcile would change, writing nothing"),
        ("diff", "same as plan"),
    ):
        planning = add(
            name,
            what,
            "Dry-run reconcile: the diff per pool (+ add, - remove, ~ re-address) "
            "and whether the guard would refuse it. Exit 1 when it would be refused.",
        )
        planning.add_argument("pool", nargs="+", metavar="POOL", help=f"pools to plan, or {ALL!r}")

    apply = add(
        "apply",
        "reconcile pools now (the guard applies)",
        "Real reconcile of the given pools: add, re-address and remove poolsync's own addresses so the "
        "pool matches the rules. A change that removes more than POOLSYNC_MAX_REMOVE_FRACTION of a "
        "pool's managed addresses, or empties it, is refused (exit 1) unless --force with a --reason.",
    )
    apply.add_argument("pool", nargs="+", metavar="POOL", help=f"pools to reconcile, or {ALL!r}")
    add_force(apply)

    audit = add(
        "audit",
        "run the compliance audit now and summarise its findings",
        "The audit the daily timer runs (remediating only when POOLSYNC_AUDIT_REMEDIATE is on). The "
        "report is also stored in the audit container, as the timer's are.",
    )
    audit.add_argument(
        "--report-dir",
        type=Path,
        metavar="DIR",
        help="also write the report here as <run-id>.json and <run-id>.html",
    )

    for name, state in (("drain", "Down"), ("enable", "None")):
        change = add(
            name,
            f"set one address of a pool to adminState {state}",
            f"Set adminState {state} on one address of a pool (found by IP or by its name), "
            "through the same ETag-checked write as the HTTP API.",
        )
        change.add_argument("pool", metavar="POOL", help="the pool")
        change.add_argument("address", metavar="ADDRESS", help="the address's IP or its name in the pool")
        add_force(change)
    return parser


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="override the blast-radius guard (needs --reason)"
    )
    parser.add_argument(
        "--reason", metavar="TEXT", help="why the guard is overridden (logged with the change)"
    )


# --- running ---------------------------------------------------------------------------------------


def build_context(args: argparse.Namespace) -> ApiContext:
    settings = load_settings(args.settings)
    runtime = Runtime.from_env(settings, credential=credential_for(args.auth, settings))
    runtime.check_rules_against_azure()  # as the app does at start: every rules problem at once
    return ApiContext(runtime)


def exit_code(status: int) -> int:
    if status < 300:
        return EXIT_OK
    return EXIT_USAGE if status in (400, 413) else EXIT_FAILED


def report_error(prog: str, body: Any, err: TextIO) -> None:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return
    argument = ARGUMENT_OF_TARGET.get(error.get("target") or "")
    where = f"argument {argument}: " if argument else ""
    err.write(f"{prog}: error: {where}{error.get('message')} ({error.get('code')})\n")
    if error.get("code") == "GuardRefused":
        err.write(f"{prog}: to override: --force --reason TEXT\n")


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        stream=err,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        logging.getLogger("azure").setLevel(logging.ERROR)
    prog = f"poolsync {args.command}"
    command, renderer = COMMANDS[args.command]
    try:
        context = build_context(args)
        response = command(context, args)
    except UsageError as error:
        err.write(f"{prog}: error: {error}\n")
        return EXIT_USAGE
    except (SettingsError, RulesError, ValueError) as error:
        err.write(f"{prog}: error: configuration: {error}\n")
        return EXIT_USAGE
    except ApiError as error:  # raised while building the context (e.g. POOLSYNC_MANUAL_POOLS)
        response = error.response()
    if args.output == "json":
        out.write(json.dumps(response.body, indent=2) + "\n")
    else:
        renderer(response.body, out)
    report_error(prog, response.body, err)
    return exit_code(response.status)


if __name__ == "__main__":
    sys.exit(main())
