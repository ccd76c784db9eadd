"""Function names the documents tell readers to use (Event Grid webhook URLs) exist in the app."""

from __future__ import annotations

import re
from pathlib import Path

from function_app import app

ROOT = Path(__file__).resolve().parents[1]


def test_every_function_name_in_the_docs_is_a_function_of_the_app() -> None:
    functions = {str(function.get_function_name()) for function in app.get_functions()}
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {(path.name, name) for path in documents
             for name in re.findall(r"functionName=([A-Za-z0-9_]+)", path.read_text(encoding="utf-8"))}
    assert {path for path, _ in named} >= {"README.md", "emulator.md", "operations.md"}
    assert {(path, name) for path, name in named if name not in functions} == set()
