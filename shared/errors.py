"""One root for poolsync's own errors, so an operator-facing layer can tell them from bugs.

Each existing error also keeps the built-in base its callers catch today (ValueError, RuntimeError,
PermissionError): these classes add a root, they change nothing that is caught. Azure SDK errors are
not wrapped - the retry policy re-raises the SDK's own exception - so FlushFailed is the poolsync error
that says "Azure failed after the retries".
"""

from __future__ import annotations


class PoolsyncError(Exception):
    """Root of every error poolsync raises on purpose."""


class ConfigurationError(PoolsyncError):
    """App settings or rules are missing or wrong: fix the configuration, retrying will not help."""


class InputError(PoolsyncError):
    """A request, event or resource id is malformed: reject it with a clear message, never retry."""


class AzureFailure(PoolsyncError):
    """Azure kept failing after the retry policy gave up; the work stays pending for a later attempt."""


class GuardError(PoolsyncError):
    """A safety rule refused the change (blast-radius guard, or a pool poolsync does not manage)."""


class LeaseError(PoolsyncError):
    """A lease needed to write could not be taken or proven; nothing was written."""
