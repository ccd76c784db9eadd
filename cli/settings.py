"""Where the CLI's app settings and Azure credential come from.

Settings: the environment, then `--settings local.settings.json` (its "Values") on top, so an explicit
file wins. A relative POOLSYNC_RULES_FILE in that file is read next to the file when it exists there.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from azure.core.credentials import TokenCredential

from shared.azure.clients import ArmSettings
from shared.settings import RULES_FILE, app_settings

AUTH_CHOICES = ("default", "cli", "managed-identity")
# The HTTP API's app-role check trusts App Service Authentication; the CLI caller is instead the Azure
# identity it signs in with, authorised by Azure RBAC on every call, so the role setting does not apply.
HTTP_ONLY_SETTINGS = ("POOLSYNC_REQUIRED_ROLE",)


class SettingsError(ValueError):
    """The settings file cannot be used; the message names it."""


def read_settings_file(path: Path) -> dict[str, str]:
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise SettingsError(f"cannot read {path}: {error.strerror or error}") from None
    except ValueError as error:
        raise SettingsError(f"{path} is not JSON: {error}") from None
    values = document.get("Values") if isinstance(document, dict) else None
    if not isinstance(values, dict):
        raise SettingsError(f'{path} has no "Values" object (the local.settings.json format)')
    bad = [key for key, value in values.items() if not isinstance(value, str | int | float | bool)]
    if bad:
        raise SettingsError(f"{path}: Values.{bad[0]} must be a string")
    settings = {key: value if isinstance(value, str) else json.dumps(value) for key, value in values.items()}
    rules_file = RULES_FILE.text(settings)
    if rules_file and not Path(rules_file).is_absolute() and (path.parent / rules_file).exists():
        settings[RULES_FILE.name] = str((path.parent / rules_file).resolve())
    return settings


def load_settings(settings_file: Path | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    settings = dict(app_settings(environ))
    if settings_file is not None:
        settings.update(read_settings_file(settings_file))
    for key in HTTP_ONLY_SETTINGS:
        settings.pop(key, None)
    return settings


def credential_for(auth: str, settings: Mapping[str, str]) -> TokenCredential:
    """`default`: the emulator's static token when configured, else DefaultAzureCredential (environment,
    workload identity, managed identity, az login, ...); `cli`: the `az login` account only;
    `managed-identity`: the machine's identity (AZURE_CLIENT_ID picks a user-assigned one)."""
    if auth == "cli":
        from azure.identity import AzureCliCredential

        return AzureCliCredential()
    if auth == "managed-identity":
        from azure.identity import ManagedIdentityCredential

        return ManagedIdentityCredential(client_id=settings.get("AZURE_CLIENT_ID") or None)
    return ArmSettings.from_env(settings).credential()
