"""poolsync Function app (Python v2 programming model).

Triggers live in handlers/ as Blueprints; this file only registers them and starts telemetry export.
"""

import azure.functions as func

from handlers.audit_queue import bp as audit_queue_bp
from handlers.audit_timer import bp as audit_timer_bp
from handlers.events import bp as events_bp
from handlers.first_build import bp as first_build_bp
from handlers.http_api import bp as http_api_bp
from shared import telemetry

# Function names are part of the deployment contract (infra/ wires Event Grid to
# `eventgrid_resource_events`), so they are fixed in the handler modules, not derived.
BLUEPRINTS: tuple[func.Blueprint, ...] = (
    events_bp, http_api_bp, audit_timer_bp, audit_queue_bp, first_build_bp,
)

# Once per worker process, before any trigger runs: without it the OpenTelemetry meters are no-ops.
telemetry.configure()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in BLUEPRINTS:
    app.register_functions(blueprint)
