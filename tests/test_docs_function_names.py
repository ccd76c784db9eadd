"""Function names the documents tell readers to use (Event Grid webhook URLs) exist in the app."""

from __future__ import annotations

import re
from pathlib import Path

import azure.functions as func

from function_app import BLUEPRINTS

ROOT = Path(__file__).resolve().parents[1]


def test_every_function_name_in_the_docs_is_a_function_of_the_app() -> None:
    # A fresh app from the same blueprints: function_app.app answers get_functions() once per process.
    app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
    for blueprint in BLUEPRINTS:
        app.register_functions(blueprint)
    functions = {str(function.get_function_name()) for function in app.get_functions()}
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {(path.name, name) for path in documents
             for name in re.findall(r"functionName=([A-Za-z0-9_]+)", path.read_text(encoding="utf-8"))}
    assert {path for path, _ in named} >= {"README.md", "emulator.md", "operations.md"}
    assert {(path, name) for path, name in named if name not in functions} == set()
