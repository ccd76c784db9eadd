"""Deterministic backend-address names: how poolsync recognises its own entries without extra state.

A name is derived from the (case-insensitive) NIC id and ipconfig name only, so any instance of the
app, at any time, computes the same name for the same ipconfig, and an entry whose name has poolsync's
shape is poolsync's to add, readdress and remove. Everything else in a pool is left alone.

Shape: ``psync-<readable>-<16 hex>`` where ``<readable>`` is the sanitized, lower-cased NIC name and
ipconfig name (truncated) and the hex suffix is a SHA-256 prefix of the full lower-cased NIC id and
ipconfig name, so two ipconfigs whose readable parts truncate to the same text still get distinct names.

Azure's naming rule applied (Microsoft.Network load balancer child resources, see
https://learn.microsoft.com/azure/azure-resource-manager/management/resource-name-rules):
1-80 characters, letters, digits, underscore, period, hyphen; start with a letter or digit; end with a
letter, digit or underscore. Our names start with ``p`` and end with a hex digit.
"""

from __future__ import annotations

import hashlib
import re

from shared.ids import id_key

PREFIX = "psync-"
MAX_NAME_LENGTH = 80
HASH_LENGTH = 16  # 64 bits: collision-free in practice for any pool size Azure allows
_READABLE_MAX = MAX_NAME_LENGTH - len(PREFIX) - 1 - HASH_LENGTH  # 57

_UNSAFE = re.compile(r"[^a-z0-9_.-]+")
_MANAGED_RE = re.compile(rf"^{PREFIX}(?:[a-z0-9_.-]*-)?[0-9a-f]{{{HASH_LENGTH}}}$", re.IGNORECASE)
AZURE_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?\Z")  # \Z: no trailing "\n"


def _sanitize(text: str) -> str:
    return _UNSAFE.sub("-", text.lower())


def address_name(nic_id: str, ipconfig_name: str) -> str:
    """The backend-address name poolsync uses for one ipconfig of one NIC."""
    nic_key = id_key(nic_id)
    ipconfig_key = ipconfig_name.lower()
    digest = hashlib.sha256(f"{nic_key}|{ipconfig_key}".encode()).hexdigest()[:HASH_LENGTH]
    nic_name = nic_key.rsplit("/", 1)[-1]
    readable = _sanitize(f"{nic_name}-{ipconfig_key}")[:_READABLE_MAX].strip("-")
    return f"{PREFIX}{readable}-{digest}" if readable else f"{PREFIX}{digest}"


def is_managed_name(name: str) -> bool:
    """True for names poolsync generated (prefix + readable part + hash suffix)."""
    return len(name) <= MAX_NAME_LENGTH and _MANAGED_RE.match(name) is not None
