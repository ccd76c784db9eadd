"""ARM's front door: every request passes authentication, injected faults, the subscription
lookup, throttling and role checks before the resource provider (`api.ArmApi`) sees it.

Injected faults act before the provider so they can stand in for any of those layers. Paths
under `/_emulator` go to the admin endpoints instead (no auth). HTTP-agnostic: the server
module moves the bytes.
"""

from __future__ import annotations

import logging
import time
from typing import Final

from emulator import faults as fault_kinds
from emulator import routing
from emulator.admin import AdminApi
from emulator.api import Reply, Request
from emulator.cloud import Cloud
from emulator.errors import ArmError
from emulator.principals import bearer_token, client_of, principal_of
from emulator.rbac import guarded_scope
from emulator.throttling import operation_kind

ADMIN_PREFIX = "/_emulator"
# what `serve` answers when a fault drops the connection instead of replying
RESET_CONNECTION: Final = None
logger = logging.getLogger("emulator")


class FrontDoor:
    def __init__(self, cloud: Cloud, admin: AdminApi) -> None:
        self.cloud = cloud
        self.admin = admin

    def serve(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[str, str],
        body: bytes,
        base_url: str,
    ) -> Reply | None:
        """The reply to one request (`headers` with lower-cased names), or RESET_CONNECTION."""
        if path.startswith(ADMIN_PREFIX):
            return self.admin.handle(method, path[len(ADMIN_PREFIX) :], query, body)
        cloud = self.cloud
        resource_type = routing.resource_type_label(path)
        cloud.stats.request(method, resource_type)
        extra: dict[str, str] = {}
        try:
            token = _authenticate(headers)
            principal = principal_of(token)
            fault = cloud.faults.pick(method, path, resource_type)
            fail_lro = False
            if fault is not None:
                cloud.stats.fault(fault.kind)
                if fault.kind == fault_kinds.RESET:
                    return RESET_CONNECTION
                if fault.kind == fault_kinds.SLOW:
                    time.sleep(fault.delay)
                elif fault.kind == fault_kinds.LRO_FAILED:
                    fail_lro = method in ("PUT", "DELETE", "POST")
                else:
                    raise fault.error()
            route = routing.parse(path)
            if not cloud.world.has_subscription(route.subscription):
                raise ArmError(
                    404,
                    "SubscriptionNotFound",
                    f"The subscription '{route.subscription}' could not be found.",
                )
            cloud.stats.arm_call(principal, operation_kind(method))
            extra = cloud.throttle.charge(
                route.subscription,
                is_write=method != "GET",
                principal=principal,
                method=method,
                namespace=route.namespace,
            )
            scope = guarded_scope(route.action, route.resource_id)
            if scope is not None:
                cloud.rbac.check(principal, client_of(token)[0], method, route.full_type, scope)
            request = Request(
                method, route, path, query, headers, body, base_url, fail_lro=fail_lro, principal=principal
            )
            reply = cloud.api.handle(request)
        except ArmError as error:
            cloud.stats.rejection(error.status, error.code)
            extra = {**extra, **error.headers}
            reply = Reply(error.status, error.body())
        except Exception as bug:  # an emulator defect: answer 500 like ARM rather than drop the connection
            logger.exception("unhandled error serving %s %s", method, path)
            cloud.stats.rejection(500, "InternalServerError")
            message = f"Emulator error: {bug!r}"
            reply = Reply(500, {"error": {"code": "InternalServerError", "message": message}})
        reply.headers = {**extra, **reply.headers}
        return reply


def _authenticate(headers: dict[str, str]) -> str:
    """The caller's bearer token, or the 401 ARM answers."""
    value = headers.get("authorization")
    if value is None:
        raise ArmError(
            401, "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
        )
    token = bearer_token(value)
    if not token:
        raise ArmError(
            401, "InvalidAuthenticationToken", "The access token is invalid: expected a Bearer token."
        )
    return token
