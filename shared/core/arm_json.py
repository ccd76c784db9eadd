"""Translate ARM REST JSON (as the SDK models' `as_dict()` gives it) into shared.core.models.

Working on the REST shape keeps poolsync independent of SDK model quirks and lets
the pool writer send back every field of entries it did not touch, unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.core.ids import ResourceId
from shared.core.models import (
    ADMIN_NONE,
    IpConfiguration,
    NetworkInterface,
    PoolAddress,
    PoolSnapshot,
    VirtualMachine,
)

JSON = Mapping[str, Any]


def as_json(model: Any) -> dict[str, Any]:
    """An SDK model (or plain dict) as REST JSON."""
    if hasattr(model, "as_dict"):
        as_dict: dict[str, Any] = model.as_dict()
        return as_dict
    return dict(model)


def _props(resource: JSON) -> JSON:
    return resource.get("properties") or {}


def _ref_id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, Mapping) else None


def _resource_group(resource_id: str) -> str:
    try:
        return ResourceId.parse(resource_id).resource_group
    except ValueError:
        parts = resource_id.split("/")
        lowered = [p.lower() for p in parts]
        return parts[lowered.index("resourcegroups") + 1] if "resourcegroups" in lowered else ""


def nic_from_json(resource: JSON) -> NetworkInterface:
    props = _props(resource)
    nic_id = resource["id"]
    configs = []
    for config in props.get("ipConfigurations") or []:
        config_props = _props(config)
        configs.append(
            IpConfiguration(
                nic_id=nic_id,
                name=config.get("name", ""),
                private_ip=config_props.get("privateIPAddress"),
                subnet_id=_ref_id(config_props.get("subnet")),
                primary=bool(config_props.get("primary", len(props.get("ipConfigurations") or []) == 1)),
            )
        )
    if props.get("privateEndpoint"):
        owner_kind = "privateEndpoint"
    elif props.get("privateLinkService"):
        owner_kind = "privateLinkService"
    else:
        owner_kind = "vm"
    return NetworkInterface(
        id=nic_id,
        name=resource.get("name", nic_id.rsplit("/", 1)[-1]),
        resource_group=_resource_group(nic_id),
        vm_id=_ref_id(props.get("virtualMachine")),
        ip_configurations=tuple(configs),
        primary=bool(props.get("primary", True)),
        owner_kind=owner_kind,
        tags=dict(resource.get("tags") or {}),
        resource_guid=props.get("resourceGuid") or None,
    )


def vm_from_json(resource: JSON) -> VirtualMachine:
    props = _props(resource)
    refs = (props.get("networkProfile") or {}).get("networkInterfaces") or []
    # The primary NIC first: rules with ipConfigurations "primary" rely on it.
    ordered = sorted(refs, key=lambda ref: not _props(ref).get("primary", len(refs) == 1))
    return VirtualMachine(
        id=resource["id"],
        name=resource.get("name", resource["id"].rsplit("/", 1)[-1]),
        resource_group=_resource_group(resource["id"]),
        tags=dict(resource.get("tags") or {}),
        nic_ids=tuple(ref["id"] for ref in ordered if ref.get("id")),
        scale_set_id=_ref_id(props.get("virtualMachineScaleSet")),  # a Flexible scale set's VM
    )


def address_from_json(entry: JSON) -> PoolAddress:
    props = _props(entry)
    return PoolAddress(
        name=entry.get("name", ""),
        ip_address=props.get("ipAddress"),
        vnet_id=_ref_id(props.get("virtualNetwork")),
        subnet_id=_ref_id(props.get("subnet")),
        admin_state=props.get("adminState") or ADMIN_NONE,
    )


def address_to_json(address: PoolAddress) -> dict[str, Any]:
    props: dict[str, Any] = {"ipAddress": address.ip_address}
    if address.vnet_id:
        props["virtualNetwork"] = {"id": address.vnet_id}
    if address.subnet_id:
        props["subnet"] = {"id": address.subnet_id}
    if address.admin_state and address.admin_state != ADMIN_NONE:
        props["adminState"] = address.admin_state
    return {"name": address.name, "properties": props}


def pool_from_json(resource: JSON, lb_sku: str | None = None) -> PoolSnapshot:
    props = _props(resource)
    return PoolSnapshot(
        id=resource["id"],
        etag=resource.get("etag"),
        addresses=tuple(address_from_json(e) for e in props.get("loadBalancerBackendAddresses") or []),
        nic_member_count=len(props.get("backendIPConfigurations") or []),
        vnet_id=_ref_id(props.get("virtualNetwork")),
        lb_sku=lb_sku,
        provisioning_state=props.get("provisioningState"),
        sync_mode=props.get("syncMode"),
    )
