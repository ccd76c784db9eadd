"""Timer trigger: the scheduled compliance audit (read-only unless POOLSYNC_AUDIT_REMEDIATE=true).

The schedule is an NCRONTAB expression from POOLSYNC_AUDIT_SCHEDULE, read when the host indexes the
functions; default daily at 03:00 UTC.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import settings
from shared.app.runtime import get_runtime
from shared.audit.collect import run_audit

log = logging.getLogger("poolsync.audit")

bp = func.Blueprint()


@bp.function_name("audit_timer")
@bp.timer_trigger(
    arg_name="timer", schedule=settings.AUDIT_SCHEDULE.or_default(settings.app_settings()),
    run_on_startup=False, use_monitor=True,
)
def audit_timer(timer: func.TimerRequest) -> None:
    if timer.past_due:
        log.warning("audit timer is past due; running now")
    run_audit(get_runtime())
