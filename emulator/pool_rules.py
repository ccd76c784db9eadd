"""Network RP rules for backend-pool writes that the `azure` profile enforces.

Pure checks on data: `api` passes the stored pool as rendered, the request body and the
limits; they return the body to store or raise the error Azure answers with.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import ArmError, bad_request

SYNC_MODE_AUTOMATIC = "Automatic"


def _addresses(props: dict[str, Any]) -> list[dict[str, Any]]:
    raw = props.get("loadBalancerBackendAddresses")
    return [a for a in raw if isinstance(a, dict)] if isinstance(raw, list) else []


def _is_nic_entry(address: dict[str, Any]) -> bool:
    aprops = address.get("properties") or {}
    return not aprops.get("ipAddress") and bool(
        (aprops.get("networkInterfaceIPConfiguration") or {}).get("id")
    )


def _nic_ids(addresses: list[dict[str, Any]]) -> set[str]:
    return {
        a["properties"]["networkInterfaceIPConfiguration"]["id"].lower()
        for a in addresses
        if _is_nic_entry(a)
    }


def _ip_signature(addresses: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted(
        (str(a.get("name", "")).lower(), str((a.get("properties") or {}).get("ipAddress")))
        for a in addresses
        if not _is_nic_entry(a)
    )


def prepare_pool_body(
    pool_id: str,
    current: dict[str, Any] | None,
    body: dict[str, Any],
    *,
    max_per_pool: int | None,
    max_per_load_balancer: int | None,
    other_pools_addresses: int,
) -> dict[str, Any]:
    """The pool PUT body to store, NIC-based entries removed (NICs own them).

    Raises the error NRP answers for a change it refuses."""
    props = body.get("properties")
    if not isinstance(props, dict) or "loadBalancerBackendAddresses" not in props:
        return body
    sent = _addresses(props)
    stored = _addresses((current or {}).get("properties") or {})
    if _nic_ids(sent) != _nic_ids(stored):
        raise bad_request(
            "ModificationOfNICIpConfigBackendPoolNotSupported",
            f"Operation on backend pool {pool_id} not allowed since it adds/modifies/deletes backend address "
            "pool members that are specified with a network interface IP configuration.",
        )
    sync_mode = props.get("syncMode") or ((current or {}).get("properties") or {}).get("syncMode")
    if sync_mode == SYNC_MODE_AUTOMATIC and _ip_signature(sent) != _ip_signature(stored):
        raise bad_request(
            "ModificationOfBackendAddressesInPoolIsNotSupportedWhenSyncModeIsAutomatic",
            "Modification of backend addresses in pools is not supported when sync mode is set as Automatic.",
        )
    ip_entries = [a for a in sent if not _is_nic_entry(a)]
    if max_per_pool is not None and len(ip_entries) > max_per_pool:
        raise bad_request(
            "LoadBalancerBackendAddressPoolSizeLimitExceeded",
            f"Backend address pool {pool_id} would have {len(ip_entries)} backend addresses; a pool of a "
            f"Standard load balancer may have at most {max_per_pool}.",
        )
    total = other_pools_addresses + len(ip_entries)
    if max_per_load_balancer is not None and total > max_per_load_balancer:
        raise bad_request(
            "LoadBalancerBackendAddressLimitExceeded",
            f"The load balancer of backend address pool {pool_id} would have {total} backend addresses; at "
            f"most {max_per_load_balancer} are allowed.",
        )
    return {**body, "properties": {**props, "loadBalancerBackendAddresses": ip_entries}}


def refuse_if_failed(failed_ids: list[str], writer_id: str, allowed_id: str | None = None) -> None:
    """NRP refuses writes that depend on a resource left in Failed until that one is re-PUT."""
    blocking = [f for f in failed_ids if allowed_id is None or f.lower() != allowed_id.lower()]
    if blocking:
        raise ArmError(
            400,
            "ReferencedResourceNotProvisioned",
            f"Cannot proceed with operation because resource {blocking[0]} used by resource {writer_id} "
            "is not in Succeeded state. Resource is in Failed state and the last operation that "
            "updated/is updating the resource is PutLoadBalancerOperation.",
            details=[],
        )
