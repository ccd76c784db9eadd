"""The ARM operations: GET / list / PUT / DELETE and operation polling, HTTP-agnostic.

`ArmApi.handle` takes a parsed request and returns a `Reply`; the server module only
moves bytes. Writes become long-running operations (see `lro`), guarded by ETag
preconditions and the one-operation-at-a-time rule of a load balancer.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from emulator import conflicts, pool_rules
from emulator import events as ev
from emulator import tags as tags_api
from emulator.errors import ArmError, bad_request
from emulator.ids import InvalidResourceId, ResourceId, id_key
from emulator.lro import CANCELED, FAILED, IN_PROGRESS, Operation, OperationTracker
from emulator.profiles import Profile, default_profile
from emulator.retry_after import NO_RETRY_AFTER, LroRetryAfter
from emulator.routing import KINDS, Route
from emulator.stats import Stats
from emulator.world import World, missing

_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
# Oldest versions served: IP-based backend pools need network 2020-05-01 or later.
_MIN_API_VERSION = {
    "Microsoft.Network": "2020-05-01",
    "Microsoft.Compute": "2020-06-01",
    "Microsoft.Resources": "2019-10-01",  # the first with the Tags API at a resource scope
}
# The Network RP's scale-set NIC operations sit under the Compute path; the SDK pins 2018-10-01 for them.
_MIN_SCALE_SET_NIC_API_VERSION = "2017-03-30"


@dataclass
class Config:
    """Knobs tests and benchmarks adjust at run time."""

    operation_seconds: float = 0.05
    # Retry-After per resource provider; none (the default) lets the SDK use its polling_interval
    lro_retry_after: LroRetryAfter = NO_RETRY_AFTER
    page_size: int = 100


@dataclass
class Request:
    method: str
    route: Route
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str
    fail_lro: bool = False  # fault injection: this write's operation ends Failed
    principal: str = ""  # the caller (see emulator.principals)


@dataclass
class Reply:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


class ArmApi:
    def __init__(
        self,
        world: World,
        tracker: OperationTracker,
        stats: Stats,
        publisher: ev.EventPublisher,
        config: Config,
        clock: Callable[[], float],
    ) -> None:
        self.world = world
        self.tracker = tracker
        self.stats = stats
        self.publisher = publisher
        self.config = config
        self._clock = clock
        self._latest_op: dict[str, str] = {}  # resource key -> id of the operation that last wrote it
        # operation id -> its load balancer as it was before the write (strict profiles: undo on cancel)
        self._lb_before: dict[str, dict[str, Any] | None] = {}
        # operation id -> (action, instance ids) of a scale-set action still running
        self._actions: dict[str, tuple[str, list[str]]] = {}
        self.profile: Profile = default_profile()
        self.conflict_policy = conflicts.ConflictPolicy(self.profile.conflict_mix, self.profile.conflict_seed)
        # (principal, resource id) -> may it see the item; RBAC replaces it (lists are filtered, not refused)
        self.can_read: Callable[[str, str], bool] = lambda principal, resource_id: True

    def use_profile(self, profile: Profile) -> None:
        self.profile = profile
        self.conflict_policy = conflicts.ConflictPolicy(profile.conflict_mix, profile.conflict_seed)
        self.world.echo_nic_members = profile.strict_resources

    def forget_operations(self) -> None:
        self._latest_op.clear()
        self._lb_before.clear()
        self._actions.clear()

    # ------------------------------------------------------------ entry
    def handle(self, request: Request) -> Reply:
        route = request.route
        api_version = self._api_version(request)
        if route.action == "operation":
            return self._poll_status(request)
        if route.action == "operation_result":
            return self._poll_result(request)
        if route.action == "tags":
            with self.world.lock:
                return self._tags(request, api_version)
        if route.action == "collection":
            if request.method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"The {request.method} method is not allowed here.")
            return self._list(request, api_version)
        if route.action == "action":
            if request.method != "POST":
                raise ArmError(405, "MethodNotAllowed", f"The {request.method} method is not allowed here.")
            with self.world.lock:
                return self._action(request, api_version)
        if route.kind == "vmss_nic":  # three levels deep: served read-only, outside the generic path
            if request.method != "GET":
                raise ArmError(
                    405, "MethodNotAllowed", "Scale-set NICs are read through the Network RP only."
                )
            nic = self.world.get_scale_set_nic(route.resource_id)
            if nic is None:
                raise ArmError(404, "NotFound", f"Resource {route.resource_id} not found.", details=[])
            return Reply(200, nic, self._etag_header(nic))
        try:
            ResourceId.parse(route.resource_id)
        except InvalidResourceId as exc:
            raise bad_request(
                "InvalidResourceName", f"The resource name in '{request.path}' is invalid."
            ) from exc
        if request.method == "GET":
            return self._get(route)
        if request.method == "PATCH" and route.kind in ("vm", "vmss"):
            # Compute's PATCH is a PUT of the merged body: same validation, operation and event
            with self.world.lock:
                current = self._lookup(route)
                if current is None:
                    raise self._missing(route)
                merged = tags_api.vm_after_patch(current, _json_body(request.body))
                return self._put(replace(request, body=json.dumps(merged).encode()), api_version)
        if request.method in ("PUT", "DELETE"):
            # precondition checks, the busy check, the change and the operation's start are one step:
            # two racing writes must never both get in
            with self.world.lock:
                if request.method == "PUT":
                    return self._put(request, api_version)
                return self._delete(request, api_version)
        raise ArmError(
            405, "MethodNotAllowed", f"The {request.method} method is not supported by the emulator."
        )

    def _api_version(self, request: Request) -> str:
        version = request.query.get("api-version")
        if not version:
            raise bad_request(
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        namespace = request.route.namespace
        oldest = (
            _MIN_SCALE_SET_NIC_API_VERSION
            if request.route.kind == "vmss_nic"
            else _MIN_API_VERSION.get(namespace, "")
        )
        if not _API_VERSION.match(version) or version < oldest:
            raise bad_request(
                "InvalidApiVersionParameter",
                f"The api-version '{version}' is invalid. The supported versions for namespace '{namespace}' "
                f"are '{_MIN_API_VERSION.get(namespace)}' and later.",
            )
        return version

    # ------------------------------------------------------------- reads
    def _lookup(self, route: Route) -> dict[str, Any] | None:
        """The rendered resource a route names, or None."""
        getter = {
            "vnet": self.world.get_vnet,
            "subnet": self.world.get_subnet,
            "nic": self.world.get_nic,
            "vm": self.world.get_vm,
            "lb": self.world.get_lb,
            "pool": self.world.get_pool,
            "vmss": self.world.get_scale_set,
            "vmss_vm": self.world.get_scale_set_instance,
        }[route.kind]
        return getter(route.resource_id)

    def _get(self, route: Route) -> Reply:
        resource = self._lookup(route)
        if resource is None:
            raise self._missing(route)
        return Reply(200, resource, self._etag_header(resource))

    def _missing(self, route: Route) -> ArmError:
        rid = ResourceId.parse(route.resource_id)
        if rid.child_type and self.world.current_etag(str(rid.parent)) is None:
            return missing(str(rid.parent))
        return missing(route.resource_id)

    def _list(self, request: Request, api_version: str) -> Reply:
        route = request.route
        token = request.query.get("$skiptoken")
        after = _decode_token(token) if token else None
        limit = max(1, self.config.page_size)
        if route.is_child_collection:
            parent = route.resource_id
            items = {
                "pool": self.world.list_pools,
                "subnet": self.world.list_subnets,
                "vmss_vm": self.world.list_scale_set_instances,
                "vmss_nic": self.world.list_scale_set_nics,
            }[route.kind](parent)
            if items is None:
                raise missing(parent)
            items = [i for i in items if after is None or id_key(i["id"]) > after]
            items.sort(key=lambda i: id_key(i["id"]))
            page, more = items[:limit], len(items) > limit
            next_after = id_key(page[-1]["id"]) if more else None
        else:
            page, next_after = self.world.list_page(
                route.kind, route.subscription, route.resource_group, after, limit
            )
        body: dict[str, Any] = {"value": [i for i in page if self.can_read(request.principal, i["id"])]}
        if next_after is not None:
            body["nextLink"] = (
                f"{request.base_url}{request.path}?api-version={api_version}"
                f"&$skiptoken={_encode_token(next_after)}"
            )
        return Reply(200, body)

    # ------------------------------------------------------------ writes
    def _put(self, request: Request, api_version: str) -> Reply:
        route = request.route
        body = _json_body(request.body)
        self._check_preconditions(request)
        lock_key = self._lb_lock(route)
        conflict = self._resolve_conflict(lock_key, request) if lock_key is not None else None
        strict = self.profile.strict_resources
        if strict and route.kind == "pool":
            lb_id = str(ResourceId.parse(route.resource_id).parent)
            pool_rules.refuse_if_failed(self.world.failed_parts(lb_id), route.resource_id, route.resource_id)
            body = pool_rules.prepare_pool_body(
                route.resource_id,
                self.world.get_pool(route.resource_id),
                body,
                max_per_pool=self.profile.max_addresses_per_pool,
                max_per_load_balancer=self.profile.max_addresses_per_load_balancer,
                other_pools_addresses=self.world.lb_ip_address_count(lb_id, except_pool=route.resource_id),
            )
        if conflict is not None and conflict[0] == conflicts.CANCEL_EARLIER and lock_key is not None:
            return self._put_superseding(request, api_version, body, lock_key, conflict[1])
        before = self.world.snapshot_lb(lock_key) if strict and lock_key is not None else None
        rendered, created = self._apply_put(route, body)
        failure = None
        if conflict is not None:  # accept-then-fail: accepted now, ends Failed; the LB stays the holder's
            failure = conflicts.failed_due_to_another_operation(conflict[1].method, conflict[1].id)
            lock_key = None
        operation = self._start_operation(request, rendered["id"], lock_key, api_version, failure)
        if strict and lock_key is not None:
            self._lb_before[operation.id] = before
        headers = {**self._etag_header(rendered), **self._lro_headers(request, operation, api_version)}
        return Reply(201 if created else 200, rendered, headers)

    def _put_superseding(
        self, request: Request, api_version: str, body: dict[str, Any], lock_key: str, earlier: Operation
    ) -> Reply:
        """Accept a write to a busy LB by canceling the earlier operation and undoing its content."""
        route = request.route
        with_earlier = self.world.snapshot_lb(lock_key)
        self.world.restore_lb(lock_key, self._lb_before.get(earlier.id, with_earlier), keep_etag=True)
        before = self.world.snapshot_lb(lock_key)
        try:
            rendered, created = self._apply_put(route, body)
        except ArmError:
            self.world.restore_lb(lock_key, with_earlier, keep_etag=True)  # refused: the earlier write stands
            raise
        later = self._start_operation(request, rendered["id"], lock_key, api_version, None)
        self.tracker.cancel(
            earlier, conflicts.canceled_and_superseded(earlier.method, earlier.id, request.method, later.id)
        )
        self._lb_before.pop(earlier.id, None)
        self._lb_before[later.id] = before
        headers = {**self._etag_header(rendered), **self._lro_headers(request, later, api_version)}
        return Reply(201 if created else 200, rendered, headers)

    def _apply_put(self, route: Route, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        creating = self.world.current_etag(route.resource_id) is None
        state = "Creating" if creating and route.kind in ("vm", "vmss") else "Updating"
        putter: Callable[..., tuple[dict[str, Any], bool]] | None
        if route.kind == "nic":
            return self.world.put_nic(route.resource_id, body, state, busy_lb=self._lb_blocks_nic(route))
        else:
            putter = {
                "vnet": self.world.put_vnet,
                "subnet": lambda rid, b, _state: self.world.put_subnet(rid, b),
                "vm": self.world.put_vm,
                "lb": self.world.put_lb,
                "pool": self.world.put_pool,
                "vmss": self.world.put_scale_set,
            }.get(route.kind)
            if putter is None:
                raise ArmError(405, "MethodNotAllowed", f"PUT is not served for {route.full_type}.")
            return putter(route.resource_id, body, state)

    def _lb_blocks_nic(self, route: Route) -> Callable[[str], bool]:
        """For a NIC joining a pool: True if the LB is busy; raises if it is left Failed (strict)."""

        def check(lb_id: str) -> bool:
            if self.profile.strict_resources:
                pool_rules.refuse_if_failed(self.world.failed_parts(lb_id), route.resource_id)
            return self.tracker.busy(id_key(lb_id)) is not None

        return check

    def _delete(self, request: Request, api_version: str) -> Reply:
        route = request.route
        self._check_preconditions(request)
        if self.world.current_etag(route.resource_id) is None:
            return Reply(204)
        lock_key = self._lb_lock(route)
        if lock_key is not None:
            self._resolve_conflict(lock_key, request)
        if self.profile.strict_resources and route.kind == "pool":
            lb_id = str(ResourceId.parse(route.resource_id).parent)
            pool_rules.refuse_if_failed(self.world.failed_parts(lb_id), route.resource_id, route.resource_id)
        self.world.check_delete(route.kind, route.resource_id)
        resource_id = self._canonical_id(route)
        self.world.set_provisioning_state(resource_id, "Deleting")
        operation = self._start_operation(request, resource_id, lock_key, api_version)
        headers = self._lro_headers(request, operation, api_version)
        headers["Location"] = f"{request.base_url}{operation.result_path()}?api-version={api_version}"
        return Reply(202, None, headers)

    def _action(self, request: Request, api_version: str) -> Reply:
        """A scale-set POST action (delete instances, reimage, manual upgrade): checked now, applied when
        its operation ends, with one ResourceActionSuccess event for the addressed resource."""
        route = request.route
        target = self._lookup(route)
        if target is None:
            raise self._missing(route)
        body = _json_body(request.body) if request.body else {}
        if route.kind == "vmss_vm":
            instances = [target["id"]]
        else:
            instances = self.world.check_instance_ids(
                target["id"], body, required=route.action_name in ("delete", "manualUpgrade")
            )
        operation = self._start_operation(request, target["id"], None, api_version)
        self._actions[operation.id] = (route.action_name, instances)
        headers = self._lro_headers(request, operation, api_version)
        headers["Location"] = f"{request.base_url}{operation.result_path()}?api-version={api_version}"
        return Reply(202, None, headers)

    def _apply_action(self, operation: Operation, kind: str, api_version: str) -> None:
        action, instances = self._actions.pop(operation.id, ("", []))
        scale_set_id = str(ResourceId.parse(operation.resource_id).parent)
        if action == "delete":
            self.world.delete_scale_set_instances(scale_set_id, [i.rsplit("/", 1)[-1] for i in instances])
        elif action == "reimage":
            self.world.reimage_instances(instances)
        elif action == "manualUpgrade":
            self.world.upgrade_instances(scale_set_id, instances)
        self.publisher.publish(ev.build_action_event(operation.resource_id, action, api_version))

    def _canonical_id(self, route: Route) -> str:
        resource = self._lookup(route)
        return resource["id"] if resource else route.resource_id

    def _check_preconditions(self, request: Request) -> None:
        current = self.world.current_etag(request.route.resource_id)
        if_match = request.headers.get("if-match")
        if if_match is not None and (
            current is None or (if_match.strip() != "*" and if_match.strip() != current)
        ):
            raise ArmError(
                412,
                "PreconditionFailed",
                f"Precondition failed for operation on resource {request.route.resource_id}: "
                f"the If-Match etag "
                f"{if_match} does not match the current etag {current}.",
                details=[],
            )
        if_none_match = request.headers.get("if-none-match")
        if if_none_match is not None and current is not None and if_none_match.strip() in ("*", current):
            raise ArmError(
                412,
                "PreconditionFailed",
                f"Precondition failed: resource {request.route.resource_id} already exists (If-None-Match).",
                details=[],
            )

    @staticmethod
    def _lb_lock(route: Route) -> str | None:
        if route.kind in ("lb", "pool"):
            return ResourceId.parse(route.resource_id).parent.key()
        return None

    def _resolve_conflict(self, lock_key: str, request: Request) -> tuple[str, Operation] | None:
        """None if the LB is free; else raises the refusal, or returns how the write is accepted."""
        holder = self.tracker.busy(lock_key)
        if holder is None:
            return None
        behaviour = self.conflict_policy.choose()
        accepting = behaviour in (conflicts.ACCEPT_THEN_FAIL, conflicts.CANCEL_EARLIER)
        # only PUTs are accepted over a running operation, and only a write that can be undone is canceled
        if accepting and request.method != "PUT":
            behaviour = conflicts.REJECT_409
        if behaviour == conflicts.CANCEL_EARLIER and holder.id not in self._lb_before:
            behaviour = conflicts.REJECT_409
        self.stats.conflict(behaviour)
        retry_after = max(1, round(holder.deadline - self._clock() + 0.5))
        if behaviour == conflicts.REJECT_409:
            status_uri = (
                f"{request.base_url}{holder.status_path()}?api-version={request.query.get('api-version')}"
            )
            raise conflicts.another_operation_in_progress(status_uri, retry_after)
        if behaviour == conflicts.RETRYABLE_429:
            lb = self.world.get_lb(lock_key) or {}
            guid = lb.get("properties", {}).get("resourceGuid", lock_key)
            raise conflicts.retryable_due_to_another_operation(holder.method, holder.id, guid, retry_after)
        return behaviour, holder

    def _start_operation(
        self,
        request: Request,
        resource_id: str,
        lock_key: str | None,
        api_version: str,
        failure: dict[str, Any] | None = None,
    ) -> Operation:
        resource = self._location_of(request.route, resource_id)
        operation = Operation(
            namespace=request.route.namespace,
            subscription=request.route.subscription,
            location=resource,
            resource_id=resource_id,
            method=request.method,
            deadline=self._clock() + self.config.operation_seconds,
            on_complete=lambda op: self._complete(op, request.route.kind, api_version),
            lock_key=lock_key,
            failure=_injected_failure() if request.fail_lro else failure,
        )
        self._latest_op[id_key(resource_id)] = operation.id
        return self.tracker.start(operation)

    def _location_of(self, route: Route, resource_id: str) -> str:
        top = str(ResourceId.parse(resource_id).parent)
        getter = {
            "vnet": self.world.get_vnet,
            "subnet": self.world.get_vnet,
            "nic": self.world.get_nic,
            "vm": self.world.get_vm,
            "lb": self.world.get_lb,
            "pool": self.world.get_lb,
            "vmss": self.world.get_scale_set,
            "vmss_vm": self.world.get_scale_set,
        }[route.kind]
        resource = getter(top)
        return str((resource or {}).get("location") or "westeurope").replace(" ", "").lower()

    def _lro_headers(self, request: Request, operation: Operation, api_version: str) -> dict[str, str]:
        headers = {
            "Azure-AsyncOperation": f"{request.base_url}{operation.status_path()}?api-version={api_version}"
        }
        seconds = self.config.lro_retry_after.of(operation.namespace).on_accept(operation.method)
        return {**headers, **_retry_after(seconds)}

    def _tags(self, request: Request, api_version: str) -> Reply:
        route = request.route
        current = self._lookup(route)
        if current is None:
            raise self._missing(route)
        tags = dict(current.get("tags") or {})
        if request.method == "GET":
            return Reply(200, tags_api.tags_resource(route.resource_id, tags))
        if request.method == "PUT":
            tags = tags_api.tags_after_put(_json_body(request.body))
        elif request.method == "PATCH":
            tags = tags_api.tags_after_patch(tags, _json_body(request.body))
        elif request.method == "DELETE":
            tags = {}
        else:
            raise ArmError(405, "MethodNotAllowed", f"The {request.method} method is not allowed here.")
        self.world.set_tags(route.kind, route.resource_id, tags)
        self.publisher.publish(ev.build_tags_event(current["id"], request.method, api_version))
        return Reply(200, tags_api.tags_resource(current["id"], tags))

    # -------------------------------------------------------- completion
    def _complete(self, operation: Operation, kind: str, api_version: str) -> None:
        # under the world lock: a cancel (also under it) and this completion never interleave
        with self.world.lock:
            if operation.status == CANCELED:
                return
            self._lb_before.pop(operation.id, None)
            self._complete_locked(operation, kind, api_version)
            if self.profile.strict_resources and operation.method == "PUT":
                self.world.renew_etag(operation.resource_id)  # NRP's etag changes again as the write ends

    def _complete_locked(self, operation: Operation, kind: str, api_version: str) -> None:
        key = id_key(operation.resource_id)
        superseded = self._latest_op.get(key) != operation.id
        if operation.failure is not None:
            if not superseded:
                self.world.set_provisioning_state(operation.resource_id, FAILED)
            return
        if operation.method == "POST":
            self._apply_action(operation, kind, api_version)
            return
        if operation.method != "DELETE":  # PUT, or a VM PATCH
            if not superseded:
                self.world.set_provisioning_state(operation.resource_id, "Succeeded")
            self.stats.write_succeeded(operation.resource_id)
            if kind in ("nic", "vm", "vmss"):
                self.publisher.publish(
                    ev.build_event(ev.WRITE_SUCCESS, operation.resource_id, operation.method, api_version)
                )
            return
        self._apply_delete(operation, kind, api_version)

    def _apply_delete(self, operation: Operation, kind: str, api_version: str) -> None:
        resource_id = operation.resource_id
        try:
            if kind == "vm":
                outcome = self.world.delete_vm(resource_id)
                deleted_nics = outcome[0] if outcome else []
                self.publisher.publish(ev.build_event(ev.DELETE_SUCCESS, resource_id, "DELETE", api_version))
                for nic_id in deleted_nics:
                    self.publisher.publish(ev.build_event(ev.DELETE_SUCCESS, nic_id, "DELETE", api_version))
            elif kind in ("vmss", "vmss_vm"):
                # the instances and NICs go inside the Compute RP: one event, for the resource addressed
                removed = (
                    self.world.delete_scale_set(resource_id)
                    if kind == "vmss"
                    else self.world.delete_scale_set_instance(resource_id)
                )
                if removed:
                    self.publisher.publish(
                        ev.build_event(ev.DELETE_SUCCESS, resource_id, "DELETE", api_version)
                    )
            else:
                removed = {
                    "vnet": self.world.delete_vnet,
                    "subnet": self.world.delete_subnet,
                    "nic": self.world.delete_nic,
                    "lb": self.world.delete_lb,
                    "pool": self.world.delete_pool,
                }[kind](resource_id)
                if removed and kind == "nic":
                    self.publisher.publish(
                        ev.build_event(ev.DELETE_SUCCESS, resource_id, "DELETE", api_version)
                    )
        except ArmError as exc:
            # the world changed while the delete ran (e.g. a NIC got attached): the operation fails
            operation.failure = exc.body()["error"]
            self.world.set_provisioning_state(resource_id, FAILED)
            return
        self._latest_op.pop(id_key(resource_id), None)
        self.stats.write_succeeded(resource_id)

    # ----------------------------------------------------------- polling
    def _operation(self, request: Request) -> Operation:
        operation = self.tracker.get(request.route.operation_id)
        if operation is None or operation.subscription.lower() != request.route.subscription.lower():
            raise ArmError(
                404, "OperationNotFound", f"The operation '{request.route.operation_id}' could not be found."
            )
        return operation

    def _poll_status(self, request: Request) -> Reply:
        operation = self._operation(request)
        headers = self._running_poll_headers(operation) if operation.status == IN_PROGRESS else {}
        return Reply(200, operation.status_body(), headers)

    def _poll_result(self, request: Request) -> Reply:
        operation = self._operation(request)
        if operation.status == IN_PROGRESS:
            headers = {
                "Location": f"{request.base_url}{request.path}?api-version={request.query['api-version']}",
                **self._running_poll_headers(operation),
            }
            return Reply(202, None, headers)
        if operation.status in (FAILED, CANCELED):
            failure = operation.failure or {}
            raise ArmError(
                500, failure.get("code", "InternalServerError"), failure.get("message", "Operation failed.")
            )
        if operation.method in ("DELETE", "POST"):
            return Reply(204)
        route = Route(
            "resource",
            operation.subscription,
            resource_id=operation.resource_id,
            kind=_kind_of(operation.resource_id),
        )
        return self._get(route)

    def _running_poll_headers(self, operation: Operation) -> dict[str, str]:
        earlier_polls = self.tracker.note_running_poll(operation)
        hints = self.config.lro_retry_after.of(operation.namespace)
        return _retry_after(hints.on_poll(operation.method, earlier_polls))

    @staticmethod
    def _etag_header(resource: dict[str, Any]) -> dict[str, str]:
        return {"ETag": resource["etag"]} if resource.get("etag") else {}


def _retry_after(seconds: int) -> dict[str, str]:
    return {"Retry-After": str(seconds)} if seconds > 0 else {}


def _kind_of(resource_id: str) -> str:
    return KINDS[ResourceId.parse(resource_id).full_type.lower()]


def _json_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8") if raw else "")
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise bad_request(
            "InvalidRequestContent",
            f"The request content was invalid and could not be deserialized: '{str(exc)[:200]}'.",
        ) from exc
    if not isinstance(body, dict):
        raise bad_request("InvalidRequestContent", "The request content must be a JSON object.")
    return body


def _injected_failure() -> dict[str, Any]:
    return {
        "code": "InternalServerError",
        "message": f"An error occurred. (injected fault, activity {uuid.uuid4()})",
        "details": [],
    }


def _encode_token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def _decode_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request("InvalidSkipToken", f"The skip token '{token}' is invalid.") from exc
