"""`poolsync`: the runbook operations of the HTTP API from a shell, without the Functions host.

Each subcommand builds the `ApiRequest` the HTTP API would receive and hands it to the same
`shared.api` operation, so validation, the blast-radius guard, ETags and errors are the API's.
`--output json` prints the API's answer body unchanged (documented in shared/api/openapi.json; errors are
`{"error": {"code", "message", "target"}}`); `--query` applies JMESPath to it first, as az does.

Exit codes (EXIT_CODES_HELP): 0 done (a plan that the guard would hold is still a plan), 1 failed or
refused, 2 usage or validation error (the message names the argument), 3 not found or not managed.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import ipaddress
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from cli import output, render
from cli.settings import AUTH_CHOICES

if TYPE_CHECKING:  # the SDK-heavy modules load only when a command runs (`--help` stays quick)
    from shared.api.context import ApiContext
    from shared.api.http import ApiRequest, ApiResponse
    from shared.api.operations import Operation

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_FOUND = 0, 1, 2, 3
EXIT_CODES_HELP = """\
exit codes: 0 done (also a plan the guard would hold back: the output says what)
            1 failed or refused (guard on a write, Azure, conflict, sign-in)
            2 usage or validation error (the message names the argument)
            3 not found or not managed (pool, address, audit report)"""
NOT_FOUND_CODES = frozenset({"PoolNotManaged", "SubscriptionNotConfigured", "PoolNotFound", "AddressNotFound",
                             "AuditNotFound", "ReportNotFound", "NotFound", "VirtualNetworkNotFound"})
WRITE_COMMANDS = frozenset({"apply", "add", "remove", "drain", "enable"})
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
    "auditId": "ID",
}


class UsageError(Exception):
    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"argument {argument}: {message}")


class NotFound(Exception):
    """Something the operator named does not exist (exit 3); the message lists close matches."""


# --- turning arguments into API requests -----------------------------------------------------------


def resolve_pool(context: ApiContext, text: str) -> str:
    """A pool id as given, or `<load balancer>/<pool>` / `<pool>` looked up among the managed pools
    (the same lookup `POST /api/reconcile` does)."""
    if text.startswith("/"):
        return text
    return context.resolve_short_name(text, "pool")


def pool_route(context: ApiContext, text: str) -> dict[str, str]:
    from shared.core.ids import InvalidResourceId, ResourceId

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


def api_request(method: str, args: argparse.Namespace, **fields: Any) -> ApiRequest:
    """The request the HTTP API would get, with the signed-in principal as its caller."""
    from shared.api.http import ApiRequest

    return ApiRequest(method, caller=getattr(args, "principal", None), **fields)


def reconcile_request(context: ApiContext, args: argparse.Namespace, *, dry_run: bool) -> ApiRequest:
    if ALL in args.pool and args.pool != [ALL]:
        raise UsageError("POOL", f"{ALL!r} cannot be combined with pool names")
    pools: Any = ALL if args.pool == [ALL] else [resolve_pool(context, text) for text in args.pool]
    body: dict[str, Any] = {"pool": pools, "dryRun": dry_run}
    if getattr(args, "force", False):
        body["force"] = True
    if getattr(args, "reason", None) is not None:
        body["reason"] = args.reason
    return api_request("POST", args, body=json.dumps(body).encode())


def resolve_address(context: ApiContext, args: argparse.Namespace) -> str:
    """ADDRESS as operators know it: an IP or an entry name pass as they are; a VM name becomes the
    entry of that VM's IP in the pool. Anything else is not found, with the close matches."""
    from shared.core.naming import AZURE_NAME_RE

    text = args.address
    try:
        ipaddress.ip_address(text)
        return str(text)
    except ValueError:
        if not AZURE_NAME_RE.match(text):
            return str(text)  # no name at all: the API says what is wrong with it
    response = show_pool(context, args)
    if response.status != 200:
        return str(text)  # the operation itself reports the pool's problem
    members = response.body["members"]
    wanted = text.lower()
    if any(member["name"].lower() == wanted for member in members):
        return str(text)
    by_vm = [m for m in members if ((m.get("owner") or {}).get("vmName") or "").lower() == wanted]
    if len(by_vm) == 1:
        return str(by_vm[0]["name"])
    if by_vm:
        raise UsageError("ADDRESS", f"VM {text} holds several addresses of the pool; name one: "
                         + ", ".join(f"{m['name']} ({m['ipAddress']})" for m in by_vm))
    known = [m["name"] for m in members] + [m["ipAddress"] for m in members]
    known += [m["owner"]["vmName"] for m in members if (m.get("owner") or {}).get("vmName")]
    close = difflib.get_close_matches(text, known, n=5, cutoff=0.5)
    hint = (f"; did you mean {', '.join(close)}?" if close
            else f" ({len(members)} members: `poolsync show {args.pool}`)")
    raise NotFound(f"no address, entry or VM called {text!r} in pool {args.pool}{hint}")


