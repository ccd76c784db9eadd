"""The first full reconcile at start-up (shared.app.first_build): a timer the host runs once when it starts
(runOnStartup), in the background of start-up, and then on its schedule until the member index is built."""

from __future__ import annotations

import logging

import azure.functions as func

from shared import settings
from shared.app.first_build import build_member_index_once
from shared.app.runtime import get_runtime

log = logging.getLogger("poolsync.first_build")

bp = func.Blueprint()


@bp.function_name("first_build_timer")
@bp.timer_trigger(arg_name="timer",
                  schedule=settings.FIRST_BUILD_SCHEDULE.or_default(settings.app_settings()),
                  run_on_startup=True, use_monitor=False)
def first_build_timer(timer: func.TimerRequest) -> None:
    """Cheap once built (a cached flag); before that, one instance runs the full reconcile under a lease."""
    runtime = get_runtime()
    result = build_member_index_once(runtime.reconciler, runtime.writer.locks)
    log.info("first build: %s", result.reason)
