"""azd postprovision hook: deploy infra/access.bicep as a deployment azd does not own.

main.bicep outputs POOLSYNC_ACCESS_PARAMETERS (one JSON object); azd puts it in this hook's environment. This
script turns it into a parameters file and runs `az deployment sub create` under its own name
(poolsync-access-<env>) and without azd's azd-env-name tag, so `azd down` never lists - and never deletes -
the customer's resource groups these role assignments and topics live in.

    python infra/scripts/provision_access.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ACCESS_TEMPLATE = Path(__file__).resolve().parents[1] / "access.bicep"
PARAMETERS_OUTPUT = "POOLSYNC_ACCESS_PARAMETERS"


class HookError(Exception):
    pass


def deployment_name(env_name: str) -> str:
    return f"poolsync-access-{env_name}"


def parameters_document(env: Mapping[str, str]) -> dict[str, Any]:
    raw = env.get(PARAMETERS_OUTPUT)
    if not raw:
        raise HookError(f"{PARAMETERS_OUTPUT} is not set: run `azd provision` (main.bicep outputs it) first")
    try:
        values = json.loads(raw)
    except ValueError as error:
        raise HookError(f"{PARAMETERS_OUTPUT} is not JSON: {error}") from None
    if not isinstance(values, dict):
        raise HookError(f"{PARAMETERS_OUTPUT} must be a JSON object")
    return {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {name: {"value": value} for name, value in values.items()},
    }


def deploy_command(env: Mapping[str, str], parameters_file: str) -> list[str]:
    missing = [name for name in ("AZURE_ENV_NAME", "AZURE_LOCATION") if not env.get(name)]
    if missing:
        raise HookError(f"missing azd environment value(s): {', '.join(missing)}")
    command = [
        "az",
        "deployment",
        "sub",
        "create",
        "--name",
        deployment_name(env["AZURE_ENV_NAME"]),
        "--location",
        env["AZURE_LOCATION"],
        "--template-file",
        str(ACCESS_TEMPLATE),
        "--parameters",
        f"@{parameters_file}",
        "--only-show-errors",
        "--output",
        "none",
    ]
    if env.get("AZURE_SUBSCRIPTION_ID"):
        command += ["--subscription", env["AZURE_SUBSCRIPTION_ID"]]
    return command


def main() -> int:
    env = dict(os.environ)
    try:
        document = parameters_document(env)
        with tempfile.TemporaryDirectory() as folder:
            parameters_file = Path(folder) / "access.parameters.json"
            parameters_file.write_text(json.dumps(document), encoding="utf-8")
            command = deploy_command(env, str(parameters_file))
            command[0] = shutil.which("az") or "az"  # az.cmd on Windows
            print(f"poolsync: deploying access.bicep as {deployment_name(env['AZURE_ENV_NAME'])}", flush=True)
            return subprocess.run(command, check=False).returncode
    except HookError as error:
        print(f"poolsync: access deployment not started: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