# --- the subcommands -------------------------------------------------------------------------------

Command = Callable[["ApiContext", argparse.Namespace], "ApiResponse"]


def api(module: str) -> Any:
    """A module of shared/api, imported when a command runs (the SDKs load only then)."""
    return importlib.import_module(f"shared.api.{module}")


def handle(context: ApiContext, operation: Operation, request: ApiRequest) -> ApiResponse:
    from shared.api.operations import handle as handle_request

    return handle_request(operation, request, lambda: context.runtime)


def show_pool(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    request = api_request("GET", args, route_params=pool_route(context, args.pool))
    return handle(context, api("pools").get_pool, request)


def cmd_pools(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    from shared.core.ids import id_key

    if args.pool is None:
        return handle(context, api("pools").list_pools, api_request("GET", args))
    response = show_pool(context, args)
    if response.status == 200:  # the detail answer has no outcome; the listing's journal has it
        last = context.runtime.reconciler.journal.last()
        response.body["lastReconcile"] = last.get(id_key(response.body["id"]))
    return response


def cmd_plan(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    return handle(context, api("runs").reconcile, reconcile_request(context, args, dry_run=True))


def cmd_apply(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    if args.reason is not None and not args.force:
        raise UsageError("--reason", "only goes with --force")
    return handle(context, api("runs").reconcile, reconcile_request(context, args, dry_run=False))


def cmd_audit(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    if getattr(args, "audit_command", None) == "show":
        from cli.audit_show import show_audit

        return show_audit(context, args)
    response = handle(context, api("runs").run_audit_now, api_request("POST", args))
    if response.status == 200 and args.report_dir is not None:
        write_report(response.body, args.report_dir)
    return response


def write_report(report: dict[str, Any], directory: Path) -> None:
    from shared.audit.report import render_html

    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{report['runId']}.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
        (directory / f"{report['runId']}.html").write_text(render_html(report), encoding="utf-8")
    except OSError as error:
        raise UsageError("--report-dir", f"cannot write to {directory}: {error.strerror or error}") from None


def force_query(args: argparse.Namespace) -> dict[str, str]:
    if args.reason is not None and not args.force:
        raise UsageError("--reason", "only goes with --force")
    return {"force": "true", "reason": args.reason or ""} if args.force else {}


def address_command(operation_name: str) -> Command:
    def command(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
        params = {**pool_route(context, args.pool), "address": resolve_address(context, args)}
        request = api_request("POST", args, route_params=params, query=force_query(args))
        return handle(context, getattr(api("changes"), operation_name), request)

    return command


def address_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise UsageError("--backend-address-config-file", f"cannot read {path}: {error.strerror or error}"
                         ) from None


def cmd_add(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    if bool(args.ip) == bool(args.config_file):
        raise UsageError("IP", "give the addresses as IPs or in --backend-address-config-file (one of both)")
    if args.config_file:
        if args.name or args.admin_state or args.vnet:
            raise UsageError("--backend-address-config-file",
                             "put name, adminState and virtualNetwork in the file")
        body = address_file(args.config_file)
    else:
        if args.name and len(args.ip) > 1:
            raise UsageError("--name", "names one address; give one IP with it")
        extra = {"adminState": args.admin_state} if args.admin_state else {}
        if args.vnet:
            extra["virtualNetwork"] = args.vnet
        body = json.dumps([{"ipAddress": ip, **({"name": args.name} if args.name else {}), **extra}
                           for ip in args.ip]).encode()
    request = api_request("POST", args, route_params=pool_route(context, args.pool), body=body)
    return handle(context, api("changes").add_addresses, request)


def cmd_remove(context: ApiContext, args: argparse.Namespace) -> ApiResponse:
    params = {**pool_route(context, args.pool), "address": resolve_address(context, args)}
    request = api_request("DELETE", args, route_params=params, query=force_query(args))
    return handle(context, api("changes").remove_address, request)


COMMANDS: dict[str, tuple[Command, Callable[[Any, TextIO], None]]] = {
    "pools": (cmd_pools, render.pools),
    "show": (cmd_pools, render.pools),
    "plan": (cmd_plan, render.reconcile),
    "diff": (cmd_plan, render.reconcile),
    "apply": (cmd_apply, render.reconcile),
    "add": (cmd_add, render.address_change),
    "remove": (cmd_remove, render.address_change),
    "drain": (address_command("drain_address"), render.admin_change),
    "enable": (address_command("enable_address"), render.admin_change),
    "audit": (cmd_audit, render.audit),
}


# --- the parser ------------------------------------------------------------------------------------

EPILOG = f"""\
POOL is a backend pool resource id, or <load balancer>/<pool> (or just <pool> when unique) among the
pools the rules name or POOLSYNC_MANUAL_POOLS lists. ADDRESS is an IP, the entry's name in the pool, or
the name of the VM holding it.

settings come from the environment, then --settings local.settings.json on top (the app settings of the
Function app: POOLSYNC_RULES or POOLSYNC_RULES_FILE, POOLSYNC_ARM_ENDPOINT, AzureWebJobsStorage, ...).
`make run` writes .devstack/local.settings.json for the local stack. Writes need AzureWebJobsStorage
(the load-balancer write lease the Function app also takes) unless --without-lease.

{EXIT_CODES_HELP}
--output json prints the HTTP API's answer body (shared/api/openapi.json) unchanged; --query
filters it with JMESPath first (as az does).

examples:
  poolsync --settings .devstack/local.settings.json pools
  poolsync plan all
  poolsync apply lb-app/web --force --reason "CHG-1234 scale-in"
  poolsync add lb-app/web 10.10.1.200 --name legacy-1
  poolsync add lb-app/web --backend-address-config-file addresses.json
  poolsync drain lb-app/web web-1
  poolsync show lb-app/web --query "members[?adminState=='Down'].name" -o tsv
  poolsync audit --report-dir ./reports
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
    common.add_argument("--output", "-o", choices=output.FORMATS, default=default("table"),
                        help="output format (default table; json as the HTTP API answers, jsonc coloured)")
    common.add_argument("--query", metavar="JMESPATH", default=default(None),
                        help="JMESPath query applied to the answer (see http://jmespath.org)")
    common.add_argument("--verbose", "-v", action="store_true", default=default(False),
                        help="more logging: Azure calls, retries and telemetry lines on stderr")
    common.add_argument("--debug", action="store_true", default=default(False),
                        help="even more logging (every HTTP request of the Azure SDK)")
    common.add_argument("--only-show-errors", action="store_true", default=default(False),
                        help="only errors on stderr: no warnings or notes")
    common.add_argument("--without-lease", action="store_true", default=default(False),
                        help="allow writes without the storage account's write lease (not safe while the "
                        "Function app runs: both may write the same pool)")
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
    parser.add_argument("--version", action="version", version=f"poolsync {cli_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, description: str, into: Any = sub) -> argparse.ArgumentParser:
        return into.add_parser(  # type: ignore[no-any-return]
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
    show = add("show", "show one pool with its members (same as pools POOL)",
               "One pool's members: name, IP, adminState, poolsync-managed or not, the VM holding the IP, "
               "the rule.")
    show.add_argument("pool", metavar="POOL", help="the pool to show")

    for name, what in (
        ("plan", "show what a reconcile would change, writing nothing"),
        ("diff", "same as plan"),
    ):
        planning = add(
            name,
            what,
            "Dry-run reconcile: the diff per pool (+ add, - remove, ~ re-address) "
            "and what the guard would hold back (exit 0 either way: a plan was made).",
        )
        planning.add_argument("pool", nargs="+", metavar="POOL", help=f"pools to plan, or {ALL!r}")

    apply = add(
        "apply",
        "reconcile pools now (the guard applies)",
        "Real reconcile of the given pools: add, re-address and remove poolsync's own addresses so the "
        "pool matches the rules. A change that removes more than POOLSYNC_MAX_REMOVE_FRACTION of a "
        "pool's managed addresses, or empties it, is held (exit 1) unless --force with a --reason.",
    )
    apply.add_argument("pool", nargs="+", metavar="POOL", help=f"pools to reconcile, or {ALL!r}")
    add_force(apply)

    adding = add("add", "add addresses to a pool by hand",
                 "Add IP addresses to a pool (as az network lb address-pool address add): one or more IPs, "
                 "or a JSON file holding a list of {name, ipAddress (or ip-address), virtualNetwork, subnet, "
                 "adminState}. Addresses the rules select are refused: poolsync adds those itself.")
    adding.add_argument("pool", metavar="POOL", help="the pool")
    adding.add_argument("ip", nargs="*", metavar="IP", help="addresses to add")
    adding.add_argument("--name", help="the entry's name (one IP; default manual-<ip>)")
    adding.add_argument("--admin-state", choices=("None", "Down"), help="adminState of the new entries")
    adding.add_argument("--vnet", metavar="ID", help="virtual network id (when the pool has none yet)")
    adding.add_argument("--backend-address-config-file", "--config-file", dest="config_file", type=Path,
                        metavar="FILE", help="JSON list of addresses instead of IPs")

    removing = add("remove", "remove one address from a pool",
                   "Remove one address (by IP, entry name or VM name). Removing a poolsync-managed address "
                   "only lasts until the next reconcile if the rules still select its VM.")
    removing.add_argument("pool", metavar="POOL", help="the pool")
    removing.add_argument("address", metavar="ADDRESS", help="IP, entry name or VM name")
    add_force(removing)

    audit = add(
        "audit",
        "run the compliance audit now, or show a stored report",
        "The audit the daily timer runs (remediating only when POOLSYNC_AUDIT_REMEDIATE is on). The "
        "report is also stored in the audit container, as the timer's are. `audit show ID` shows a "
        "stored report (ID: a run id or the id POST /api/audit answered).",
    )
    audit.add_argument(
        "--report-dir",
        type=Path,
        metavar="DIR",
        help="also write the report here as <run-id>.json and <run-id>.html",
    )
    audit_sub = audit.add_subparsers(dest="audit_command", metavar="show")
    audit_show = add("show", "show a stored audit report", "A stored audit report: its summary and "
                     "findings, or the HTML page with --open.", into=audit_sub)
    audit_show.add_argument("audit_id", metavar="ID", help="run id or audit request id")
    audit_show.add_argument("--open", action="store_true", help="open the HTML report in a browser")
    audit_show.add_argument("--report-dir", type=Path, metavar="DIR",
                            help="where --open writes the page (default: the temporary directory)")

    for name, state in (("drain", "Down"), ("enable", "None")):
        change = add(
            name,
            f"set one address of a pool to adminState {state}",
            f"Set adminState {state} on one address of a pool (found by IP, entry name or the VM's "
            "name), through the same ETag-checked write as the HTTP API.",
        )
        change.add_argument("pool", metavar="POOL", help="the pool")
        change.add_argument("address", metavar="ADDRESS", help="IP, entry name or VM name")
        add_force(change)
    return parser


def add_force(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--force", action="store_true", help="override the blast-radius guard (needs --reason)"
    )
    parser.add_argument(
        "--reason", metavar="TEXT", help="why the guard is overridden (logged with the change)"
    )


def cli_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("poolsync")
    except PackageNotFoundError:
        return "unknown"


# --- running ---------------------------------------------------------------------------------------


class LeaseRequired(Exception):
    """A write without the lease store, not explicitly allowed."""


def build_context(args: argparse.Namespace) -> ApiContext:
    from cli.identity import RecordingCredential, principal_name
    from cli.settings import credential_for, load_settings
    from shared.api.context import ApiContext
    from shared.app.runtime import Runtime

    settings = load_settings(args.settings)
    args.credential = RecordingCredential(credential_for(args.auth, settings))
    runtime = Runtime.from_env(settings, credential=args.credential)
    if args.command in WRITE_COMMANDS and not runtime.storage.configured and not args.without_lease:
        raise LeaseRequired()
    runtime.check_rules_against_azure()  # as the app does at start: every rules problem at once
    if args.command in WRITE_COMMANDS:  # the change is logged under who made it, as over HTTP
        scope = runtime.clients.settings.endpoint.rstrip("/") + "/.default"
        args.principal = principal_name(args.credential, scope)
    return ApiContext(runtime)


def exit_code(status: int, body: Any, *, planning: bool) -> int:
    code = (body.get("error") or {}).get("code") if isinstance(body, dict) else None
    if status < 300 or (planning and code == "GuardRefused"):
        return EXIT_OK
    if code in NOT_FOUND_CODES:
        return EXIT_NOT_FOUND
    return EXIT_USAGE if status in (400, 413) else EXIT_FAILED


def report_error(prog: str, args: argparse.Namespace, body: Any, err: TextIO) -> None:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return
    if error.get("code") == "GuardRefused":  # a hold, not a mistake: what was held and how to apply it
        pools = " ".join(args.pool) if isinstance(args.pool, list) else args.pool
        again = {"plan": "apply", "diff": "apply"}.get(args.command, args.command)
        rest = f" {args.address}" if getattr(args, "address", None) else ""
        held = str(error.get("message")).split("; repeat with force")[0]  # the HTTP caller's hint
        if args.command in ("plan", "diff"):
            err.write(f"{prog}: the guard would hold back: {held}\n")
        else:
            err.write(f"{prog}: held by the guard, nothing written (GuardRefused): {held}\n")
        err.write(f"{prog}: to apply it anyway: poolsync {again} {pools}{rest} --force --reason TEXT\n")
        return
    argument = ARGUMENT_OF_TARGET.get(error.get("target") or "")
    if argument is None and (error.get("target") or "").startswith(("[", "body", "ipAddress", "name")):
        argument = "--backend-address-config-file" if getattr(args, "config_file", None) else "IP"
    where = f"argument {argument}: " if argument else ""
    err.write(f"{prog}: error: {where}{error.get('message')} ({error.get('code')})\n")


def configure_logging(args: argparse.Namespace, err: TextIO) -> None:
    """Warnings by default, errors only with --only-show-errors; telemetry lines (logger `poolsync`)
    only with --verbose/--debug, where they help; the Azure SDK's HTTP log only with --debug."""
    level = (logging.DEBUG if args.debug else logging.INFO if args.verbose
             else logging.ERROR if args.only_show_errors else logging.WARNING)
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    if not (args.verbose or args.debug):
        handler.addFilter(lambda record: record.name != "poolsync" and not record.getMessage().startswith(
            "no storage configured"))  # the CLI says that itself, where it matters
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.getLogger("azure").setLevel(logging.DEBUG if args.debug else
                                        logging.INFO if args.verbose else logging.ERROR)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out, err = out or sys.stdout, err or sys.stderr
    args = build_parser().parse_args(argv)
    configure_logging(args, err)
    prog = f"poolsync {args.command}"
    command, renderer = COMMANDS[args.command]
    try:
        output.apply_query(args.query, {})  # a bad expression is a usage error before any Azure call
        context = build_context(args)
        response = command(context, args)
    except output.QueryError as error:
        err.write(f"{prog}: error: argument --query: {error}\n")
        return EXIT_USAGE
    except UsageError as error:
        err.write(f"{prog}: error: {error}\n")
        return EXIT_USAGE
    except NotFound as error:
        err.write(f"{prog}: error: {error}\n")
        return EXIT_NOT_FOUND
    except LeaseRequired:
        err.write(f"{prog}: error: no storage account configured (AzureWebJobsStorage), so this write would "
                  "take no load-balancer lease and could race the Function app. Use the app's settings "
                  "(--settings FILE; `make run` writes .devstack/local.settings.json) or, knowing that, "
                  "--without-lease.\n")
        return EXIT_USAGE
    except Exception as error:
        from shared.api.http import ApiError

        if isinstance(error, ApiError):  # raised while building the context (e.g. POOLSYNC_MANUAL_POOLS)
            response = error.response()
        elif _sign_in_failed(args):
            return _report_sign_in(prog, args, err)
        elif isinstance(error, (ValueError, *_config_errors())):
            err.write(f"{prog}: error: configuration: {error}\n")
            return EXIT_USAGE
        else:
            raise
    if _sign_in_failed(args) and response.status >= 500:
        return _report_sign_in(prog, args, err)
    is_error = isinstance(response.body, dict) and "error" in response.body
    try:
        if is_error and args.output != "none":
            if args.output in ("json", "jsonc", "yaml") and not args.query:
                output.write(response.body, args.output, None, renderer, out)
            elif args.output == "table":
                renderer(response.body, out)
        elif not is_error:
            output.write(response.body, args.output, args.query, renderer, out)
    except output.QueryError as error:
        err.write(f"{prog}: error: argument --query: {error}\n")
        return EXIT_USAGE
    report_error(prog, args, response.body, err)
    if not args.only_show_errors:
        for warning in (response.body.get("warnings") or []) if isinstance(response.body, dict) else []:
            err.write(f"{prog}: warning: {warning}\n")
    return exit_code(response.status, response.body, planning=args.command in ("plan", "diff"))


def _config_errors() -> tuple[type[Exception], ...]:
    from cli.settings import SettingsError
    from shared.core.rules import RulesError

    return SettingsError, RulesError


def _sign_in_failed(args: argparse.Namespace) -> bool:
    credential = getattr(args, "credential", None)
    return credential is not None and credential.failure is not None


def _report_sign_in(prog: str, args: argparse.Namespace, err: TextIO) -> int:
    from cli.identity import SIGN_IN_HELP

    failure = str(args.credential.failure).strip().splitlines()[0][:300]
    err.write(f"{prog}: error: could not sign in to Azure ({failure}); {SIGN_IN_HELP}\n")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
