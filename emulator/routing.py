"""URL -> what is addressed: a resource, a collection, or an async operation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote

from emulator.errors import ArmError, bad_request

# lower-cased full type -> short kind used across the emulator
KINDS = {
    "microsoft.network/virtualnetworks": "vnet",
    "microsoft.network/virtualnetworks/subnets": "subnet",
    "microsoft.network/networkinterfaces": "nic",
    "microsoft.network/loadbalancers": "lb",
    "microsoft.network/loadbalancers/backendaddresspools": "pool",
    "microsoft.compute/virtualmachines": "vm",
    "microsoft.compute/virtualmachinescalesets": "vmss",
    "microsoft.compute/virtualmachinescalesets/virtualmachines": "vmss_vm",
    # the Network RP's scale-set NIC operations, served under the Compute path: per set or per instance
    "microsoft.compute/virtualmachinescalesets/networkinterfaces": "vmss_nic",
    "microsoft.compute/virtualmachinescalesets/virtualmachines/networkinterfaces": "vmss_nic",
}
CANONICAL_TYPES = {
    "vnet": "Microsoft.Network/virtualNetworks",
    "subnet": "Microsoft.Network/virtualNetworks/subnets",
    "nic": "Microsoft.Network/networkInterfaces",
    "lb": "Microsoft.Network/loadBalancers",
    "pool": "Microsoft.Network/loadBalancers/backendAddressPools",
    "vm": "Microsoft.Compute/virtualMachines",
    "vmss": "Microsoft.Compute/virtualMachineScaleSets",
    "vmss_vm": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines",
    "vmss_nic": "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/networkInterfaces",
}
# POST actions served: (kind of the addressed resource, lower-cased action) -> the action's name in ARM
ACTIONS = {
    ("vmss", "delete"): "delete",
    ("vmss", "reimage"): "reimage",
    ("vmss", "manualupgrade"): "manualUpgrade",
    ("vmss_vm", "reimage"): "reimage",
}
NAMESPACES = {"microsoft.network": "Microsoft.Network", "microsoft.compute": "Microsoft.Compute"}
TAGGABLE = ("vnet", "nic", "vm", "lb", "vmss")

_GUIDISH = r"[^/]+"
_OPERATION = re.compile(
    rf"^/subscriptions/(?P<sub>{_GUIDISH})/providers/(?P<ns>[^/]+)/locations/(?P<loc>[^/]+)"
    r"/(?P<what>operations|operationResults)/(?P<op>[^/]+)$",
    re.IGNORECASE,
)
_SUBSCRIPTION_COLLECTION = re.compile(
    rf"^/subscriptions/(?P<sub>{_GUIDISH})/providers/(?P<ns>[^/]+)/(?P<type>[^/]+)$", re.IGNORECASE
)
_TAGS_AT_SCOPE = re.compile(
    r"^(?P<scope>/subscriptions/.+)/providers/Microsoft\.Resources/tags/default$", re.I
)
_GROUP_SCOPED = re.compile(
    rf"^/subscriptions/(?P<sub>{_GUIDISH})/resourceGroups/(?P<rg>[^/]+)/providers/(?P<ns>[^/]+)"
    r"/(?P<rest>.+)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Route:
    action: str  # resource | collection | operation | operation_result | tags | action (a POST action)
    subscription: str
    kind: str = ""  # vnet | subnet | nic | lb | pool | vm | vmss | vmss_vm | vmss_nic
    namespace: str = ""
    full_type: str = ""  # e.g. Microsoft.Network/loadBalancers/backendAddressPools
    resource_group: str | None = None
    resource_id: str = ""  # the addressed resource (resource), or the parent (child collection)
    operation_id: str = ""
    action_name: str = ""  # action routes: e.g. delete, reimage, manualUpgrade

    @property
    def is_child_collection(self) -> bool:
        return self.action == "collection" and bool(self.resource_id)


def resource_type_label(path: str) -> str:
    """A coarse label for stats and fault matching, also for unroutable paths."""
    try:
        route = parse(path)
    except ArmError:
        return "unknown"
    if route.action.startswith("operation"):
        return f"{route.namespace}/operations"
    return route.full_type


def parse(raw_path: str) -> Route:
    path = unquote(raw_path).rstrip("/")
    match = _TAGS_AT_SCOPE.match(path)
    if match:
        return _tags_route(match["scope"], raw_path)
    match = _OPERATION.match(path)
    if match:
        namespace = _namespace(match["ns"])
        return Route(
            action="operation" if match["what"].lower() == "operations" else "operation_result",
            subscription=match["sub"],
            namespace=namespace,
            full_type=f"{namespace}/locations/operations",
            operation_id=match["op"],
        )
    match = _SUBSCRIPTION_COLLECTION.match(path)
    if match:
        namespace = _namespace(match["ns"])
        kind, full_type = _kind(namespace, [match["type"]])
        return Route("collection", match["sub"], kind, namespace, full_type)
    match = _GROUP_SCOPED.match(path)
    if not match:
        raise ArmError(404, "NotFound", f"No route registered for '{raw_path}'.")
    namespace = _namespace(match["ns"])
    parts = match["rest"].split("/")
    types, names = parts[0::2], parts[1::2]
    base = f"/subscriptions/{match['sub']}/resourceGroups/{match['rg']}/providers/{namespace}"
    pairs = [f"{t}/{n}" for t, n in zip(types, names, strict=False)]
    resource_id = f"{base}/{'/'.join(pairs)}"
    if len(types) == len(names) + 1 and len(names) >= 1:
        target = KINDS.get("/".join([namespace, *types[:-1]]).lower())
        action_name = ACTIONS.get((target or "", types[-1].lower()))
        if target is not None and action_name is not None:
            full_type = CANONICAL_TYPES[target]
            return Route(
                "action",
                match["sub"],
                target,
                namespace,
                full_type,
                match["rg"],
                resource_id,
                action_name=action_name,
            )
    kind, full_type = _kind(namespace, types)
    action = "resource" if len(names) == len(types) else "collection"
    if action == "collection" and len(types) == 1:
        resource_id = ""
    return Route(action, match["sub"], kind, namespace, full_type, match["rg"], resource_id)


def _tags_route(scope: str, raw_path: str) -> Route:
    """The Tags API on a resource: `resource_id` is the tagged resource, `kind` its kind."""
    target = parse(scope)
    if target.action != "resource" or target.kind not in TAGGABLE:
        raise ArmError(404, "NotFound", f"No route registered for '{raw_path}' (tags of this scope).")
    return Route(
        "tags",
        target.subscription,
        target.kind,
        "Microsoft.Resources",
        "Microsoft.Resources/tags",
        target.resource_group,
        target.resource_id,
    )


def _namespace(text: str) -> str:
    namespace = NAMESPACES.get(text.lower())
    if namespace is None:
        raise ArmError(
            404,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for namespace '{text}'.",
        )
    return namespace


def _kind(namespace: str, types: list[str]) -> tuple[str, str]:
    full = "/".join([namespace, *types])
    kind = KINDS.get(full.lower())
    if kind is None:
        raise bad_request(
            "InvalidResourceType",
            f"The resource type '{'/'.join(types)}' could not be found in the namespace '{namespace}'.",
        )
    return kind, CANONICAL_TYPES[kind]
