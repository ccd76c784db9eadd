"""Reading the Bicep templates in infra/ as data (pycep-parser), for the offline infrastructure tests.

pycep gives one dict per file: parameters, variables, resources, modules, outputs. A bare string value may
be a literal or a reference to a variable/parameter; `resolve` turns variable references into their values,
so tests compare what would actually be deployed.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from pycep import BicepParser

REPO_ROOT = Path(__file__).resolve().parents[2]
INFRA_DIR = REPO_ROOT / "infra"
MAIN_BICEP = INFRA_DIR / "main.bicep"
ACCESS_BICEP = INFRA_DIR / "access.bicep"


def bicep_files() -> list[Path]:
    return sorted(INFRA_DIR.rglob("*.bicep"))


@cache
def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)


def body(declaration: dict[str, Any]) -> dict[str, Any]:
    """The object body of a resource/module, unwrapping `if (...)` conditions and `for` loops."""
    config = declaration["config"]
    while "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def resolve(tree: dict[str, Any], value: Any) -> Any:
    """Replace a reference to a variable of this file by the variable's value (recursively)."""
    variables = tree.get("variables", {})
    if isinstance(value, str) and value in variables:
        return resolve(tree, variables[value]["value"])
    if isinstance(value, list):
        return [resolve(tree, item) for item in value]
    return value


def resources(tree: dict[str, Any], type_name: str | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
    """(symbolic name, declaration) of the resources a file declares (not `existing` ones), by type."""
    for name, declaration in tree.get("resources", {}).items():
        if declaration["existing"]:
            continue
        if type_name is None or declaration["type"].lower() == type_name.lower():
            yield name, declaration


def all_resources(type_name: str | None = None) -> Iterator[tuple[Path, str, dict[str, Any]]]:
    for path in bicep_files():
        tree = parse(path)
        for name, declaration in resources(tree, type_name):
            yield path, name, declaration


def one_resource(path: Path, type_name: str) -> dict[str, Any]:
    found = [declaration for _, declaration in resources(parse(path), type_name)]
    assert len(found) == 1, f"expected one {type_name} in {path.name}, found {len(found)}"
    return found[0]


def child_resources(declaration: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Nested child resources (`resource x 'config' = {...}` inside the parent body)."""
    return body(declaration).get("resources", {})


def required_parameters(tree: dict[str, Any]) -> set[str]:
    return {name for name, param in tree.get("parameters", {}).items() if param.get("default") is None}


def references(value: Any, name: str) -> bool:
    """Whether an expression tree mentions the symbol `name` anywhere (as a bare operand)."""
    if value == name:
        return True
    if isinstance(value, dict):
        return any(references(item, name) for item in value.values())
    if isinstance(value, list):
        return any(references(item, name) for item in value)
    return False
