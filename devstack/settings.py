"""App settings aimed at the local ARM emulator and Azurite - shared by `make run`, tests and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

STATIC_TOKEN = "devstack"  # the emulator accepts any bearer token


def local_settings(
    arm_url: str,
    ca_path: str,
    storage_connection_string: str | None = None,
    *,
    rules: Mapping[str, Any] | str | None = None,
    rules_path: Path | str | None = None,
    **overrides: str,
) -> dict[str, str]:
    """What the Function app reads, pointed at the emulator (and Azurite); `overrides` win."""
    settings = {
        "POOLSYNC_ARM_ENDPOINT": arm_url,
        "POOLSYNC_ARM_CA_BUNDLE": ca_path,
        "POOLSYNC_ARM_STATIC_TOKEN": STATIC_TOKEN,
        "POOLSYNC_ARM_POLLING_INTERVAL": "0.05",
    }
    if rules is not None:
        settings["POOLSYNC_RULES"] = rules if isinstance(rules, str) else json.dumps(rules)
    if rules_path is not None:
        settings["POOLSYNC_RULES_FILE"] = str(rules_path)
    if storage_connection_string is not None:
        settings["AzureWebJobsStorage"] = storage_connection_string
    settings.update(overrides)
    return settings
