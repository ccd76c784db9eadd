"""A new deployment fills its pools at start-up: the local stack, started on the sample world with empty pools
and no member index, shows the tagged VMs in `/api/pools` without any timer, event or request to reconcile."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from devstack.stack import LocalStack
from shared.app.first_build import FIRST_BUILD_LEASE, build_member_index_once
from shared.app.runtime import get_runtime


def pools(stack: LocalStack) -> dict[str, dict[str, Any]]:
    assert stack.host is not None
    request = urllib.request.Request(stack.host.http_url("pools"),
                                     headers={"x-functions-key": stack.host.master_key})
    with urllib.request.urlopen(request, timeout=120) as response:
        body = json.load(response)
    return {pool["id"].rsplit("/", 1)[-1]: pool for pool in body["pools"]}


def test_pools_hold_the_tagged_vms_right_after_start(tmp_path: Path) -> None:
    with LocalStack(state_dir=tmp_path / "state") as stack:
        assert stack.emulator is not None and stack.host is not None
        started = time.monotonic()
        first = pools(stack)  # answered while the start-up build may still run: start-up is not blocked
        first_seconds = time.monotonic() - started
        assert set(first) == {"pool-web", "pool-api"}
        deadline = time.monotonic() + 90
        seen = first
        while time.monotonic() < deadline and not all(p["lastReconcile"] for p in seen.values()):
            time.sleep(0.2)
            seen = pools(stack)
        filled_seconds = time.monotonic() - started
        # the sample world: 3 tagged web VMs + ss-web's 2 Uniform instances; 2 api VMs + ss-api's 2 Flexible
        assert {name: p["managedCount"] for name, p in seen.items()} == {"pool-web": 5, "pool-api": 4}
        assert seen["pool-web"]["lastReconcile"]["source"] == "first-build"
        # Nobody asked: no event was delivered and no function but the start-up timer ran.
        ran = {name for (name, _status) in stack.host._replies}
        assert ran <= {"first_build_timer", "http_list_pools"}, ran
        assert ("first_build_timer", 202) in stack.host._replies

        # Built now: another start (a second instance, a restart) does not reconcile again.
        runtime = get_runtime()
        again = build_member_index_once(runtime.reconciler, runtime.writer.locks)
        assert (again.ran, again.reason) == (False, "built already")
    print(f"\nfirst /api/pools {first_seconds:.2f} s after the host started; members {filled_seconds:.2f} s")


def test_only_one_instance_runs_the_first_build(tmp_path: Path) -> None:
    with LocalStack(state_dir=tmp_path / "state", app_spec="tests.devstack.test_first_build:APP") as stack:
        runtime = get_runtime()
        locks = runtime.writer.locks
        assert locks is not None and stack.host is not None
        held = locks.try_acquire_named(FIRST_BUILD_LEASE)  # another instance is building
        assert held is not None
        try:
            waiting = build_member_index_once(runtime.reconciler, locks)
        finally:
            held.release()
        assert (waiting.ran, waiting.reason) == (False, "another instance is building")
        assert not runtime.reconciler.index_ready()

        built = build_member_index_once(runtime.reconciler, locks)
        assert built.ran and {o.status for o in built.outcomes} == {"written"}
        assert runtime.reconciler.index_ready()


def _app_without_startup_timer() -> Any:
    import azure.functions as func

    from handlers.http_api import bp

    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    app.register_functions(bp)
    return app


APP = _app_without_startup_timer()
