"""azd preprovision hook: refuse to provision into a resource group this azd environment did not create.

main.bicep deploys the app's resource group (AZURE_RESOURCE_GROUP, default rg-poolsync-<env>) and tags it
azd-env-name=<env>. `azd down` deletes every resource group its deployment lists - the whole group, with
whatever else lives in it. Naming an existing group (a shared "apps" or network group) would therefore let
`azd down` delete things poolsync never created. This hook stops `azd provision` before anything is deployed
when the group exists without azd-env-name=<this env>; it passes when the group does not exist yet (azd will
create it) or when this environment created it (a re-provision).

POOLSYNC_ALLOW_EXISTING_RESOURCE_GROUP=true overrides the refusal with a warning, for a group set aside for
poolsync alone whose deletion by `azd down` is accepted.

    python infra/scripts/check_resource_group.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

AZD_TAG = "azd-env-name"
OVERRIDE = "POOLSYNC_ALLOW_EXISTING_RESOURCE_GROUP"


class HookError(Exception):
    pass


def target_group(env: Mapping[str, str]) -> str:
    """The group main.bicep deploys into (the same default as its appResourceGroupName)."""
    env_name = env.get("AZURE_ENV_NAME")
    if not env_name:
        raise HookError("missing azd environment value AZURE_ENV_NAME")
    return env.get("AZURE_RESOURCE_GROUP") or f"rg-poolsync-{env_name}"


def az(env: Mapping[str, str], *args: str) -> str:
    command = [shutil.which("az") or "az", *args, "--only-show-errors", "--output", "json"]
    if env.get("AZURE_SUBSCRIPTION_ID"):
        command += ["--subscription", env["AZURE_SUBSCRIPTION_ID"]]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HookError(f"`az {' '.join(args)}` failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def existing_group(env: Mapping[str, str], name: str) -> dict[str, Any] | None:
    if not json.loads(az(env, "group", "exists", "--name", name)):
        return None
    group: dict[str, Any] = json.loads(az(env, "group", "show", "--name", name))
    return group


def verdict(env: Mapping[str, str], name: str, group: dict[str, Any] | None) -> tuple[bool, str]:
    """(may provision, message) for the target group as found in Azure (None = absent)."""
    env_name = env["AZURE_ENV_NAME"]
    if group is None:
        return True, f"resource group {name} does not exist yet; azd creates it for environment {env_name}"
    owner = (group.get("tags") or {}).get(AZD_TAG)
    if owner == env_name:
        return True, f"resource group {name} was created by azd environment {env_name}"
    held_by = f"azd environment {owner!r}" if owner else "no azd environment"
    hazard = (
        f"resource group {name} already exists and belongs to {held_by}. Provisioning tags it "
        f"{AZD_TAG}={env_name}, and `azd down` would then delete the whole group, including everything in it "
        f"that poolsync did not create."
    )
    if env.get(OVERRIDE, "").lower() == "true":
        return True, f"WARNING: {hazard} Continuing because {OVERRIDE}=true."
    return False, (
        f"{hazard} Leave AZURE_RESOURCE_GROUP unset (poolsync gets rg-poolsync-{env_name}) "
        f"or name a new group; "
        f"if this group is poolsync's alone and may be deleted with it, run "
        f"`azd env set {OVERRIDE} true`."
    )


def main() -> int:
    env = dict(os.environ)
    try:
        name = target_group(env)
        allowed, message = verdict(env, name, existing_group(env, name))
    except HookError as error:
        print(f"poolsync: cannot check the target resource group: {error}", file=sys.stderr)
        return 1
    quiet = allowed and not message.startswith("WARNING")
    print(f"poolsync: {message}", file=sys.stdout if quiet else sys.stderr, flush=True)
    return 0 if allowed else 1


if __name__ == "__main__":
    sys.exit(main())
