"""Deterministic backend-address names: how poolsync recognises its own entries without extra state.

A name is derived from the (case-insensitive) NIC id, ipconfig name and the NIC's resourceGuid, so any
instance of the app, at any time, computes the same name for the same ipconfig of the same NIC
incarnation, and an entry whose name has poolsync's shape is poolsync's to add, readdress and remove.
Everything else in a pool is left alone. The guid makes a NIC deleted and re-created under the same id a
new identity, so the new incarnation does not inherit the old entry's adminState (e.g. a drain).

Names made before the guid was part of the identity (the *legacy* name, `legacy_address_name`) have the
same shape; `shared.core.plan` renames them to the guid-bearing name.

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

from shared.core.ids import id_key

PREFIX = "psync-"
MAX_NAME_LENGTH = 80
HASH_LENGTH = 16  # 64 bits: collision-free in practice for any pool size Azure allows
_READABLE_MAX = MAX_NAME_LENGTH - len(PREFIX) - 1 - HASH_LENGTH  # 57

_UNIFORM_NIC = "/providers/microsoft.compute/virtualmachinescalesets/"
_UNSAFE = re.compile(r"[^a-z0-9_.-]+")
_MANAGED_RE = re.compile(rf"^{PREFIX}(?:[a-z0-9_.-]*-)?[0-9a-f]{{{HASH_LENGTH}}}$", re.IGNORECASE)
AZURE_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?\Z")  # \Z: no trailing "\n"


def _sanitize(text: str) -> str:
    return _UNSAFE.sub("-", text.lower())


def address_name(nic_id: str, ipconfig_name: str, nic_guid: str | None = None) -> str:
    """The backend-address name poolsync uses for one ipconfig of one NIC incarnation.

    `nic_guid` is the NIC's `properties.resourceGuid` (case-insensitive); without one (None or blank)
    the name is the legacy one, derived from the NIC id and ipconfig name only.
    """
    nic_key = id_key(nic_id)
    ipconfig_key = ipconfig_name.lower()
    identity = f"{nic_key}|{ipconfig_key}"
    guid = (nic_guid or "").strip().lower()
    if guid:
        identity += f"|{guid}"
    digest = hashlib.sha256(identity.encode()).hexdigest()[:HASH_LENGTH]
    nic_name = nic_key.rsplit("/", 1)[-1]
    if _UNIFORM_NIC in nic_key:  # every instance's NIC has one name: say which set and instance it is on
        parts = nic_key.split("/")
        nic_name = f"{parts[-5]}-{parts[-3]}-{nic_name}"
    readable = _sanitize(f"{nic_name}-{ipconfig_key}")[:_READABLE_MAX].strip("-")
    return f"{PREFIX}{readable}-{digest}" if readable else f"{PREFIX}{digest}"


def legacy_address_name(nic_id: str, ipconfig_name: str) -> str:
    """The name poolsync gave an ipconfig before the NIC's resourceGuid was part of its identity."""
    return address_name(nic_id, ipconfig_name, None)


def is_managed_name(name: str) -> bool:
    """True for names poolsync generated (prefix + readable part + hash suffix)."""
    return len(name) <= MAX_NAME_LENGTH and _MANAGED_RE.match(name) is not None
