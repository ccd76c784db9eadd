"""Azure resource events -> hints to reconcile (pure: no I/O).

An event is a hint, never a delta: it only says *which* VM or NIC changed. What to do is decided later
from what Azure holds at that moment, so duplicates, reordering and day-old replays cannot do harm.

Accepted shapes: the Event Grid schema and CloudEvents 1.0 (as dicts, JSON text, or the objects of
azure-functions / azure-eventgrid / azure-core), for the subscription and resource-group system topics.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from shared.core.ids import InvalidResourceId, ResourceId
from shared.errors import InputError

KIND_VM = "vm"
KIND_NIC = "nic"
KIND_SCALE_SET = "scaleSet"  # a scale set: its instances were created, deleted, reimaged or upgraded
KIND_RESOURCE_GROUP = "resourceGroup"

ACTION_WRITE = "write"
ACTION_DELETE = "delete"
ACTION_ACTION = "action"

SCHEMA_EVENT_GRID = "EventGridSchema"
SCHEMA_CLOUD_EVENTS = "CloudEventSchemaV1_0"

# Event Grid's Microsoft.Resources event types (azure.eventgrid.SystemEventNames values; spelled out so
# the pure core needs no Azure SDK). Matched case-insensitively.
_HINT_TYPES = {
    "microsoft.resources.resourcewritesuccess": ACTION_WRITE,
    "microsoft.resources.resourcedeletesuccess": ACTION_DELETE,
    "microsoft.resources.resourceactionsuccess": ACTION_ACTION,
}
_UNSUCCESSFUL_TYPES = frozenset(
    f"microsoft.resources.resource{action}{outcome}"
    for action in ("write", "delete", "action")
    for outcome in ("failure", "cancel")
)
_UNSUCCESSFUL_STATUSES = frozenset({"failed", "canceled", "cancelled"})

_RESOURCE_KINDS = {
    "microsoft.compute/virtualmachines": KIND_VM,
    "microsoft.network/networkinterfaces": KIND_NIC,
    "microsoft.compute/virtualmachinescalesets": KIND_SCALE_SET,
}
_SCALE_SET_TYPE = "microsoft.compute/virtualmachinescalesets"
# Scale-set actions that create, delete or re-network instances inside the Compute RP: ARM emits one
# ResourceActionSuccess for the request, none per instance (a Uniform instance's own reimage included).
SCALE_SET_ACTIONS = frozenset(
    f"{_SCALE_SET_TYPE}/{action}/action"
    for action in ("delete", "reimage", "reimageall", "manualupgrade", "virtualmachines/reimage",
                   "virtualmachines/reimageall")
)
# Tags written through the Tags API arrive with the tags extension resource as subject.
_TAGS_SUFFIX = "/providers/microsoft.resources/tags/default"
# Moving resources to another group changes their ids (and so pool entry names and resource-group
# rules); the event's subject is the source resource group, the moved resources are not listed.
MOVE_RESOURCES_OPERATION = "microsoft.resources/subscriptions/resourcegroups/moveresources/action"
_ROW_KEY_LIMIT = 512


class MalformedEvent(InputError, ValueError):
    """The payload is not a usable event; retrying the delivery cannot help."""

    def __init__(self, reason: str, event_id: str | None = None) -> None:
        super().__init__(f"malformed event {event_id or '<no id>'}: {reason}")
        self.reason = reason
        self.event_id = event_id


@dataclass(frozen=True, slots=True)
class ResourceHint:
    """Something poolsync may care about changed: reconcile the load balancers it can affect."""

    event_id: str
    event_type: str
    resource_id: str  # canonical spelling: a VM, a NIC, a scale set, or (for moves) a resource group scope
    kind: str  # vm | nic | scaleSet | resourceGroup
    action: str  # write | delete | action
    subscription: str  # lower-case
    event_time: datetime | None
    schema: str

    @property
    def is_write(self) -> bool:
        return self.action == ACTION_WRITE and self.kind in (KIND_VM, KIND_NIC)


@dataclass(frozen=True, slots=True)
class Ignored:
    """An event poolsync has nothing to do for, with the reason (for logs)."""

    event_id: str
    reason: str
    event_type: str | None = None
    subject: str | None = None


# -- payload normalisation ---------------------------------------------------------------------------


def event_to_dict(event: Any) -> dict[str, Any]:
    """One event as the JSON Event Grid delivers, from a dict, JSON text or an SDK/Functions event object."""
    if isinstance(event, Mapping):
        return dict(event)
    if isinstance(event, (str, bytes, bytearray)):
        try:
            loaded = json.loads(event)
        except (ValueError, UnicodeDecodeError) as error:
            raise MalformedEvent(f"not JSON: {error}") from None
        if isinstance(loaded, list) and len(loaded) == 1:
            loaded = loaded[0]
        if not isinstance(loaded, dict):
            raise MalformedEvent(f"expected one JSON object, got {type(loaded).__name__}")
        return loaded
    data = event.get_json() if callable(getattr(event, "get_json", None)) else getattr(event, "data", None)
    if hasattr(event, "specversion"):  # func.CloudEvent, azure.core.messaging.CloudEvent
        return {
            "specversion": getattr(event, "specversion", None),
            "id": _id_text(getattr(event, "id", None)),
            "source": getattr(event, "source", None),
            "type": getattr(event, "type", None),
            "subject": getattr(event, "subject", None),
            "time": _time_text(getattr(event, "time", None)),
            "data": data,
        }
    if hasattr(event, "event_type"):  # func.EventGridEvent, azure.eventgrid.EventGridEvent
        return {
            "id": _id_text(getattr(event, "id", None)),
            "topic": getattr(event, "topic", None),
            "subject": getattr(event, "subject", None),
            "eventType": getattr(event, "event_type", None),
            "eventTime": _time_text(getattr(event, "event_time", None)),
            "dataVersion": getattr(event, "data_version", None),
            "data": data,
        }
    raise MalformedEvent(f"unknown event object {type(event).__name__}")


def _id_text(value: Any) -> str | None:
    return None if value is None else str(value)  # azure-eventgrid's default id is a uuid.UUID


def _time_text(value: Any) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value


def _parse_time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) and value else value
    except ValueError:
        return None  # the time is informational only: a bad one must not drop the hint
    if not isinstance(parsed, datetime):
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)  # Event Grid times are UTC


def event_fields(event: Mapping[str, Any]) -> dict[str, Any]:
    """id, type, operation and subject of an event dict, for the `event_received` log line (never raises)."""
    data = event.get("data") if isinstance(event.get("data"), Mapping) else {}
    event_type = event.get("eventType", event.get("type"))
    return {
        "event_id": _text(event.get("id")),
        "event_type": event_type.value if isinstance(event_type, Enum) else event_type,
        "operation": data.get("operationName"),  # type: ignore[union-attr]
        "subject": event.get("subject"),
    }


# -- classification ----------------------------------------------------------------------------------


def parse_event(payload: Any, watched_subscriptions: Collection[str] | None = None) -> ResourceHint | Ignored:
    """Classify one event. Raises MalformedEvent (with the id when known) for unusable payloads.

    `watched_subscriptions` (lower-case ids), when given, ignores resources outside them."""
    event = event_to_dict(payload)
    if "specversion" in event:
        if str(event.get("specversion")) != "1.0":
            raise MalformedEvent(f"unsupported CloudEvents specversion {event.get('specversion')!r}",
                                 _text(event.get("id")))
        schema, event_type, source = SCHEMA_CLOUD_EVENTS, event.get("type"), event.get("source")
        if not _text(source):
            raise MalformedEvent("CloudEvent without source", _text(event.get("id")))
        time_value = event.get("time")
    elif "eventType" in event:
        schema, event_type, time_value = SCHEMA_EVENT_GRID, event.get("eventType"), event.get("eventTime")
    else:
        raise MalformedEvent("unknown schema: neither Event Grid (eventType) nor CloudEvents (specversion)",
                             _text(event.get("id")))
    if isinstance(event_type, Enum):  # azure.eventgrid's SystemEventNames print as their name, not value
        event_type = event_type.value
    event_id = _text(event.get("id"))
    if not event_id:
        raise MalformedEvent("event without id")
    if not _text(event_type):
        raise MalformedEvent("event without type", event_id)
    lowered_type = str(event_type).lower()
    subject = event.get("subject")
    if lowered_type in _UNSUCCESSFUL_TYPES:
        return Ignored(event_id, "operation did not succeed", str(event_type), _text(subject))
    action = _HINT_TYPES.get(lowered_type)
    if action is None:
        return Ignored(event_id, "event type not handled", str(event_type), _text(subject))
    if not _text(subject):
        raise MalformedEvent("resource event without subject", event_id)
    data = event.get("data")
    if data is not None and not isinstance(data, Mapping):
        raise MalformedEvent("event data is not an object", event_id)
    data = data or {}
    status = str(data.get("status") or "").lower()
    if status in _UNSUCCESSFUL_STATUSES:
        return Ignored(event_id, f"operation status {data.get('status')}", str(event_type), str(subject))

    target = _classify_subject(str(subject), action, str(data.get("operationName") or ""), event_id)
    if isinstance(target, str):
        return Ignored(event_id, target, str(event_type), str(subject))
    kind, resource_id, subscription = target
    if watched_subscriptions is not None and subscription not in watched_subscriptions:
        return Ignored(event_id, "subscription not watched", str(event_type), str(subject))
    return ResourceHint(
        event_id=event_id,
        event_type=str(event_type),
        resource_id=resource_id,
        kind=kind,
        action=action,
        subscription=subscription,
        event_time=_parse_time(time_value),
        schema=schema,
    )


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _classify_subject(subject: str, action: str, operation: str, event_id: str) -> tuple[str, str, str] | str:
    """(kind, canonical id, subscription) of a subject poolsync cares about, else the reason to ignore it."""
    text = subject.strip().rstrip("/")
    lowered = text.lower()
    if lowered.endswith(_TAGS_SUFFIX):
        text = text[: -len(_TAGS_SUFFIX)]
        lowered = text.lower()
    if action == ACTION_ACTION:
        if operation.lower() in SCALE_SET_ACTIONS:
            return _scale_set_of(text, event_id)
        if operation.lower() != MOVE_RESOURCES_OPERATION:
            return "action does not change pool membership"
        return _resource_group_scope(text, event_id)
    if action == ACTION_DELETE and "/providers/" not in lowered and "/resourcegroups/" in lowered:
        # A deleted resource group takes its VMs and NICs with it, whether or not a delete event
        # arrives for each of them: treat it like a move, a hint for every managed load balancer.
        return _resource_group_scope(text, event_id)
    provider_path = lowered.rpartition("/providers/")[2] if "/providers/" in lowered else ""
    segments = provider_path.split("/")
    resource_type = "/".join(segments[:2]) if len(segments) >= 3 else ""
    kind = _RESOURCE_KINDS.get(resource_type)
    if kind is None:
        return "not a virtual machine, network interface or scale set"
    if kind == KIND_SCALE_SET and len(segments) == 5 and segments[3] == "virtualmachines":
        return _scale_set_of(text, event_id)  # an instance written or deleted: its set is the owner
    if len(segments) != 3:  # a child (VM extension, NIC tap configuration, ...) changes no membership
        return "child resource of a virtual machine or network interface"
    try:
        rid = ResourceId.parse(text)
    except InvalidResourceId as error:
        raise MalformedEvent(f"bad resource id in subject: {error}", event_id) from None
    return kind, str(rid), rid.subscription.lower()


def _scale_set_of(text: str, event_id: str) -> tuple[str, str, str]:
    """The scale set a scale-set (or scale-set instance) subject names."""
    try:
        rid = ResourceId.parse(text)
    except InvalidResourceId as error:
        raise MalformedEvent(f"bad scale set id in subject: {error}", event_id) from None
    if rid.full_type.lower() not in (_SCALE_SET_TYPE, f"{_SCALE_SET_TYPE}/virtualmachines"):
        raise MalformedEvent(f"scale-set action on {rid.full_type}", event_id)
    return KIND_SCALE_SET, str(rid.parent), rid.subscription.lower()


def _resource_group_scope(text: str, event_id: str) -> tuple[str, str, str]:
    parts = text.split("/")
    if len(parts) != 5 or parts[1].lower() != "subscriptions" or parts[3].lower() != "resourcegroups":
        raise MalformedEvent(f"resource move with unexpected subject {text[:200]!r}", event_id)
    return KIND_RESOURCE_GROUP, text, parts[2].lower()


# -- which load balancers a change can touch -----------------------------------------------------------


def intent_row_key(event_id: str) -> str:
    """A Table RowKey for an event id: one row per event, so duplicate deliveries collapse.

    Table keys may not hold / \\ # ? or control characters; Event Grid ids are GUIDs in practice."""
    safe = "".join("_" if c in '/\\#?' or ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F else c for c in event_id)
    return safe[:_ROW_KEY_LIMIT]
