"""Thin triggers, one Blueprint per module. Each module exposes `bp`; function_app registers them."""

from __future__ import annotations

import importlib

import azure.functions as func

# Function names are part of the deployment contract (infra/ wires Event Grid to
# `eventgrid_resource_events`), so they are fixed in the modules, not derived.
BLUEPRINT_MODULES = (
    "handlers.events",
    "handlers.http_api",
    "handlers.audit_timer",
    "handlers.audit_queue",
)


def blueprints() -> list[func.Blueprint]:
    return [importlib.import_module(name).bp for name in BLUEPRINT_MODULES]
