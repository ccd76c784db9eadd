"""Issue 14's mechanical move: `git mv` shared/ and tests/ into layered packages, rewrite every reference.

Run from the repository root: `python tools/relayout.py` does the moves and rewrites all tracked text
files; `python tools/relayout.py --rewrite FILE...` only rewrites the named files (for files changed on
another branch meanwhile). Rewriting is idempotent: a reference already in the new layout is left alone.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# old path -> new path, relative to the repository root.
SHARED_MOVES = {
    "shared/ids.py": "shared/core/ids.py",
    "shared/models.py": "shared/core/models.py",
    "shared/naming.py": "shared/core/naming.py",
    "shared/rules.py": "shared/core/rules.py",
    "shared/rules.schema.json": "shared/core/rules.schema.json",
    "shared/membership.py": "shared/core/membership.py",
    "shared/plan.py": "shared/core/plan.py",
    "shared/changes.py": "shared/core/changes.py",
    "shared/events.py": "shared/core/events.py",
    "shared/audit.py": "shared/core/audit_findings.py",
    "shared/arm_json.py": "shared/core/arm_json.py",
    "shared/azure_clients.py": "shared/azure/clients.py",
    "shared/retry.py": "shared/azure/retry.py",
    "shared/inventory.py": "shared/azure/inventory.py",
    "shared/pool_writer.py": "shared/azure/pool_writer.py",
    "shared/storage.py": "shared/storage/account.py",
    "shared/intents.py": "shared/storage/intents.py",
    "shared/members.py": "shared/storage/member_index.py",
    "shared/reconcile_log.py": "shared/storage/reconcile_log.py",
    "shared/report_store.py": "shared/storage/report_store.py",
    "shared/audit_jobs.py": "shared/storage/audit_jobs.py",
    "shared/runtime.py": "shared/app/runtime.py",
    "shared/reconciler.py": "shared/app/reconciler.py",
    "shared/flusher.py": "shared/app/flusher.py",
    "shared/health_check.py": "shared/app/health.py",
    "shared/audit_collect.py": "shared/audit/collect.py",
    "shared/audit_report.py": "shared/audit/report.py",
    "shared/audit_report.schema.json": "shared/audit/report.schema.json",
    "shared/http_ops.py": "shared/api/operations.py",
    "shared/openapi.json": "shared/api/openapi.json",
}

TEST_MOVES = {
    "tests/core/helpers.py": "tests/azure/helpers.py",
    "tests/core/test_pool_writer.py": "tests/azure/test_pool_writer.py",
    "tests/core/test_reconciler.py": "tests/app/test_reconciler.py",
    "tests/core/test_runtime_startup.py": "tests/app/test_runtime_startup.py",
    "tests/core/test_telemetry.py": "tests/test_telemetry.py",
    "tests/unit/test_address_naming.py": "tests/core/test_address_naming.py",
    "tests/unit/test_guarded_plan_properties.py": "tests/core/test_guarded_plan_properties.py",
    "tests/unit/test_identity_and_guard.py": "tests/core/test_identity_and_guard.py",
    "tests/unit/test_membership_engine.py": "tests/core/test_membership_engine.py",
    "tests/unit/test_pool_plan.py": "tests/core/test_pool_plan.py",
    "tests/unit/test_pool_plan_properties.py": "tests/core/test_pool_plan_properties.py",
    "tests/unit/test_rules_validation.py": "tests/core/test_rules_validation.py",
    "tests/unit/unit_factories.py": "tests/core/unit_factories.py",
    "tests/events/test_event_parsing.py": "tests/core/test_event_parsing.py",
    "tests/events/__init__.py": "tests/app/events/__init__.py",
    "tests/events/conftest.py": "tests/app/events/conftest.py",
    "tests/events/helpers.py": "tests/app/events/helpers.py",
    "tests/events/test_burst.py": "tests/app/events/test_burst.py",
    "tests/events/test_event_flow.py": "tests/app/events/test_event_flow.py",
    "tests/events/test_flush_loop.py": "tests/app/events/test_flush_loop.py",
    "tests/events/test_review_faults.py": "tests/app/events/test_review_faults.py",
}
TEST_DIR_MOVES = {"tests/http": "tests/api"}  # moved whole

NEW_PACKAGES = {
    "shared/core": "Pure decision logic (no I/O, no Azure SDK): ids, models, rules, membership, naming, "
    "plans.",
    "shared/azure": "Talking to Azure Resource Manager: SDK clients, the retry policy, inventory reads, "
    "pool writes.",
    "shared/storage": "Durable state in Azure Storage: intents and leases, member index, reconcile log, "
    "audit reports and jobs.",
    "shared/app": "The running app: runtime wiring, reconciler, event flusher, health check.",
    "shared/audit": "The audit run: list-based reads, findings, report rendering and storage.",
    "shared/api": "The HTTP runbook API without azure.functions types.",
    "tests/azure": None,
    "tests/app": None,
}

TEXT_SUFFIXES = {".py", ".md", ".json", ".bicep", ".toml", ".yaml", ".yml", ".txt", ".cfg", ".ini", ""}

# Module names that became packages: their new children must not be rewritten again.
_PACKAGE_CHILDREN = {
    "shared.storage": ("account", "intents", "member_index", "reconcile_log", "report_store", "audit_jobs"),
    "shared.audit": ("collect", "report", "jobs"),
}

# Module files whose position relative to the repository root, or whose data file's name, changed.
_DEPTH_FIXES = {
    "shared/core/rules.py": [("Path(__file__).resolve().parent.parent / candidate",
                              "Path(__file__).resolve().parents[2] / candidate")],
    "shared/api/operations.py": [('Path(__file__).parents[1] / "pyproject.toml"',
                                  'Path(__file__).parents[2] / "pyproject.toml"')],
    "shared/audit/report.py": [("audit_report.schema.json", "report.schema.json")],
    "tests/test_telemetry.py": [("Path(__file__).resolve().parents[2]",
                                 "Path(__file__).resolve().parents[1]")],
}

_IMPORT_FIXES = [
    ("from shared import http_ops, telemetry\n",
     "from shared import telemetry\nfrom shared.api import operations as http_ops\n"),
    ("from shared import http_ops\n", "from shared.api import operations as http_ops\n"),
    # tests/unit had no __init__.py (pytest put it on sys.path); tests/core is a package.
    ("from unit_factories import", "from tests.core.unit_factories import"),
]


def _module(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


def _all_moves() -> dict[str, str]:
    moves = dict(SHARED_MOVES) | dict(TEST_MOVES)
    for old_dir, new_dir in TEST_DIR_MOVES.items():
        moves[old_dir + "/"] = new_dir + "/"
    return moves


def _dotted_pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    mapping: dict[str, str] = {}
    for old, new in (SHARED_MOVES | TEST_MOVES).items():
        if old.endswith(".py") and not old.endswith("__init__.py"):
            mapping[_module(old)] = _module(new)
    for old_dir, new_dir in TEST_DIR_MOVES.items():
        mapping[_module(old_dir)] = _module(new_dir)
    mapping["tests.events"] = "tests.app.events"
    alternatives = []
    for old in sorted(mapping, key=len, reverse=True):
        guard = ""
        if old in _PACKAGE_CHILDREN:
            # Now a package too: only `from shared.audit import X` / `shared.audit.X` mean the old module.
            guard = r"(?!\.(?:" + "|".join(_PACKAGE_CHILDREN[old]) + r")\b)(?=\s+import\b|\.\w)"
        alternatives.append(re.escape(old) + r"(?![\w])" + guard)
    return re.compile(r"(?<![\w.])(" + "|".join(alternatives) + ")"), mapping


def _path_pattern() -> tuple[re.Pattern[str], dict[str, str]]:
    mapping = _all_moves()
    mapping["tests/events/"] = "tests/app/events/"
    mapping["tests/unit/"] = "tests/core/"
    alternatives = [re.escape(old) + (r"(?![\w.])" if not old.endswith("/") else "")
                    for old in sorted(mapping, key=len, reverse=True)]
    return re.compile(r"(?<![\w/])(?:\.\./)?(" + "|".join(alternatives) + ")"), mapping


def rewrite_text(text: str) -> str:
    for old, new in _IMPORT_FIXES:
        text = text.replace(old, new)
    dotted, dotted_map = _dotted_pattern()
    text = dotted.sub(lambda m: dotted_map[m.group(1)], text)
    paths, path_map = _path_pattern()
    return paths.sub(lambda m: m.group(0).replace(m.group(1), path_map[m.group(1)]), text)


def rewrite(files: list[Path]) -> None:
    for path in files:
        if path.suffix not in TEXT_SUFFIXES or not path.is_file():
            continue
        if path.resolve() == Path(__file__).resolve():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        new = rewrite_text(text)
        relative = path.resolve().relative_to(ROOT).as_posix()
        for old, fixed in _DEPTH_FIXES.get(relative, []):
            new = new.replace(old, fixed)
        if new != text:
            path.write_text(new, encoding="utf-8")


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout


def move() -> None:
    # shared/storage.py becomes shared/storage/account.py: park it first so the directory can exist.
    git("mv", "shared/storage.py", "shared/_storage_module.py")
    moves = dict(SHARED_MOVES)
    moves["shared/_storage_module.py"] = moves.pop("shared/storage.py")
    for package, doc in NEW_PACKAGES.items():
        (ROOT / package).mkdir(parents=True, exist_ok=True)
        init = ROOT / package / "__init__.py"
        if not init.exists():
            init.write_text(f'"""{doc}"""\n' if doc else "", encoding="utf-8")
            git("add", str(init.relative_to(ROOT)))
    for old, new in (moves | TEST_MOVES | TEST_DIR_MOVES).items():
        (ROOT / new).parent.mkdir(parents=True, exist_ok=True)
        git("mv", old, new)


def main(argv: list[str]) -> None:
    if argv[:1] == ["--rewrite"]:
        rewrite([Path(name) for name in argv[1:]])
        return
    move()
    rewrite([ROOT / name for name in git("ls-files").splitlines()])


if __name__ == "__main__":
    main(sys.argv[1:])
