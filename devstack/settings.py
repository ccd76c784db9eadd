"""App settings aimed at the local ARM emulator and Azurite - shared by `make run`, tests and benchmarks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared import settings as declared

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
        declared.ARM_ENDPOINT.name: arm_url,
        declared.ARM_CA_BUNDLE.name: ca_path,
        declared.ARM_STATIC_TOKEN.name: STATIC_TOKEN,
        declared.ARM_POLLING_INTERVAL.name: "0.05",
    }
    if rules is not None:
        settings[declared.RULES.name] = rules if isinstance(rules, str) else json.dumps(rules)
    if rules_path is not None:
        settings[declared.RULES_FILE.name] = str(rules_path)
    if storage_connection_string is not None:
        settings[declared.STORAGE_CONNECTION.name] = storage_connection_string
    settings.update(overrides)
    return settings
