"""GET /api/pools and GET /api/pools/{...}: the managed pools, and one pool's members with their owners."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from azure.core.exceptions import AzureError

from shared.api import auth
from shared.api.context import ApiContext
from shared.api.http import (
    JSON,
    ApiError,
    ApiRequest,
    ApiResponse,
)
from shared.api.views import address_vnet, member_json, pool_path
from shared.core.arm_json import pool_from_json
from shared.core.ids import ResourceId, id_key
from shared.core.models import ADMIN_DOWN, PoolSnapshot, normal_ip
from shared.core.naming import is_managed_name

log = logging.getLogger("poolsync.http")


def _read_lb(context: ApiContext, lb_id: str) -> dict[str, JSON] | None:
    return context.runtime.inventory.load_balancer(lb_id)


def _pool_in_lb(lb: Mapping[str, JSON] | None, pool_id: str) -> dict[str, JSON] | None:
    if lb is None:
        return None
    for pool in (lb.get("properties") or {}).get("backendAddressPools") or []:
        if id_key(pool.get("id", "")) == id_key(pool_id):
            return pool
    return None


@auth.requires(auth.READER)
def list_pools(context: ApiContext, request: ApiRequest) -> ApiResponse:
    last = context.runtime.reconciler.journal.last()
    lbs: dict[str, dict[str, JSON] | None] = {}
    pools = []
    for pool_id, source in context.all_pools():
        rid = ResourceId.parse(pool_id)
        lb_key = rid.parent.key()
        if lb_key not in lbs:  # one GET per load balancer: it carries all its pools and the SKU
            lbs[lb_key] = _read_lb(context, str(rid.parent))
        lb = lbs[lb_key]
        raw = _pool_in_lb(lb, pool_id)
        entry: dict[str, JSON] = {
            "id": pool_id,
            "href": pool_path(pool_id),
            "source": source,
            "rules": [rule.name for rule in context.runtime.rules.rules_for_pool(pool_id)],
            "exists": raw is not None,
            "sku": ((lb or {}).get("sku") or {}).get("name"),
            "memberCount": 0,
            "managedCount": 0,
            "unmanagedCount": 0,
            "drainedCount": 0,
            "nicMemberCount": 0,
            "lastReconcile": last.get(id_key(pool_id)),
            "heldRemovals": ((last.get(id_key(pool_id)) or {}).get("summary") or {}).get("held", 0),
            "windowRemovals": None,
        }
        if raw is not None:
            snapshot = pool_from_json(raw)
            managed = sum(1 for a in snapshot.addresses if is_managed_name(a.name))
            entry.update(
                memberCount=len(snapshot.addresses),
                managedCount=managed,
                unmanagedCount=len(snapshot.addresses) - managed,
                drainedCount=sum(1 for a in snapshot.addresses if a.admin_state == ADMIN_DOWN),
                nicMemberCount=snapshot.nic_member_count,
                windowRemovals=_window_removals(context, pool_id, source, snapshot),
            )
        pools.append(entry)
    return ApiResponse(200, {"pools": pools})


def _window_removals(context: ApiContext, pool_id: str, source: str, snapshot: PoolSnapshot) -> int | None:
    """Unconfirmed removals the guard counts against the pool now (POOLSYNC_GUARD_WINDOW); None when
    poolsync keeps no such memory (a manual pool, no storage) or it cannot be read."""
    memory = context.runtime.reconciler.memory
    if memory is None or source != "rules":
        return None
    try:
        return memory.window_count(pool_id, {entry.name.lower() for entry in snapshot.addresses})
    except AzureError as error:
        log.warning("could not read the removal window of %s: %s", pool_id, error)
        return None


def _owners(context: ApiContext, snapshot: PoolSnapshot) -> dict[tuple[str, str], dict[str, JSON]]:
    """(vnet key, IP) -> the VM / NIC ipconfig holding that IP, from list calls of the VNets' subscriptions.

    List calls (two per subscription) instead of a GET per member: a pool may hold hundreds."""
    subscriptions = set()
    for entry in snapshot.addresses:
        vnet = address_vnet(entry, snapshot.vnet_id)
        if vnet:
            subscription = ResourceId.parse(vnet).subscription.lower()
            if subscription in context.subscriptions:  # never read subscriptions poolsync is not set up for
                subscriptions.add(subscription)
    if not subscriptions:
        return {}
    inventory = context.runtime.inventory.subscriptions(subscriptions)
    owners: dict[tuple[str, str], dict[str, JSON]] = {}
    for nic in inventory.nics.values():
        vm = inventory.vms.get(id_key(nic.vm_id)) if nic.vm_id else None
        for config in nic.ip_configurations:
            if config.private_ip and config.vnet_id:
                owners[(id_key(config.vnet_id), normal_ip(config.private_ip) or "")] = {
                    "vmId": nic.vm_id,
                    "vmName": vm.name if vm else (nic.vm_id.rsplit("/", 1)[-1] if nic.vm_id else None),
                    "nicId": nic.id,
                    "nicName": nic.name,
                    "ipConfiguration": config.name,
                    "scaleSetId": vm.scale_set_id if vm else None,
                }
    return owners


def lb_and_pool(context: ApiContext, pool_id: str) -> tuple[dict[str, JSON], dict[str, JSON]]:
    lb = _read_lb(context, str(ResourceId.parse(pool_id).parent))
    raw = _pool_in_lb(lb, pool_id)
    if lb is None or raw is None:
        raise ApiError(404, "PoolNotFound", f"pool {pool_id} does not exist in Azure", "pool")
    return lb, raw


@auth.requires(auth.READER)
def described_members(context: ApiContext, snapshot: PoolSnapshot) -> list[dict[str, JSON]]:
    """The snapshot's entries with the VM holding each IP and the pool's rule selecting it (pool views and
    write results alike)."""
    owners = _owners(context, snapshot)
    index = context.runtime.rules.membership_index
    own_rules = {rule.name for rule in context.runtime.rules.rules_for_pool(snapshot.id)}
    members = []
    for entry in snapshot.addresses:
        vnet = address_vnet(entry, snapshot.vnet_id)
        ip = normal_ip(entry.ip_address) or ""
        owner = owners.get((id_key(vnet), ip)) if vnet else None
        covering = [r.name for r in index.rules_for(id_key(vnet), ip) if r.name in own_rules] if vnet else []
        members.append(member_json(entry, snapshot.vnet_id, owner, covering[0] if covering else None))
    return members


@auth.requires(auth.READER)
def get_pool(context: ApiContext, request: ApiRequest) -> ApiResponse:
    pool_id, source = context.pool_from_route(request)
    lb, raw = lb_and_pool(context, pool_id)
    sku = (lb.get("sku") or {}).get("name")
    snapshot = pool_from_json(raw, lb_sku=sku)
    own_rules = {rule.name for rule in context.runtime.rules.rules_for_pool(pool_id)}
    members = described_members(context, snapshot)
    body = {
        "id": pool_id,
        "source": source,
        "sku": sku,
        "virtualNetwork": snapshot.vnet_id,
        "etag": snapshot.etag,
        "nicMemberCount": snapshot.nic_member_count,
        "rules": sorted(own_rules),
        "members": members,
    }
    return ApiResponse(200, body)
