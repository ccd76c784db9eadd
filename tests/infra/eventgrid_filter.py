"""A small evaluator of Event Grid event-subscription filters, for checking the deployed filters offline.

Semantics modelled (Event Grid "Understand event filtering"):
- includedEventTypes: the event type must be one of them (case-insensitive); absent/empty = all types.
- subjectBeginsWith / subjectEndsWith: prefix/suffix of the subject, case-insensitive unless
  isSubjectCaseSensitive.
- advancedFilters: every filter must match (AND); the values of one filter are alternatives (OR), except for
  the Not operators, which must hold for every value. String comparisons are case-insensitive. A key is a
  top-level field (`subject`, `eventType`, `id`, `topic`, `dataVersion`) or a dotted path into the event
  (`data.operationName`). A key that is missing, or whose value is not a string (arrays need
  enableAdvancedFilteringOnArrays, never used here), matches no positive operator; Not operators match it.
Any other operator raises, so a template using one this module does not model fails its test loudly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

_MISSING = object()


def lookup(event: Mapping[str, Any], key: str) -> Any:
    value: Any = event
    for part in key.split("."):
        if not isinstance(value, Mapping):
            return _MISSING
        # Keys are matched case-insensitively ("Data.Key1" and "data.key1" name the same field).
        matches = [k for k in value if isinstance(k, str) and k.lower() == part.lower()]
        if not matches:
            return _MISSING
        value = value[matches[0]]
    return value


_POSITIVE: dict[str, Callable[[str, str], bool]] = {
    "StringIn": lambda value, wanted: value == wanted,
    "StringBeginsWith": lambda value, wanted: value.startswith(wanted),
    "StringEndsWith": lambda value, wanted: value.endswith(wanted),
    "StringContains": lambda value, wanted: wanted in value,
}
_NEGATED = {
    "StringNotIn": "StringIn",
    "StringNotBeginsWith": "StringBeginsWith",
    "StringNotEndsWith": "StringEndsWith",
    "StringNotContains": "StringContains",
}


def advanced_filter_matches(advanced: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    operator = advanced["operatorType"]
    value = lookup(event, advanced["key"])
    if operator == "IsNullOrUndefined":
        return value is _MISSING or value is None
    if operator == "IsNotNull":
        return value is not _MISSING and value is not None
    wanted = [str(v).lower() for v in advanced.get("values", [])]
    if operator in _POSITIVE:
        if not isinstance(value, str):
            return False
        test = _POSITIVE[operator]
        return any(test(value.lower(), w) for w in wanted)
    if operator in _NEGATED:
        if not isinstance(value, str):
            return True
        test = _POSITIVE[_NEGATED[operator]]
        return not any(test(value.lower(), w) for w in wanted)
    raise NotImplementedError(f"advanced filter operator {operator!r} is not modelled")


def filter_matches(event_filter: Mapping[str, Any], event: Mapping[str, Any]) -> bool:
    """Whether an Event Grid schema event passes one subscription's filter."""
    types = [t.lower() for t in event_filter.get("includedEventTypes") or []]
    if types and str(event.get("eventType", "")).lower() not in types:
        return False
    subject = str(event.get("subject", ""))
    case_sensitive = bool(event_filter.get("isSubjectCaseSensitive", False))
    fold = (lambda text: text) if case_sensitive else str.lower
    begins, ends = event_filter.get("subjectBeginsWith"), event_filter.get("subjectEndsWith")
    if begins and not fold(subject).startswith(fold(begins)):
        return False
    if ends and not fold(subject).endswith(fold(ends)):
        return False
    return all(advanced_filter_matches(f, event) for f in event_filter.get("advancedFilters") or [])


def delivered(filters: list[Mapping[str, Any]], event: Mapping[str, Any]) -> bool:
    """Whether any of the topic's subscriptions delivers the event."""
    return any(filter_matches(f, event) for f in filters)
