"""Which Bicep expressions Azure Resource Manager can evaluate when a deployment starts.

The `name` of a resource or module must be known before anything is deployed; the Bicep compiler rejects
anything else with BCP120 ("requires a value that can be calculated at the start of the deployment"). No
compiler runs in CI, so `start_time_problems` re-checks that rule on pycep's expression trees: a module's
outputs, `reference()`, `list*()` and any resource property other than id/name/type/apiVersion are only
known once something has been deployed. Variables and loop items are followed to what they are built from.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.infra.bicep_tree import body, parse

# Resource properties Resource Manager computes from the declaration alone.
START_TIME_PROPERTIES = frozenset({"id", "name", "type", "apiVersion"})
# What identifies a declaration: `name`, or for a Microsoft Graph resource its client-provided `uniqueName`.
NAME_KEYS = ("name", "uniqueName")
RUNTIME_FUNCTIONS = frozenset({"reference", "list_func"})  # pycep's names for reference() and list*(...)

_ACCESSORS = {"property_accessor", "index_accessor", "function_accessor"}
_INTERPOLATION = re.compile(r"\$\{(.*?)\}")
_CHAIN = re.compile(r"(?<![\w.'])([A-Za-z_]\w*)((?:\s*\.\s*\w+(?:\([^()]*\))?|\[[^\]]*\])*)")
_CALL = re.compile(r"(?<![\w.])(reference|list\w*)\s*\(")


class Scope:
    """The symbols of one Bicep file, and the loop items in force where an expression sits."""

    def __init__(self, tree: dict[str, Any], loops: dict[str, Any] | None = None) -> None:
        self.variables = tree.get("variables", {})
        self.modules = set(tree.get("modules", {}))
        self.resources = set(_all_resource_symbols(tree.get("resources", {})))
        self.loops = loops or {}

    def problems(self, expression: Any, seen: frozenset[str] = frozenset()) -> list[str]:
        found: list[str] = []
        self._walk(expression, seen, found)
        return found

    # -- walking pycep's trees -------------------------------------------------------------------
    def _walk(self, node: Any, seen: frozenset[str], found: list[str]) -> None:
        if isinstance(node, str):
            self._text(node, seen, found)
        elif isinstance(node, list):
            for item in node:
                self._walk(item, seen, found)
        elif isinstance(node, dict):
            if "function" in node and isinstance(node["function"], dict):
                function = node["function"]
                if function.get("type") in RUNTIME_FUNCTIONS:
                    found.append(f"{function.get('parameters', {}).get('func_name') or function['type']}()")
                self._walk(function.get("parameters", {}), seen, found)
            elif "operator" in node and isinstance(node["operator"], dict) and \
                    node["operator"].get("type") in _ACCESSORS:
                self._chain(_segments(node), seen, found)
                for index in _index_expressions(node):
                    self._walk(index, seen, found)
            else:
                for value in node.values():
                    self._walk(value, seen, found)

    def _text(self, text: str, seen: frozenset[str], found: list[str]) -> None:
        if "${" not in text:
            self._symbol(text, [], seen, found)
            return
        for inner in _INTERPOLATION.findall(text):
            found.extend(f"{call}()" for call in _CALL.findall(inner))
            for head, tail in _CHAIN.findall(inner):
                path = [_member(part) for part in re.split(r"\s*\.\s*", tail.strip()) if part]
                self._symbol(head, path, seen, found)

    def _chain(self, segments: list[Any], seen: frozenset[str], found: list[str]) -> None:
        head, rest = segments[0], [s for s in segments[1:] if isinstance(s, str)]
        found.extend(part for part in rest if part.startswith("list") and part.endswith("()"))
        if isinstance(head, str):
            self._symbol(head, rest, seen, found)
        else:
            self._walk(head, seen, found)

    def _symbol(self, name: str, path: list[str], seen: frozenset[str], found: list[str]) -> None:
        if name in self.modules:
            found.append(".".join([name, *path]) + " (a module output)")
        elif name in self.resources:
            if not path or path[0] not in START_TIME_PROPERTIES:
                found.append(".".join([name, *path]) + " (a resource's runtime value)")
        elif name in self.variables and name not in seen:
            self._walk(self.variables[name]["value"], seen | {name}, found)
        elif name in self.loops and name not in seen:
            self._walk(self.loops[name], seen | {name}, found)


def _member(text: str) -> str:
    """`listKeys(...)` -> 'listKeys()', `keys[0]` -> 'keys'."""
    name = re.split(r"[(\[]", text, maxsplit=1)[0]
    return f"{name}()" if "(" in text else name


def _all_resource_symbols(declarations: dict[str, Any]) -> Iterator[str]:
    for symbol, declaration in declarations.items():
        yield symbol
        yield from _all_resource_symbols(body(declaration).get("resources", {}))


def _segments(node: Any) -> list[Any]:
    """`a.b[0].c` as ['a', 'b', '[]', 'c']; a function head stays a tree; `x.listKeys()` ends 'listKeys()'."""
    if isinstance(node, dict) and isinstance(node.get("operator"), dict):
        operator = node["operator"]
        operands = operator.get("operands", {})
        if operator.get("type") == "property_accessor":
            return _segments(operands["operand_1"]) + _segments(operands["operand_2"])
        if operator.get("type") == "index_accessor":
            return [*_segments(operands["operand_1"]), "[]"]
        if operator.get("type") == "function_accessor":
            return [*_segments(operands["operand_1"]), f"{operands['func_name']}()"]
    return [node]


def _index_expressions(node: Any) -> Iterator[Any]:
    if isinstance(node, dict) and isinstance(node.get("operator"), dict):
        operator = node["operator"]
        operands = operator.get("operands", {})
        if operator.get("type") == "index_accessor":
            yield operands["operand_2"]
        for key in ("operand_1", "operand_2"):
            if key in operands:
                yield from _index_expressions(operands[key])


def _loop_items(declaration: dict[str, Any]) -> dict[str, Any]:
    """`for item in source` (possibly nested under a condition): item -> the source expression."""
    loops: dict[str, Any] = {}
    config = declaration.get("config", {})
    while isinstance(config, dict):
        loop = config.get("loop_type")
        if isinstance(loop, dict):
            detail = loop.get("detail", {})
            source = detail.get("array_name", detail)
            for key in ("item_name", "index_name"):
                if isinstance(detail.get(key), str):
                    loops[detail[key]] = source
        config = config.get("config")
    return loops


def name_problems(path: Path) -> list[str]:
    """Every resource (nested ones too) and module name of a file that is not known at deployment start."""
    tree = parse(path)
    problems: list[str] = []

    def check(kind: str, symbol: str, declaration: dict[str, Any], loops: dict[str, Any]) -> None:
        loops = {**loops, **_loop_items(declaration)}
        scope = Scope(tree, loops)
        config = body(declaration)
        for key in NAME_KEYS:
            problems.extend(f"{path.name}: {kind} {symbol} {key} uses {problem}"
                            for problem in scope.problems(config.get(key)))
        for child, child_declaration in config.get("resources", {}).items():
            check("resource", child, child_declaration, loops)

    for symbol, declaration in tree.get("resources", {}).items():
        check("resource", symbol, declaration, {})
    for symbol, declaration in tree.get("modules", {}).items():
        check("module", symbol, declaration, {})
    return problems
