"""poolsync Function app (Python v2 programming model).

Triggers live in handlers/ as Blueprints; this file only registers them.
"""

import azure.functions as func

from handlers import blueprints

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

for blueprint in blueprints():
    app.register_functions(blueprint)
