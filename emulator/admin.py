"""The `/_emulator/...` admin endpoints (no auth): what tests in other processes use."""

from __future__ import annotations

import json
from typing import Any

from emulator.api import Reply
from emulator.cloud import Cloud
from emulator.delivery import AZURE_DELIVERY, DEFAULT_DELIVERY
from emulator.throttling import BucketSettings


class AdminApi:
    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes) -> Reply:
        try:
            payload = json.loads(body) if body else None
        except json.JSONDecodeError as exc:
            return Reply(400, {"error": {"code": "InvalidRequestContent", "message": str(exc)}})
        emu = self.cloud
        route = (method, path.rstrip("/") or "/")
        try:
            if route == ("GET", "/health"):
                return Reply(200, {"status": "ok", "world": emu.world.counts()})
            if route == ("GET", "/stats"):
                return Reply(200, emu.stats.snapshot())
            if route in (("POST", "/stats/reset"), ("DELETE", "/stats")):
                emu.stats.reset()
                return Reply(204)
            if route == ("GET", "/faults"):
                return Reply(200, {"rules": emu.faults.describe()})
            if route == ("POST", "/faults"):
                rules = payload if isinstance(payload, list) else [payload or {}]
                for rule in rules:
                    emu.faults.add_from_json(rule)
                return Reply(201, {"rules": emu.faults.describe()})
            if route in (("DELETE", "/faults"), ("POST", "/faults/clear")):
                emu.faults.clear()
                return Reply(204)
            if route == ("POST", "/reset"):
                emu.reset(payload or None)
                return Reply(200, {"world": emu.world.counts()})
            if route == ("POST", "/topology"):
                return Reply(200, {"loaded": emu.load_topology(payload or {}), "world": emu.world.counts()})
            if route == ("POST", "/config"):
                self._configure(payload or {})
                return Reply(200, self._config())
            if route == ("GET", "/config"):
                return Reply(200, self._config())
            if route == ("GET", "/rbac"):
                return Reply(200, {"assignments": emu.rbac.describe()})
            if route == ("POST", "/rbac"):
                emu.configure_rbac(payload or None)
                return Reply(200, {"assignments": emu.rbac.describe()})
            if route == ("POST", "/events/wait"):
                timeout = float((payload or {}).get("timeout", 30))
                return Reply(200, {"drained": emu.wait_events_delivered(timeout)})
            if route == ("GET", "/events"):
                return Reply(200, {"events": list(emu.events.published)})
            if route == ("POST", "/instance-faults"):
                spec = dict(payload or {})
                emu.world.fail_next_instances(str(spec["scale_set"]), int(spec.get("count", 1)))
                return Reply(204)
            if route == ("POST", "/operations/wait"):
                timeout = float((payload or {}).get("timeout", 30))
                return Reply(200, {"idle": emu.wait_operations_done(timeout)})
        except (KeyError, TypeError, ValueError) as exc:
            return Reply(400, {"error": {"code": "InvalidRequest", "message": str(exc)}})
        return Reply(404, {"error": {"code": "NotFound", "message": f"no admin endpoint {method} {path}"}})

    def _configure(self, payload: dict[str, Any]) -> None:
        emu = self.cloud
        if "profile" in payload:  # first, so the other keys of the same request override it
            emu.set_profile(payload["profile"], **(payload.get("profile_overrides") or {}))
        if "operation_seconds" in payload:
            emu.operation_seconds = float(payload["operation_seconds"])
        if "lro_retry_after" in payload:  # seconds, {provider: {field: seconds}}, or null: the profile's
            chosen = payload["lro_retry_after"]
            emu.lro_retry_after = emu.profile.lro_retry_after if chosen is None else chosen
        if "page_size" in payload:
            emu.page_size = int(payload["page_size"])
        if "delivery" in payload:
            delivery = dict(payload["delivery"] or {})
            bases = {"azure": AZURE_DELIVERY, "default": DEFAULT_DELIVERY, None: None}
            emu.configure_delivery(bases[delivery.pop("base", None)], **delivery)  # no base: the profile's
        if "event_webhook" in payload:
            emu.set_event_webhook(payload["event_webhook"] or None)
        limits = {}
        for kind in ("reads", "writes"):
            spec = payload.get(f"throttle_{kind}")
            if spec:
                limits[kind] = BucketSettings(int(spec["capacity"]), float(spec["refill_per_second"]))
        if limits:
            emu.configure_throttling(limits.get("reads"), limits.get("writes"))

    def _config(self) -> dict[str, Any]:
        emu = self.cloud
        return {
            "profile": emu.profile.name,
            "operation_seconds": emu.operation_seconds,
            "lro_retry_after": emu.lro_retry_after.describe(),
            "page_size": emu.page_size,
            "event_webhook": emu.events.webhook,
            "delivery": {
                name: sorted(value) if isinstance(value, frozenset) else value
                for name, value in vars(emu.events.policy).items()
            },
            "throttle_reads": vars(emu.throttle.reads),
            "throttle_writes": vars(emu.throttle.writes),
        }
