"""`make demo` = `python -m devstack.demo`: a scripted tour of poolsync on the local stack.

1. initial sync: one reconcile through the HTTP API fills the pools from the VMs already there;
2. scale out: new VMs appear (cloned from a VM each rule selects); their events make the pools follow;
3. scale in: some of them go; the pools follow again (within the guard's limit);
3b. scale set: the sample's Uniform scale set scales out, then in by 80%; one event per capacity change,
    and the web pool follows (the set's own list confirms the removals, so the guard does not hold them);
4. drain: an operator sets one address Down through the HTTP API;
5. audit: the timer function runs; its HTML report is copied out of Azurite and its path printed.

The pools are shown live as a table with a progress bar while they converge. The exit code is 0 only if
every step saw what it expected.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from devstack.fleet import Fleet, PoolView, pool_views
from devstack.screenshot import find_browser, screenshot
from devstack.selfcheck import arm_settings, send
from devstack.stack import SAMPLE_RULES, SAMPLE_TOPOLOGY, STATE_DIR, LocalStack
from shared.app.runtime import Runtime, get_runtime
from shared.core.ids import ResourceId, id_key
from shared.core.models import ADMIN_DOWN
from shared.core.rules import Rule
from shared.storage.report_store import DEFAULT_REPORT_CONTAINER

STEP_TIMEOUT = 120.0  # generous: a loaded CI machine, and events coalesce for about a second
BAR_WIDTH = 24
AUDIT_FUNCTION = "audit_timer"


class StepFailed(AssertionError):
    pass


@dataclass
class LiveTable:
    """Pools against the rules, redrawn in place on a terminal, printed on change otherwise."""

    out: TextIO
    _drawn_lines: int = 0
    _last: str = ""

    def render(self, views: list[PoolView], title: str) -> str:
        width = max([len(v.name) for v in views] + [4])
        header = f"  {'pool':<{width}}  {'in pool':>7}  {'wanted':>6}  {'progress':<{BAR_WIDTH + 7}}"
        lines = [f"  {title}", header]
        for view in views:
            filled = round(view.progress * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            state = "in sync" if view.in_sync else "syncing"
            lines.append(f"  {view.name:<{width}}  {len(view.actual):>7}  {len(view.expected):>6}  "
                         f"[{bar}] {view.progress:>4.0%}  {state}")
        return "\n".join(lines)

    def show(self, views: list[PoolView], title: str) -> None:
        text = self.render(views, title)
        if text == self._last:
            return
        if self.out.isatty() and self._drawn_lines:
            self.out.write(f"\x1b[{self._drawn_lines}F\x1b[J")  # back to the table's first line, clear
        self.out.write(text + "\n")
        self.out.flush()
        self._drawn_lines = text.count("\n") + 1
        self._last = text

    def done(self) -> None:
        self._drawn_lines = 0
        self._last = ""


class Tour:
    def __init__(self, stack: LocalStack, out: TextIO) -> None:
        assert stack.host is not None
        self.stack = stack
        self.host = stack.host
        self.out = out
        self.runtime: Runtime = get_runtime()
        first = ResourceId.parse(self.runtime.rules.rules[0].virtual_network_id)
        self.fleet = Fleet(arm_settings(stack), first.subscription, self._vm_resource_group())
        self.table = LiveTable(out)
        self.created: dict[str, list[str]] = {}  # pool key -> demo VMs made for it
        self.report: Path | None = None

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    # -- helpers ---------------------------------------------------------------------------------
    def _vm_resource_group(self) -> str:
        inventory = self.runtime.reconciler.read_inventory()
        for vm in inventory.vms.values():
            return vm.resource_group
        raise StepFailed("the topology has no VMs to clone")

    def api(self, method: str, route: str, document: Any = None) -> tuple[int, Any]:
        body = json.dumps(document).encode() if document is not None else None
        status, raw = send(self.host.http_url(route), method, body,
                           {"x-functions-key": self.host.master_key, "Content-Type": "application/json"})
        try:
            return status, json.loads(raw or b"null")
        except ValueError:
            return status, raw.decode(errors="replace")

    def watch(self, title: str, done: Callable[[list[PoolView]], bool]) -> list[PoolView]:
        """Redraw the pool table until `done` holds (or the step times out)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            views = pool_views(self.runtime, self.fleet)
            self.table.show(views, title)
            if done(views):
                self.table.done()
                return views
            if time.monotonic() > deadline:
                self.table.done()
                raise StepFailed(f"pools did not reach the expected state within {STEP_TIMEOUT:.0f}s")
            time.sleep(0.25)

    def template_vm(self, rule: Rule) -> tuple[str, dict[str, str]]:
        """(subnet id, tags) of a VM this rule selects, for cloning."""
        inventory = self.runtime.reconciler.read_inventory()
        desired = self.runtime.reconciler.desired(inventory)
        for address in desired.get(rule.pool_key, {}).values():
            vm = inventory.vms.get(id_key(address.vm_id))
            if vm is not None and address.subnet_id:
                return address.subnet_id, dict(vm.tags)
        raise StepFailed(f"no VM in the topology matches rule {rule.name!r} to clone")

    # -- the steps -------------------------------------------------------------------------------
    def initial_sync(self) -> None:
        status, body = self.api("POST", "reconcile", {"pool": "all"})
        if status != 200:
            raise StepFailed(f"POST /api/reconcile answered {status}: {body}")
        self.watch("initial sync", lambda views: all(v.in_sync for v in views))

    def scale_out(self, per_pool: int = 3) -> None:
        for rule in self._one_rule_per_pool():
            subnet_id, tags = self.template_vm(rule)
            for number in range(1, per_pool + 1):
                name = f"demo-{rule.name}-{number}"[:60]
                self.fleet.create_vm(name, subnet_id, tags)
                self.created.setdefault(rule.pool_key, []).append(name)
                self.say(f"  + VM {name} ({self.fleet.vm_ip(name)})")
        self.watch("scale out: pools follow the new VMs",
                   lambda views: all(v.in_sync for v in views) and self._demo_vms_in_pools(views, True))

    def scale_in(self, per_pool: int = 2) -> None:
        for names in self.created.values():
            for name in names[:per_pool]:
                self.fleet.delete_vm(name)
                self.say(f"  - VM {name}")
            del names[:per_pool]
        self.watch("scale in: pools drop the deleted VMs", lambda views: all(v.in_sync for v in views))

    def scale_set(self, name: str = "ss-web", out_to: int = 5, in_to: int = 1) -> None:
        for capacity, title in ((out_to, "scale set out"), (in_to, "scale set in")):
            self.fleet.scale(name, capacity)
            instances = self.fleet.scale_set_instances(name)
            self.say(f"  {name}: capacity {capacity} ({len(instances)} instances)")

            def settled(views: list[PoolView], count: int = len(instances)) -> bool:
                members = sum(1 for v in views for n in v.actual if n.startswith(f"psync-{name}-"))
                return all(v.in_sync for v in views) and members == count

            self.watch(f"{title}: the pool follows {name}", settled)

    def _demo_vms_in_pools(self, views: list[PoolView], present: bool) -> bool:
        in_any = {ip for view in views for ip in view.actual.values()}
        ips = {self.fleet.vm_ip(name) for names in self.created.values() for name in names}
        return ips <= in_any if present else not (ips & in_any)

    def _one_rule_per_pool(self) -> list[Rule]:
        seen: dict[str, Rule] = {}
        for rule in self.runtime.rules.rules:
            seen.setdefault(rule.pool_key, rule)
        return list(seen.values())

    def drain(self) -> None:
        views = pool_views(self.runtime, self.fleet)
        view = next((v for v in views if v.actual), None)
        if view is None:
            raise StepFailed("no managed address to drain")
        name, ip = sorted(view.actual.items())[0]
        rid = ResourceId.parse(view.pool_id)
        route = "/".join(urllib.parse.quote(part, safe="") for part in
                         ("pools", rid.subscription, rid.resource_group, rid.name, rid.child_name or "",
                          "addresses", ip or name, "drain"))
        status, body = self.api("POST", route)
        self.say(f"  POST /api/{route} -> {status}")
        if status not in (200, 202):
            raise StepFailed(f"drain answered {status}: {body}")
        deadline = time.monotonic() + STEP_TIMEOUT
        while time.monotonic() < deadline:
            entry = next((a for a in self.fleet.pool_addresses(view.pool_id) if a.name.lower() == name), None)
            if entry is not None and entry.admin_state == ADMIN_DOWN:
                self.say(f"  {view.name}: {ip} ({name}) is now adminState {ADMIN_DOWN}")
                return
            time.sleep(0.25)
        raise StepFailed(f"{ip} in {view.name} never showed adminState {ADMIN_DOWN}")

    def audit(self) -> Path:
        timers = sorted(self.stack.timer_functions(), key=lambda f: (f.name != AUDIT_FUNCTION,
                                                                     "audit" not in f.name))
        if not timers:
            raise StepFailed("the app has no timer function")
        started = time.time()
        status, body = send(self.host.admin_url(timers[0].name), "POST", b"{}",
                            {"x-functions-key": self.host.master_key, "Content-Type": "application/json"})
        self.say(f"  POST /admin/functions/{timers[0].name} -> {status}")
        if status != 202:
            raise StepFailed(f"the audit timer answered {status}: {body[:300]!r}")
        return self._fetch_report(started)

    def _fetch_report(self, since: float) -> Path:
        container = self.runtime.storage.blob_service().get_container_client(DEFAULT_REPORT_CONTAINER)
        reports = [blob for blob in container.list_blobs()
                   if blob.name.endswith(".html") and blob.last_modified.timestamp() >= since - 5]
        if not reports:
            raise StepFailed(f"no HTML report in container {DEFAULT_REPORT_CONTAINER!r} after the audit")
        newest = max(reports, key=lambda blob: blob.last_modified)
        html = container.download_blob(newest.name).readall()
        summary = json.loads(container.download_blob(newest.name.removesuffix(".html") + ".json").readall())
        managed = len(self.runtime.reconciler.managed_pool_ids())
        if summary.get("summary", {}).get("pools") != managed:
            raise StepFailed(f"the report covers {summary.get('summary')} pools, expected {managed}")
        local = self.stack.state_dir / "reports" / newest.name.replace("/", "-")
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(html)
        self.say(f"  report: {DEFAULT_REPORT_CONTAINER}/{newest.name} "
                 f"({summary['summary'].get('findings')} findings)")
        self.say(f"  HTML report: {local}")
        self.report = local
        return local

    def look_at_report(self) -> None:
        """The report as a browser shows it: a headless Chromium screenshot next to the HTML."""
        if self.report is None:
            raise StepFailed("no report to look at (the audit step failed)")
        if find_browser() is None:
            self.say(f"  no Chromium installed (apt-get install chromium); open {self.report} yourself")
            return
        png = self.report.with_suffix(".png")
        if not screenshot(self.report, png):
            raise StepFailed(f"Chromium wrote no screenshot of {self.report}")
        self.say(f"  screenshot: {png}")


