"""Manual changes: add and remove addresses, drain and enable. Each is a `plan_manual` plan through
`PoolWriter.apply`, so ETags, retries and the blast-radius guard behave exactly as for the reconciler."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from azure.core.exceptions import AzureError

from shared.api import auth
from shared.api.addresses import (
    RequestedAddress,
    check_ip_in_vnet,
    find_entry,
    parse_address_ref,
    parse_addresses,
)
from shared.api.arm_answers import (
    operation_link,
    operation_token,
    pool_not_found,
)
from shared.api.context import ApiContext
from shared.api.http import (
    JSON,
    ApiError,
    ApiRequest,
    ApiResponse,
    WriteOptions,
    bad_request,
    parse_json_body,
)
from shared.api.operations import Operation, caller_name
from shared.api.pools import described_members, lb_and_pool
from shared.api.views import address_vnet, plan_json
from shared.app.runtime import Runtime
from shared.audit.collect import AuditSettings
from shared.core.arm_json import pool_from_json
from shared.core.guard import GuardRefused
from shared.core.ids import ResourceId, id_key, vnet_of_subnet
from shared.core.manual_plan import plan_manual
from shared.core.models import ADMIN_DOWN, ADMIN_NONE, PoolAddress, PoolSnapshot, normal_ip
from shared.core.naming import is_managed_name
from shared.core.plan import PlanInputError, PoolPlan
from shared.storage.report_store import DrainLedger

log = logging.getLogger("poolsync.http")

def _pool_vnet(context: ApiContext, pool_id: str, snapshot: PoolSnapshot) -> str | None:
    """The one virtual network this IP-based pool holds addresses of, if anything says so yet."""
    if snapshot.vnet_id:
        return snapshot.vnet_id
    rules = context.runtime.rules.rules_for_pool(pool_id)
    if rules:
        return rules[0].virtual_network_id
    for entry in snapshot.addresses:
        vnet = address_vnet(entry, None)
        if vnet:
            return vnet
    return None


def _check_pool_accepts_ips(lb: Mapping[str, JSON], snapshot: PoolSnapshot) -> None:
    sku = ((lb.get("sku") or {}).get("name") or "").lower()
    if sku != "standard":
        raise ApiError(
            409, "UnsupportedLoadBalancerSku",
            f"the load balancer is {sku or 'unknown'} SKU; IP-based backend pools need Standard", "pool",
        )
    if snapshot.nic_member_count:
        raise ApiError(
            409, "NicBasedPool",
            f"the pool has {snapshot.nic_member_count} NIC-based member(s); a pool cannot mix NIC- and "
            "IP-based members", "pool",
        )


def _check_rules(context: ApiContext, pool_id: str, vnet_id: str, wanted: RequestedAddress) -> None:
    """409 when the rules already say where this IP goes: poolsync adds and removes it itself."""
    hits = context.runtime.rules.membership_index.rules_for(id_key(vnet_id), str(wanted.ip))
    if not hits:
        return
    rule = hits[0]
    cidr = next((str(c) for c in rule.cidrs if c.version == wanted.ip.version and wanted.ip in c), "?")
    where = "this pool" if id_key(rule.pool_id) == id_key(pool_id) else f"pool {rule.pool_id}"
    raise ApiError(
        409,
        "ConflictsWithRule",
        f"{wanted.ip} is in {cidr} of rule {rule.name!r}, which assigns addresses there to {where}; "
        "poolsync manages it (tag the VM instead of adding it by hand)",
        wanted.target + "ipAddress",
    )


@dataclass
class _PlanProblem:
    """Set by a plan maker that must refuse; the writer then sees an empty plan and writes nothing."""

    error: ApiError | None = None


def _write(
    context: ApiContext,
    pool_id: str,
    make_plan: Callable[[PoolSnapshot, _PlanProblem], PoolPlan],
    options: WriteOptions,
    principal: str,
    action: str,
) -> tuple[ApiResponse, PoolPlan]:
    problem = _PlanProblem()

    def planner(snapshot: PoolSnapshot) -> PoolPlan:
        problem.error = None  # every attempt (after a 412) re-plans from a fresh read
        return make_plan(snapshot, problem)

    if options.force:
        log.warning("%s on %s by %s with force: %s", action, pool_id, principal, options.reason)
    try:
        result = context.runtime.writer.apply(
            pool_id, planner, force=options.force, force_reason=options.reason, wait=options.wait
        )
    except GuardRefused as refused:
        raise ApiError(
            422, "GuardRefused", f"{refused.reason}; repeat with force=true and a reason to override", "pool",
            extra={"plan": plan_json(refused.plan)},
        ) from None
    except PlanInputError as error:
        raise bad_request("InvalidField", str(error), "body") from None
    except AzureError as error:
        raise pool_not_found(error, pool_id) from None
    if problem.error is not None:
        raise problem.error
    log.info("%s on %s by %s: %s", action, pool_id, principal, result.plan.summary(),
             extra={"pool": pool_id, "principal": principal, "plan": result.plan.summary()})
    # With wait=false Azure has accepted the change but not finished it: not "written" until the operation is.
    body: dict[str, JSON] = {"pool": pool_id, "written": result.written and options.wait,
                             "accepted": result.written, "plan": plan_json(result.plan)}
    token = operation_token(result.operation_url, context.runtime.clients.settings.endpoint)
    if result.written and not options.wait:
        body["operation"] = operation_link(token)
        headers = {"Location": f"/api/operations/{token}"} if token else {}
        return ApiResponse(202, body, headers), result.plan
    return ApiResponse(200, body), result.plan


@auth.requires(auth.OPERATOR)
def add_addresses(context: ApiContext, request: ApiRequest) -> ApiResponse:
    pool_id, _ = context.pool_from_route(request)
    options = WriteOptions.from_query(request)
    wanted = parse_addresses(parse_json_body(request, required=True))
    lb, raw = lb_and_pool(context, pool_id)
    current = pool_from_json(raw)
    _check_pool_accepts_ips(lb, current)
    vnet_id = _pool_vnet(context, pool_id, current)
    for item in wanted:
        given = item.vnet_id or (vnet_of_subnet(item.subnet_id) if item.subnet_id else None)
        if given and vnet_id and id_key(given) != id_key(vnet_id):
            raise ApiError(409, "VirtualNetworkMismatch",
                           f"the pool holds addresses of {vnet_id} only", item.target + "virtualNetwork")
        vnet_id = vnet_id or given
    if vnet_id is None:
        raise bad_request("MissingField", "the pool has no virtual network yet: give virtualNetwork",
                          "virtualNetwork")
    context.check_subscription(ResourceId.parse(vnet_id).subscription, "virtualNetwork")
    vnet = context.runtime.inventory.virtual_network(vnet_id)
    if vnet is None:
        raise ApiError(404, "VirtualNetworkNotFound", f"virtual network {vnet_id} does not exist",
                       "virtualNetwork")
    for item in wanted:
        check_ip_in_vnet(item.ip, vnet, item.target + "ipAddress")
        _check_rules(context, pool_id, vnet_id, item)
    additions = [
        PoolAddress(item.name, str(item.ip), None if item.subnet_id else vnet_id, item.subnet_id,
                    item.admin_state)
        for item in wanted
    ]

    def make_plan(snapshot: PoolSnapshot, problem: _PlanProblem) -> PoolPlan:
        present = {entry.name.lower(): entry for entry in snapshot.addresses}
        # Re-sending an address that is already there as asked is a success, not a conflict (retries).
        fresh = [
            a for a in additions
            if not ((old := present.get(a.name.lower())) is not None
                    and normal_ip(old.ip_address) == a.ip_address
                    and old.admin_state == a.admin_state
                    and id_key(address_vnet(old, snapshot.vnet_id) or "") == id_key(vnet_id))
        ]
        planned = plan_manual(snapshot, add=fresh)
        if planned.conflicts:
            problem.error = ApiError(
                409, "AddressConflict",
                "; ".join(f"{c.name} {c.ip_address or ''}: {c.reason}" for c in planned.conflicts),
                "body", extra={"plan": plan_json(planned)},
            )
            return PoolPlan(pool_id=snapshot.id)
        return planned

    response, _ = _write(context, pool_id, make_plan, options, caller_name(context, request), "add addresses")
    response.body["addresses"] = _described(context, pool_id, additions)
    return response



def _described(context: ApiContext, pool_id: str, entries: Iterable[PoolAddress]) -> list[dict[str, JSON]]:
    """The written entries as GET /api/pools/{...} shows them: owner VM and covering rule included."""
    return described_members(context, PoolSnapshot(id=pool_id, etag=None, addresses=tuple(entries)))


def _existing_entry_plan(
    request: ApiRequest, build: Callable[[PoolSnapshot, PoolAddress], PoolPlan]
) -> Callable[[PoolSnapshot, _PlanProblem], PoolPlan]:
    ip, name = parse_address_ref(request.route_params.get("address"))

    def make_plan(snapshot: PoolSnapshot, problem: _PlanProblem) -> PoolPlan:
        entry = find_entry(snapshot, ip, name)
        if entry is None:
            problem.error = ApiError(404, "AddressNotFound",
                                     f"no address {ip or name} in pool {snapshot.id}", "address")
            return PoolPlan(pool_id=snapshot.id)
        return build(snapshot, entry)

    return make_plan


def note_drain(runtime: Runtime, pool_id: str, names: Iterable[str], *, drained: bool) -> None:
    """Tell the audit's drain ledger when poolsync drained an address (or that it no longer is), so
    drain ages are exact. Best effort: the change in Azure is done whatever the bookkeeping does."""
    try:
        ledger = DrainLedger(runtime.storage, AuditSettings.from_env(runtime.settings).drain_table)
        for name in names:
            if drained:
                ledger.record_drain(pool_id, name)
            else:
                ledger.forget(pool_id, name)
    except Exception as error:
        log.warning("could not update the drain ledger for %s: %s", pool_id, error)


@auth.requires(auth.OPERATOR)
def remove_address(context: ApiContext, request: ApiRequest) -> ApiResponse:
    pool_id, _ = context.pool_from_route(request)
    options = WriteOptions.from_query(request)
    make_plan = _existing_entry_plan(
        request, lambda snapshot, entry: plan_manual(snapshot, remove=[entry.name])
    )
    who = caller_name(context, request)
    response, plan = _write(context, pool_id, make_plan, options, who, "remove address")
    removed = _described(context, pool_id, plan.removes)
    if response.body["accepted"]:  # a managed entry's drain stays: a reconcile re-adds it Down (pool_memory)
        unmanaged = [entry.name for entry in plan.removes if not is_managed_name(entry.name)]
        note_drain(context.runtime, pool_id, unmanaged, drained=False)
    response.body["addresses"] = removed
    if any(item["managed"] for item in removed):
        response.body["warnings"] = [
            "removed a poolsync-managed address: the next reconcile adds it back if the rules still select "
            "its VM"
        ]
    return response


def set_admin_state(state: str) -> Operation:
    """drain (Down) / enable (None): the admin state of one address."""

    def operation(context: ApiContext, request: ApiRequest) -> ApiResponse:
        pool_id, _ = context.pool_from_route(request)
        options = WriteOptions.from_query(request)
        found: list[PoolAddress] = []

        def build(snapshot: PoolSnapshot, entry: PoolAddress) -> PoolPlan:
            found[:] = [entry]
            return plan_manual(snapshot, admin={entry.name: state})

        make_plan = _existing_entry_plan(request, build)
        action = "drain" if state == ADMIN_DOWN else "enable"
        who = caller_name(context, request)
        response, _ = _write(context, pool_id, make_plan, options, who, f"{action} address")
        changed = [replace(entry, admin_state=state) for entry in found]
        response.body["addresses"] = _described(context, pool_id, changed)
        if response.body["accepted"]:
            note_drain(context.runtime, pool_id, [entry.name for entry in found], drained=state == ADMIN_DOWN)
        return response

    return operation


drain_address = auth.requires(auth.OPERATOR)(set_admin_state(ADMIN_DOWN))
enable_address = auth.requires(auth.OPERATOR)(set_admin_state(ADMIN_NONE))
