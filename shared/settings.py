"""Every app setting poolsync reads: declared once here (name, type, default, meaning), read through here.

Modules keep their own parsing and error messages; what they take from here is the name, the default
and the way to reach the process settings (`app_settings`), so this is the one module that touches
os.environ - for every entry point: the Functions app, the CLI, devstack and the benchmarks. README's
settings table lists every setting below (tests/test_settings.py checks it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Generic, TypeVar

T = TypeVar("T")

Env = Mapping[str, str]


def app_settings(env: Env | None = None) -> Env:
    """The settings to read: the given mapping (tests, CLI, devstack) or the process environment."""
    return os.environ if env is None else env


def default_library_settings(values: Mapping[str, str]) -> None:
    """Give settings a library reads from the process environment itself (and nowhere else) a default,
    leaving any value the deployment set alone."""
    for name, value in values.items():
        os.environ.setdefault(name, value)


def child_environment(**overrides: str) -> dict[str, str]:
    """The environment for a child process (Azurite, a worker): this process's, with `overrides`."""
    return {**os.environ, **overrides}


def export_to_process(values: Mapping[str, str]) -> dict[str, str | None]:
    """Put `values` into the process environment, where the app reads its settings as the Functions
    host hands them over (the local stack runs the app in its own process); returns what they replaced."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    return previous


def restore_process(previous: Mapping[str, str | None]) -> None:
    """Undo `export_to_process`: the replaced values come back, names that were absent go."""
    for key, value in previous.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@dataclass(frozen=True)
class Setting(Generic[T]):
    name: str
    kind: str  # what the value is, in README's words
    default: T  # applied when the setting is absent (None: no default)
    meaning: str

    def raw(self, env: Env) -> str | None:
        return env.get(self.name)

    def text(self, env: Env) -> str:
        """The value stripped; "" when absent or blank."""
        return (env.get(self.name) or "").strip()

    def or_default(self, env: Env) -> str | T:
        """The value, or the default when absent or empty."""
        return env.get(self.name) or self.default

    def get(self, env: Env) -> str | T:
        """The value, or the default only when absent (an empty value stays empty, and fails to parse)."""
        return env.get(self.name, self.default)


# --- rules and guard ----------------------------------------------------------------------------------
RULES = Setting[str | None]("POOLSYNC_RULES", "JSON", None, "the rules document, inline")
RULES_FILE = Setting[str | None]("POOLSYNC_RULES_FILE", "path", None,
                                 "the rules document as a file (relative to the app root)")
MAX_REMOVE_FRACTION = Setting("POOLSYNC_MAX_REMOVE_FRACTION", "number 0-1", 0.5,
                              "the guard: largest share of a pool's managed addresses one change may remove")
GUARD_WINDOW = Setting("POOLSYNC_GUARD_WINDOW", "duration", timedelta(hours=24),
                       "unconfirmed removals of one pool within this window count together against "
                       "POOLSYNC_MAX_REMOVE_FRACTION (one day: time to notice and fix a bad rules edit)")
MANUAL_POOLS = Setting[str | None]("POOLSYNC_MANUAL_POOLS", "pool ids, comma-separated", None,
                                   "extra pools the HTTP API may edit (not reconciled)")

# --- Azure Resource Manager ---------------------------------------------------------------------------
ARM_ENDPOINT = Setting("POOLSYNC_ARM_ENDPOINT", "URL", "https://management.azure.com",
                       "Resource Manager endpoint (the emulator locally)")
ARM_CA_BUNDLE = Setting[str | None]("POOLSYNC_ARM_CA_BUNDLE", "path", None,
                                    "CA bundle for a local endpoint's certificate")
ARM_STATIC_TOKEN = Setting[str | None]("POOLSYNC_ARM_STATIC_TOKEN", "text", None,
                                       "fixed bearer token for the local emulator (refused for Azure)")
ARM_POLLING_INTERVAL = Setting("POOLSYNC_ARM_POLLING_INTERVAL", "seconds", 5.0,
                               "SDK polling interval of long-running operations")
ARM_TIMEOUT = Setting("POOLSYNC_ARM_TIMEOUT", "seconds", 60.0, "connection and read timeout of one ARM call")
LRO_POLL_CAP = Setting("POOLSYNC_LRO_POLL_CAP", "seconds", 2.0,
                       "longest wait between polls of a long-running write (pool writes; VM writes of the "
                       "local tooling)")
RETRY_DEADLINE = Setting("POOLSYNC_RETRY_DEADLINE", "seconds", 120.0,
                         "total seconds one Azure call may spend retrying")
RETRY_MAX_ATTEMPTS = Setting("POOLSYNC_RETRY_MAX_ATTEMPTS", "integer", 30, "most attempts of one Azure call")
RETRY_BASE_BACKOFF = Setting("POOLSYNC_RETRY_BASE_BACKOFF", "seconds", 0.5,
                             "first back-off of the full-jitter exponential schedule")
RETRY_MAX_BACKOFF = Setting("POOLSYNC_RETRY_MAX_BACKOFF", "seconds", 20.0,
                            "longest back-off between attempts")
RETRY_AFTER_CAP = Setting("POOLSYNC_RETRY_AFTER_CAP", "seconds", 30.0,
                          "longest Retry-After poolsync honours before trying again")
RETRY_UNREACHABLE_ATTEMPTS = Setting("POOLSYNC_RETRY_UNREACHABLE_ATTEMPTS", "integer", 3,
                                     "attempts of one Azure call while ARM refuses connections or its "
                                     "name does not resolve (fails in seconds, not after the deadline)")

# --- event path ---------------------------------------------------------------------------------------
COALESCE_QUIET = Setting("POOLSYNC_COALESCE_QUIET", "seconds", 1.0,
                         "a flusher waits until no new event arrived for this long")
COALESCE_MAX_WAIT = Setting("POOLSYNC_COALESCE_MAX_WAIT", "seconds", 15.0,
                            "but never longer than this after it started waiting (a burst is one round)")
COALESCE_POLL = Setting("POOLSYNC_COALESCE_POLL", "seconds", 0.1,
                        "how often a waiting flusher looks for new intents")
FLUSH_BUDGET = Setting("POOLSYNC_FLUSH_BUDGET", "seconds", 240.0,
                       "seconds one flush invocation keeps the lock before handing the rest to a fresh one")
FLUSH_LEASE_SECONDS = Setting("POOLSYNC_FLUSH_LEASE_SECONDS", "seconds (15-60)", 30,
                              "blob lease duration of the flush and write locks (renewed while working)")
SWEEP_SCHEDULE = Setting("POOLSYNC_SWEEP_SCHEDULE", "NCRONTAB", "*/30 * * * * *",
                         "schedule of the timer that flushes due intents nobody is flushing "
                         "(idle: one Table query; a burst's tail waits at most 30 s)")
FIRST_BUILD_SCHEDULE = Setting("POOLSYNC_FIRST_BUILD_SCHEDULE", "NCRONTAB", "0 */5 * * * *",
                               "schedule of the timer that runs the first full reconcile while the member "
                               "index was never built (also at host start; a cached flag once built)")
FULL_RECONCILE_SCHEDULE = Setting("POOLSYNC_FULL_RECONCILE_SCHEDULE", "NCRONTAB", "0 17 * * * *",
                                  "schedule of the anti-entropy full reconcile "
                                  "(hourly, off the other timers' minutes)")

# --- audit --------------------------------------------------------------------------------------------
AUDIT_SCHEDULE = Setting("POOLSYNC_AUDIT_SCHEDULE", "NCRONTAB", "0 0 3 * * *", "schedule of the audit timer")
AUDIT_REMEDIATE = Setting("POOLSYNC_AUDIT_REMEDIATE", "true/false", False,
                          "let the audit fix drift (through the guard)")
DRAIN_MAX_AGE = Setting("POOLSYNC_DRAIN_MAX_AGE", "duration", timedelta(days=7),
                        "audit finding when an address stays adminState Down longer")

# --- HTTP API -----------------------------------------------------------------------------------------
HEALTH_CACHE_SECONDS = Setting("POOLSYNC_HEALTH_CACHE_SECONDS", "seconds (1-3600)", 60.0,
                               "anonymous GET /api/health checks ARM at most once per this many seconds")
API_AUTH = Setting("POOLSYNC_API_AUTH", "key/entra", "key",
                    "who may call the HTTP API: function keys, or Entra ID app roles per operation")
REQUIRED_ROLE = Setting[str | None]("POOLSYNC_REQUIRED_ROLE", "app role", None,
                                    "Entra ID app role the HTTP API requires")
AUTH_ENABLED = Setting[str | None]("WEBSITE_AUTH_ENABLED", "True/False", None,
                                   "set by App Service when App Service Authentication is on")
VERSION = Setting[str | None]("POOLSYNC_VERSION", "text", None,
                              "version the API reports (default: pyproject.toml's)")

# --- storage ------------------------------------------------------------------------------------------
STORAGE_CONNECTION = Setting[str | None]("AzureWebJobsStorage", "connection string", None,
                                         "the Functions storage account (Azurite locally)")
STORAGE_ACCOUNT_NAME = Setting[str | None]("AzureWebJobsStorage__accountName", "name", None,
                                           "the storage account, reached with a managed identity")
STORAGE_CLIENT_ID = Setting[str | None]("AzureWebJobsStorage__clientId", "client id", None,
                                        "user-assigned identity for the storage account")
INTENTS_TABLE = Setting("POOLSYNC_INTENTS_TABLE", "table name", "poolsyncintents", "storage names")
MEMBERS_TABLE = Setting("POOLSYNC_MEMBERS_TABLE", "table name", "poolsyncmembers", "storage names")
LOCKS_CONTAINER = Setting("POOLSYNC_LOCKS_CONTAINER", "container name", "poolsync-locks", "storage names")
RECONCILE_TABLE = Setting("POOLSYNC_RECONCILE_TABLE", "table name", "poolsyncreconciles", "storage names")
DRAIN_TABLE = Setting("POOLSYNC_DRAIN_TABLE", "table name", "poolsyncdrains", "storage names")
REMOVALS_TABLE = Setting("POOLSYNC_REMOVALS_TABLE", "table name", "poolsyncremovals", "storage names")
AUDIT_CONTAINER = Setting("POOLSYNC_AUDIT_CONTAINER", "container name", "audit-reports", "storage names")

# --- telemetry ----------------------------------------------------------------------------------------
APPINSIGHTS_CONNECTION = Setting[str | None]("APPLICATIONINSIGHTS_CONNECTION_STRING", "connection string",
                                             None, "enables OpenTelemetry export (Azure Monitor)")

# --- benchmarks (bench/) ------------------------------------------------------------------------------
BENCH_LOG = Setting[str | None]("POOLSYNC_BENCH_LOG", "log level", None,
                                "benchmarks only: log level of the simulated Function instances")

ALL: tuple[Setting[object], ...] = tuple(
    value for value in list(globals().values()) if isinstance(value, Setting)
)
