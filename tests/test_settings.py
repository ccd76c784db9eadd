"""Every app setting poolsync reads is declared once in shared/settings.py, documented in README's
settings table with the default the code applies, and read nowhere else from the environment."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest

from shared import settings
from shared.audit.collect import parse_duration

REPO = Path(__file__).resolve().parents[1]
# Every entry point: the Functions app, the CLI, the local stack and the benchmarks.
ENTRY_POINT_PACKAGES = ("shared", "handlers", "cli", "devstack", "bench")
APP_SOURCES = sorted([*(path for package in ENTRY_POINT_PACKAGES for path in (REPO / package).rglob("*.py")),
                      REPO / "function_app.py"])
SETTINGS_MODULE = REPO / "shared" / "settings.py"
DECLARED = {setting.name: setting for setting in settings.ALL}


def readme_settings_table() -> dict[str, str]:
    """Setting name -> its default cell (split per name where one row lists several)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Configuration (app settings)", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names = re.findall(r"`([^`]+)`", cells[0])
        defaults = re.findall(r"`([^`]+)`", cells[2])
        for position, name in enumerate(names):
            rows[name] = defaults[position] if len(defaults) == len(names) else cells[2]
    return rows


def test_names_are_declared_once() -> None:
    assert len(DECLARED) == len(settings.ALL)


@pytest.mark.parametrize("name", sorted(DECLARED))
def test_every_declared_setting_is_in_the_readme_table_with_its_default(name: str) -> None:
    table = readme_settings_table()
    assert name in table, f"{name} is missing from README's settings table"
    documented, default = table[name], DECLARED[name].default
    if default is None:
        assert not re.fullmatch(r"[\d.]+", documented), f"{name}: README names a default the code lacks"
    elif isinstance(default, bool):
        assert documented == str(default).lower()
    elif isinstance(default, int | float):
        assert float(documented) == float(default)
    elif isinstance(default, timedelta):
        assert parse_duration(documented) == default
    else:
        assert documented == default


def test_every_entry_point_package_is_scanned() -> None:
    scanned = {path.relative_to(REPO).parts[0] for path in APP_SOURCES}
    assert scanned == {*ENTRY_POINT_PACKAGES, "function_app.py"}


def test_no_module_but_the_settings_module_reads_the_environment() -> None:
    direct = re.compile(r"\bos\.environ\b|\bgetenv\(|\.get\(\s*[\"'](POOLSYNC_|AzureWebJobsStorage|"
                        r"APPLICATIONINSIGHTS_|WEBSITE_)")
    offenders = [f"{path.relative_to(REPO)}:{number}: {line.strip()}"
                 for path in APP_SOURCES if path != SETTINGS_MODULE
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if direct.search(line)]
    assert offenders == []


def test_every_poolsync_setting_named_in_the_code_is_declared() -> None:
    named = {match for path in APP_SOURCES
             for match in re.findall(r"\bPOOLSYNC_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8"))}
    assert named - DECLARED.keys() == set()


def test_settings_are_read_from_the_given_mapping_before_the_process_environment() -> None:
    given = {"POOLSYNC_RETRY_DEADLINE": "7"}
    assert settings.RETRY_DEADLINE.get(settings.app_settings(given)) == "7"
    assert settings.RETRY_DEADLINE.get({}) == settings.RETRY_DEADLINE.default
    assert settings.INTENTS_TABLE.or_default({"POOLSYNC_INTENTS_TABLE": ""}) == "poolsyncintents"
    assert settings.RULES.text({"POOLSYNC_RULES": "  {}  "}) == "{}"


def test_settings_exported_to_the_process_come_back_out_as_they_were(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOLSYNC_RETRY_DEADLINE", "9")
    monkeypatch.delenv("POOLSYNC_RETRY_MAX_ATTEMPTS", raising=False)
    previous = settings.export_to_process({"POOLSYNC_RETRY_DEADLINE": "7",
                                           "POOLSYNC_RETRY_MAX_ATTEMPTS": "3"})
    assert settings.RETRY_DEADLINE.get(settings.app_settings()) == "7"
    assert settings.RETRY_MAX_ATTEMPTS.get(settings.app_settings()) == "3"
    assert settings.child_environment(EXTRA="x")["POOLSYNC_RETRY_MAX_ATTEMPTS"] == "3"
    settings.restore_process(previous)
    assert settings.RETRY_DEADLINE.get(settings.app_settings()) == "9"
    assert "POOLSYNC_RETRY_MAX_ATTEMPTS" not in settings.app_settings()
