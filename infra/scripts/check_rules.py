"""azd prepackage hook: refuse to deploy a rules file the app would refuse at start-up.

Validates the rules file the app will load (POOLSYNC_RULES_FILE, default config/rules.json, relative to the
package root) with poolsync's own loader, so the messages are exactly the ones start-up would log, and checks
that the file is shipped: a relative path inside the project that .funcignore does not exclude.

    python infra/scripts/check_rules.py [--root <project root>]
"""

from __future__ import annotations

import argparse
import fnmatch
import os
import sys
from pathlib import Path, PurePosixPath

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RULES_FILE = "config/rules.json"  # infra/main.parameters.json uses the same default


def funcignore_patterns(root: Path) -> list[str]:
    path = root / ".funcignore"
    if not path.exists():
        return []
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def is_ignored(relative: str, patterns: list[str]) -> bool:
    """gitignore-style matching, the subset .funcignore files use: `dir/`, globs, `!negation`; the last
    matching pattern wins."""
    parts = PurePosixPath(relative).parts
    ignored = False
    for raw in patterns:
        negated = raw.startswith("!")
        pattern = raw[1:] if negated else raw
        directory_only = pattern.endswith("/")
        pattern = pattern.strip("/")
        # A pattern matches the path itself, any parent directory, or (without a slash) any single component.
        candidates = ["/".join(parts[: i + 1]) for i in range(len(parts) - (1 if directory_only else 0))]
        if "/" not in pattern:
            candidates += list(parts[:-1] if directory_only else parts)
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            ignored = not negated
    return ignored


def shipping_problem(rules_file: str, root: Path) -> str | None:
    """Why the deployed package would not contain `rules_file`, or None."""
    path = PurePosixPath(rules_file.replace("\\", "/"))
    if path.is_absolute() or Path(rules_file).is_absolute():
        return f"POOLSYNC_RULES_FILE must be relative to the package root, not {rules_file!r}"
    if ".." in path.parts:
        return f"POOLSYNC_RULES_FILE {rules_file!r} points outside the package"
    if is_ignored(str(path), funcignore_patterns(root)):
        return f"{rules_file} is excluded from the package by .funcignore"
    return None


def check(root: Path, env: dict[str, str]) -> tuple[bool, str]:
    """(ok, message) for the rules the deployed app would load."""
    rules_file = (env.get("POOLSYNC_RULES_FILE") or "").strip() or DEFAULT_RULES_FILE
    problem = shipping_problem(rules_file, root)
    if problem:
        return False, problem
    sys.path.insert(0, str(REPO_ROOT))
    from shared.core.rules import RulesError, load_rules

    previous = Path.cwd()
    os.chdir(root)  # the app resolves the relative path against its package root; so do we
    try:
        ruleset = load_rules({"POOLSYNC_RULES_FILE": rules_file})
    except RulesError as error:
        return False, str(error)
    finally:
        os.chdir(previous)
    return True, f"{rules_file}: {len(ruleset.rules)} rule(s), valid"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="project (package) root")
    args = parser.parse_args(argv)
    ok, message = check(args.root.resolve(), dict(os.environ))
    print(message if ok else f"poolsync: not deploying: {message}", file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
