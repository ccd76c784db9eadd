"""Durations in app settings: ISO 8601 (`P7D`, `PT36H`, `P1DT12H`) or short (`36h`, `90m`, `7d`, `3600`)."""

from __future__ import annotations

import re
from datetime import timedelta

_ISO_DURATION = re.compile(
    r"^P(?:(?P<days>\d+(?:\.\d+)?)D)?(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$",
    re.IGNORECASE,
)
_SHORT_DURATION = re.compile(r"^(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>[smhd]?)$", re.IGNORECASE)
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, setting_name: str) -> timedelta:
    """The duration `text` names; ValueError naming `setting_name` when it names none."""
    raw = text.strip()
    iso = _ISO_DURATION.match(raw)
    if iso and raw.upper() not in ("P", "PT") and any(iso.groupdict().values()):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        return timedelta(**parts)
    short = _SHORT_DURATION.match(raw)
    if short:
        return timedelta(seconds=float(short["value"]) * _UNIT_SECONDS[short["unit"].lower()])
    raise ValueError(f"{setting_name} must be a duration like P7D, PT12H, 36h or 7d, got {text!r}")
