"""poolsync Function app (Python v2 programming model).

Triggers live in handlers/ as Blueprints; this file only registers them and starts telemetry export.
"""

import azure.functions as func

from handlers import blueprints
from shared import telemetry

# Once per worker process, before any trigger runs: without it the OpenTelemetry meters are no-ops.
telemetry.configure()

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in blueprints():
    app.register_functions(blueprint)
