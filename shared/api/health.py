"""GET /api/health (anonymous, cached) and the OpenAPI document."""

from __future__ import annotations

import logging
from collections.abc import Callable

from azure.core.exceptions import AzureError, ResourceNotFoundError

from shared import settings as app_settings
from shared.api import auth
from shared.api.context import ApiContext
from shared.api.http import (
    JSON,
    ApiError,
    ApiRequest,
    ApiResponse,
)
from shared.api.openapi import app_version, build_document
from shared.app.health import (
    HEALTH_ANSWER_SECONDS,
    HEALTH_PROBE_TIMEOUTS,
    BoundedCheck,
    SingleFlightCache,
    health_cache_seconds,
)
from shared.app.runtime import Runtime, get_runtime
from shared.azure.retry import RetrySettings, call_with_retry, classify
from shared.core.ids import ResourceId
from shared.core.rules import RulesError

log = logging.getLogger("poolsync.http")


HEALTH_CACHE: SingleFlightCache[ApiResponse] = SingleFlightCache()
HEALTH_BOUND: BoundedCheck[ApiResponse] = BoundedCheck(HEALTH_ANSWER_SECONDS)


def health(
    runtime_provider: Callable[[], Runtime] = get_runtime,
    cache: SingleFlightCache[ApiResponse] = HEALTH_CACHE,
) -> ApiResponse:
    """Anonymous: version, whether the configuration loads, whether ARM answers. No ids, no messages.

    Checked at most once per POOLSYNC_HEALTH_CACHE_SECONDS per process (concurrent probes share the
    check in flight), so anonymous probes cannot spend the subscription's ARM read budget."""
    try:
        ttl = health_cache_seconds(app_settings.app_settings())
    except ValueError as error:
        log.error("configuration does not load: %s", error)
        return ApiResponse(503, {**_health_body(), "status": "unhealthy", "detail": "configuration"})
    checked = cache.get(lambda: HEALTH_BOUND.run(lambda: _check_health(runtime_provider), _health_late), ttl)
    body = {**checked.value.body, "checkAgeSeconds": round(checked.age_seconds, 1), "cacheSeconds": ttl}
    return ApiResponse(checked.value.status, body)


def _health_body() -> dict[str, JSON]:
    return {"status": "ok", "version": app_version(), "configLoaded": False, "azureReachable": False,
            "managedPools": 0}


def _health_late() -> ApiResponse:
    """The answer when the check (start-up or the ARM read) is still running after HEALTH_ANSWER_SECONDS."""
    return ApiResponse(503, {**_health_body(), "status": "unhealthy", "detail": "azure:timeout"})


def _check_health(runtime_provider: Callable[[], Runtime]) -> ApiResponse:
    body = _health_body()
    try:
        runtime = runtime_provider()
        context = ApiContext(runtime)
    except (RulesError, ValueError, ApiError) as error:
        log.error("configuration does not load: %s", error)
        body.update(status="unhealthy", detail="configuration")
        return ApiResponse(503, body)
    except Exception:
        log.exception("health check failed")
        body.update(status="unhealthy", detail="internal")
        return ApiResponse(503, body)
    body.update(configLoaded=True, managedPools=len(context.rule_pools) + len(context.manual_pools))
    first = next(iter(context.all_pools()), None)
    reachable, detail = True, None
    if first is not None:
        rid = ResourceId.parse(first[0])
        operations = runtime.clients.network(rid.subscription).load_balancers
        try:
            call_with_retry(
                lambda: operations.get(rid.resource_group, rid.name, **HEALTH_PROBE_TIMEOUTS),
                settings=RetrySettings(deadline_seconds=10, max_attempts=1),
                stats=runtime.retry_stats,
                operation="health check",
            )
        except ResourceNotFoundError:
            pass  # ARM answered; a missing load balancer is a configuration matter, not reachability
        except AzureError as error:
            reachable, detail = False, classify(error).reason.split(":")[0]
    body["azureReachable"] = reachable
    if not reachable:
        body.update(status="unhealthy", detail=f"azure:{detail}")
        return ApiResponse(503, body)
    return ApiResponse(200, body)


def openapi_document() -> dict[str, JSON]:
    return build_document(app_version())


@auth.requires(auth.READER)
def get_openapi(context: ApiContext, request: ApiRequest) -> ApiResponse:
    return ApiResponse(200, openapi_document())
