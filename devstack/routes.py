"""HTTP route templates as the Functions host reads them: `pools/{pool}/addresses/{name?}`, `{id:int}`,
`{*rest}`. Pure: compile a template once, then match request paths against it.

Matching follows ASP.NET routing closely enough for function routes: literals compare
case-insensitively, `{x?}` may be absent (with its leading slash), `{*x}` takes the rest of the path,
`{x=default}` supplies a value when absent, and the common constraints (int, long, bool, guid, alpha,
minlength/maxlength/length) are checked. More specific templates win over more general ones.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

_PARAMETER = re.compile(r"\{([^{}]+)\}")


class RouteTemplateError(ValueError):
    """A function's route template cannot be understood."""


def _is_guid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def _length_check(arguments: str, kind: str) -> Callable[[str], bool]:
    numbers = [int(part) for part in arguments.split(",")]
    if kind == "minlength":
        return lambda value: len(value) >= numbers[0]
    if kind == "maxlength":
        return lambda value: len(value) <= numbers[0]
    if len(numbers) == 1:
        return lambda value: len(value) == numbers[0]
    return lambda value: numbers[0] <= len(value) <= numbers[1]


_SIMPLE_CONSTRAINTS: dict[str, Callable[[str], bool]] = {
    "int": lambda value: re.fullmatch(r"-?\d{1,10}", value) is not None and -(2**31) <= int(value) < 2**31,
    "long": lambda value: re.fullmatch(r"-?\d{1,19}", value) is not None and -(2**63) <= int(value) < 2**63,
    "bool": lambda value: value.lower() in ("true", "false"),
    "guid": _is_guid,
    "alpha": lambda value: value.isascii() and value.isalpha(),
}


def _constraint(text: str, template: str) -> Callable[[str], bool]:
    match = re.fullmatch(r"([a-z]+)(?:\((.*)\))?", text.strip(), re.IGNORECASE)
    if match is None:
        raise RouteTemplateError(f"route {template!r}: cannot read constraint {text!r}")
    kind, arguments = match[1].lower(), match[2]
    if kind in _SIMPLE_CONSTRAINTS and arguments is None:
        return _SIMPLE_CONSTRAINTS[kind]
    if kind in ("minlength", "maxlength", "length") and arguments:
        return _length_check(arguments, kind)
    if kind == "regex" and arguments:
        pattern = re.compile(arguments, re.IGNORECASE)
        return lambda value: pattern.search(value) is not None
    raise RouteTemplateError(f"route {template!r}: unsupported constraint {text!r}")


@dataclass(frozen=True)
class _Parameter:
    name: str
    optional: bool = False
    catch_all: bool = False
    default: str | None = None
    checks: tuple[Callable[[str], bool], ...] = ()

    def accepts(self, value: str) -> bool:
        return all(check(value) for check in self.checks)


def _parse_parameter(text: str, template: str) -> _Parameter:
    catch_all = text.startswith("*")
    text = text.lstrip("*")
    default = None
    if "=" in text:
        text, default = text.split("=", 1)
    name, *constraints = text.split(":")
    optional = name.endswith("?")
    name = name.rstrip("?")
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise RouteTemplateError(f"route {template!r}: bad parameter name {name!r}")
    return _Parameter(name, optional or default is not None, catch_all, default,
                      tuple(_constraint(c, template) for c in constraints))


# Precedence rank of a segment: lower is more specific (literal beats parameter beats catch-all).
_LITERAL, _COMPLEX, _CONSTRAINED, _PLAIN, _OPTIONAL, _CATCH_ALL = range(6)


@dataclass(frozen=True)
class RouteTemplate:
    template: str
    regex: re.Pattern[str]
    parameters: tuple[_Parameter, ...]
    precedence: tuple[int, ...] = field(compare=False)

    @classmethod
    def compile(cls, template: str) -> RouteTemplate:
        text = template.strip().strip("/")
        pattern = ""
        parameters: list[_Parameter] = []
        precedence: list[int] = []
        segments = text.split("/") if text else []
        for position, segment in enumerate(segments):
            if not segment:
                raise RouteTemplateError(f"route {template!r}: empty segment")
            pieces = _PARAMETER.split(segment)  # literal, param, literal, param, ..., literal
            segment_pattern = ""
            segment_parameters: list[_Parameter] = []
            for index, piece in enumerate(pieces):
                if index % 2 == 0:
                    if "{" in piece or "}" in piece:
                        raise RouteTemplateError(f"route {template!r}: unbalanced braces in {segment!r}")
                    segment_pattern += re.escape(piece)
                    continue
                parameter = _parse_parameter(piece, template)
                if parameter.catch_all and position != len(segments) - 1:
                    raise RouteTemplateError(f"route {template!r}: a catch-all must be the last segment")
                segment_parameters.append(parameter)
                body = ".*" if parameter.catch_all else "[^/]+"
                segment_pattern += f"(?P<{parameter.name}>{body})"
            whole_parameter = len(pieces) == 3 and pieces[0] == "" and pieces[2] == ""
            if whole_parameter and (segment_parameters[0].optional or segment_parameters[0].catch_all):
                # An optional or catch-all segment takes its slash with it when absent.
                wrapped = f"(?:/{segment_pattern})?" if position else f"(?:{segment_pattern})?"
                pattern += wrapped
            else:
                if any(p.optional for p in segment_parameters) and not whole_parameter:
                    raise RouteTemplateError(
                        f"route {template!r}: optional parameters need their own segment")
                pattern += ("/" if position else "") + segment_pattern
            parameters += segment_parameters
            precedence.append(_rank(segment_parameters, whole_parameter))
        names = [p.name.lower() for p in parameters]
        if len(set(names)) != len(names):
            raise RouteTemplateError(f"route {template!r}: a parameter name is used twice")
        regex = re.compile(f"^{pattern}/?$", re.IGNORECASE | re.DOTALL)
        return cls(template, regex, tuple(parameters), tuple(precedence))

    def match(self, path: str) -> dict[str, str] | None:
        """Route values for `path` (without prefix or leading slash, still percent-encoded), or None."""
        found = self.regex.match(path.strip("/") if path != "/" else "")
        if found is None:
            return None
        values: dict[str, str] = {}
        for parameter in self.parameters:
            raw = found.group(parameter.name)
            if raw is None or raw == "":
                if parameter.default is not None:
                    values[parameter.name] = parameter.default
                continue
            value = unquote(raw)
            if not parameter.accepts(value):
                return None
            values[parameter.name] = value
        return values


def _rank(parameters: list[_Parameter], whole_parameter: bool) -> int:
    if not parameters:
        return _LITERAL
    if not whole_parameter:
        return _COMPLEX
    parameter = parameters[0]
    if parameter.catch_all:
        return _CATCH_ALL
    if parameter.optional:
        return _OPTIONAL
    return _CONSTRAINED if parameter.checks else _PLAIN


def ordered(templates: Iterable[RouteTemplate]) -> list[RouteTemplate]:
    """Most specific first, so `pools/summary` is tried before `pools/{pool}`."""
    return sorted(templates, key=lambda t: (*t.precedence, _LITERAL - 1))
