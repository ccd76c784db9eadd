"""az's output habits: `-o table|json|jsonc|tsv|yaml|none` and `--query` (JMESPath) on every command."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TextIO

FORMATS = ("table", "json", "jsonc", "tsv", "yaml", "none")

# jsonc: keys, strings and literals coloured the way az colours them (ANSI, as az does for a terminal).
_TOKEN = re.compile(r'("(?:[^"\\]|\\.)*")(\s*:)?|\b(true|false|null)\b|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)')
_KEY, _STRING, _LITERAL, _RESET = "\x1b[94m", "\x1b[32m", "\x1b[95m", "\x1b[0m"


class QueryError(ValueError):
    """--query is not valid JMESPath; the message says where."""


def apply_query(expression: str | None, body: Any) -> Any:
    if not expression:
        return body
    import jmespath  # only when asked: keeps `poolsync --help` quick
    from jmespath.exceptions import JMESPathError

    try:
        return jmespath.search(expression, body)
    except JMESPathError as error:
        raise QueryError(str(error).replace("\n", " ")) from None


def colored_json(value: Any) -> str:
    def paint(match: re.Match[str]) -> str:
        string, colon, literal, number = match.groups()
        if string is not None:
            return f"{_KEY if colon else _STRING}{string}{_RESET}{colon or ''}"
        return f"{_LITERAL}{literal or number}{_RESET}"

    return _TOKEN.sub(paint, json.dumps(value, indent=2))


def _tsv_cells(value: Any) -> list[str]:
    """az's tsv: a row per object (or list) with its scalar values in order (nested ones left out)."""
    items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
    return [_tsv_scalar(item) for item in items if not isinstance(item, dict | list)]


def _tsv_scalar(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    return str(value)


def tsv(value: Any) -> str:
    rows = value if isinstance(value, list) else [value]
    return "".join("\t".join(_tsv_cells(row)) + "\n" for row in rows)


def generic_table(value: Any, out: TextIO) -> None:
    """A --query result as a table: objects become columns of their scalar fields, scalars one column."""
    from cli.render import table

    rows = value if isinstance(value, list) else [value]
    if rows and all(isinstance(row, dict) for row in rows):
        headers = [key for key, item in rows[0].items() if not isinstance(item, dict | list)]
        table([[row.get(key) for key in headers] for row in rows], [h.upper() for h in headers], out)
    else:
        table([[_tsv_scalar(row) if not isinstance(row, dict | list) else json.dumps(row)] for row in rows],
              ["RESULT"], out)


def write(
    body: Any, fmt: str, query: str | None, renderer: Callable[[Any, TextIO], None], out: TextIO
) -> None:
    """`body` (an API answer) in `fmt`; with --query the JMESPath result instead of the whole body."""
    value = apply_query(query, body)
    if fmt == "none":
        return
    if fmt == "json":
        out.write(json.dumps(value, indent=2) + "\n")
    elif fmt == "jsonc":
        out.write(colored_json(value) + "\n")
    elif fmt == "yaml":
        import yaml

        out.write(yaml.safe_dump(value, sort_keys=False, default_flow_style=False))
    elif fmt == "tsv":
        out.write(tsv(value))
    elif query:
        generic_table(value, out)
    else:
        renderer(body, out)