def run_tour(stack: LocalStack, out: TextIO = sys.stdout) -> bool:
    tour = Tour(stack, out)
    steps = [
        ("initial sync through the HTTP API", tour.initial_sync),
        ("scale out", tour.scale_out),
        ("scale in", tour.scale_in),
        ("scale a scale set out and in", tour.scale_set),
        ("drain one address through the HTTP API", tour.drain),
        ("audit", tour.audit),
        ("the report in a browser", tour.look_at_report),
    ]
    results = []
    for number, (title, step) in enumerate(steps, 1):
        tour.say(f"\n[{number}/{len(steps)}] {title}")
        started = time.monotonic()
        try:
            step()
        except Exception as error:  # a failed step is reported; the tour goes on to show the rest
            tour.say(f"  FAILED: {type(error).__name__}: {error}")
            results.append(False)
            continue
        tour.say(f"  ok ({time.monotonic() - started:.1f}s)")
        results.append(True)
    verdict = "passed" if all(results) else "FAILED"
    tour.say(f"\ndemo {verdict}: {sum(results)}/{len(results)} steps as expected")
    return all(results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--state-dir", type=Path, default=STATE_DIR / "demo")
    parser.add_argument("--topology", type=Path, default=SAMPLE_TOPOLOGY)
    parser.add_argument("--rules", type=Path, default=SAMPLE_RULES)
    parser.add_argument("--app", default="function_app:app")
    args = parser.parse_args(argv)
    args.state_dir.mkdir(parents=True, exist_ok=True)
    log_path = args.state_dir / "demo.log"  # the app's logs; the console shows the tour
    logging.basicConfig(level=logging.INFO, filename=log_path, filemode="w",
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stack = LocalStack(state_dir=args.state_dir, topology=args.topology, rules=args.rules, app_spec=args.app,
                       host_port=0, operation_seconds=0.1)
    print("starting the local stack (Azurite, ARM emulator, Functions host)...", flush=True)
    with stack:
        assert stack.host is not None
        print(f"Functions host {stack.host.url}, ARM emulator "
              f"{stack.emulator.url if stack.emulator else '?'}", flush=True)
        passed = run_tour(stack)
    print(f"app logs: {log_path}", flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
