"""The Tags API (`{resource}/providers/Microsoft.Resources/tags/default`) and VM PATCH bodies.

Pure functions: what the tags become after a PUT / PATCH, the tags resource's shape, and
the full body a Compute PATCH amounts to. Tags API semantics (REST spec, Tags_* at scope):
PUT replaces the whole set; PATCH carries `operation` Merge (add / overwrite names),
Replace (the new set) or Delete (remove the given names; a given value must match);
DELETE removes all tags. At most 50 tags per resource.
"""

from __future__ import annotations

import copy
from typing import Any

from emulator.errors import bad_request

TAGS_SUFFIX = "/providers/Microsoft.Resources/tags/default"
TAGS_TYPE = "Microsoft.Resources/tags"
MAX_TAGS = 50


def tags_resource_id(resource_id: str) -> str:
    return f"{resource_id.rstrip('/')}{TAGS_SUFFIX}"


def tags_resource(resource_id: str, tags: dict[str, str]) -> dict[str, Any]:
    return {
        "id": tags_resource_id(resource_id),
        "name": "default",
        "type": TAGS_TYPE,
        "properties": {"tags": dict(tags)},
    }


def _tags_of(body: dict[str, Any]) -> dict[str, str]:
    props = body.get("properties")
    if not isinstance(props, dict):
        raise bad_request("InvalidRequestContent", "The request content must have an object 'properties'.")
    tags = props.get("tags", {})
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise bad_request("InvalidRequestContent", "'properties.tags' must be an object of string values.")
    return tags


def _limited(tags: dict[str, str]) -> dict[str, str]:
    if len(tags) > MAX_TAGS:
        raise bad_request(
            "InvalidTagCount",
            f"The resource can have at most {MAX_TAGS} tags; the request leaves {len(tags)}.",
        )
    return tags


def tags_after_put(body: dict[str, Any]) -> dict[str, str]:
    return _limited(dict(_tags_of(body)))


def tags_after_patch(current: dict[str, str], body: dict[str, Any]) -> dict[str, str]:
    operation = str(body.get("operation", "")).lower()
    given = _tags_of(body)
    if operation == "merge":
        return _limited({**current, **given})
    if operation == "replace":
        return _limited(dict(given))
    if operation == "delete":
        return {
            name: value
            for name, value in current.items()
            if name not in given or (given[name] not in ("", value))
        }
    raise bad_request(
        "InvalidTagOperation",
        f"The tags patch operation '{body.get('operation')}' is not Merge, Replace or Delete.",
    )


def vm_after_patch(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """The PUT body equivalent to a Compute PATCH (VirtualMachineUpdate): given top-level fields
    (tags, zones, ...) and given `properties` entries (networkProfile, ...) replace the current ones."""
    merged = copy.deepcopy(current)
    for name, value in patch.items():
        if name == "properties":
            if not isinstance(value, dict):
                raise bad_request("InvalidRequestContent", "'properties' must be an object.")
            merged.setdefault("properties", {}).update(copy.deepcopy(value))
        elif name not in ("id", "name", "type"):
            merged[name] = copy.deepcopy(value)
    return merged
