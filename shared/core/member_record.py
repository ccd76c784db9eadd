"""What poolsync wrote in a pool for which owner, and that fact's row in the member index table.

Pure data: the changes engine builds and reads these; shared/storage/member_index.py stores them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from shared.core.ids import id_key


def key_hash(text: str) -> str:
    return hashlib.sha256(text.lower().encode()).hexdigest()[:40]


def bucketed(kind: str, owner_id: str) -> tuple[str, str]:
    """(partition, RowKey prefix) of an owner: its hash picks one of 256 buckets, so writes batch up to
    100 rows per transaction and one owner is a RowKey range in one partition."""
    digest = key_hash(id_key(owner_id))
    return f"{kind}-{digest[:2]}", digest


def nic_partition(nic_id: str) -> str:
    return bucketed("nic", nic_id)[0]


def vm_partition(vm_id: str) -> str:
    return bucketed("vm", vm_id)[0]


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """One entry poolsync put in a pool, with the owner it was put there for."""

    pool_id: str
    lb_id: str
    name: str
    nic_id: str
    ipconfig_name: str
    vm_id: str
    nic_guid: str | None = None
    ip_address: str | None = None
    scale_set_id: str | None = None  # the VM is an instance of this scale set
    # the row's ETag when read from the index: deleting it then only succeeds while nobody rewrote it
    etag: str | None = field(default=None, compare=False)

    def owned_by(self, owner_keys: Collection[str]) -> bool:
        """Whether its VM, NIC or scale set is one of these (id keys)."""
        return any(id_key(owner) in owner_keys for owner in (self.vm_id, self.nic_id, self.scale_set_id)
                   if owner)

    @property
    def row_key(self) -> str:
        return f"{bucketed('nic', self.nic_id)[1]}-{key_hash(id_key(self.pool_id))}-{self.name.lower()}"

    @property
    def key(self) -> tuple[str, str]:
        return nic_partition(self.nic_id), self.row_key

    @property
    def pool_key(self) -> str:
        return id_key(self.pool_id)

    def entity(self) -> dict[str, Any]:
        return {"PartitionKey": nic_partition(self.nic_id), "RowKey": self.row_key, "PoolId": self.pool_id,
                "LbId": self.lb_id, "Name": self.name, "NicId": self.nic_id,
                "IpConfiguration": self.ipconfig_name, "VmId": self.vm_id, "NicGuid": self.nic_guid or "",
                "Ip": self.ip_address or "", "ScaleSetId": self.scale_set_id or ""}

    @classmethod
    def from_entity(cls, row: Mapping[str, Any]) -> MemberRecord:
        metadata = getattr(row, "metadata", None) or {}
        return cls(row["PoolId"], row["LbId"], row["Name"], row["NicId"], row.get("IpConfiguration", ""),
                   row.get("VmId", ""), row.get("NicGuid") or None, row.get("Ip") or None,
                   row.get("ScaleSetId") or None, metadata.get("etag"))


def scale_set_link(record: MemberRecord) -> dict[str, Any] | None:
    """The `ss-` row saying the record's scale set had its NIC (None for a VM of no scale set): a scale-set
    event finds every instance entry through it, also of instances the set no longer lists."""
    if not record.scale_set_id:
        return None
    partition, prefix = bucketed("ss", record.scale_set_id)
    return {"PartitionKey": partition, "RowKey": f"{prefix}-{bucketed('nic', record.nic_id)[1]}",
            "NicId": record.nic_id}


def vm_link(record: MemberRecord) -> dict[str, Any]:
    """The `vm-` row saying the record's VM had its NIC."""
    partition, prefix = bucketed("vm", record.vm_id)
    return {"PartitionKey": partition, "RowKey": f"{prefix}-{bucketed('nic', record.nic_id)[1]}",
            "NicId": record.nic_id}
