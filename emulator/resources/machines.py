"""Virtual machines: NIC references, back-references on the NICs, delete options."""

from __future__ import annotations

import copy
import uuid
from typing import Any

from emulator.errors import ArmError, bad_request
from emulator.ids import ResourceId, id_key
from emulator.resources.base import SUCCEEDED, new_etag, props_of, ref_id
from emulator.resources.interfaces import Interfaces

VM_TYPE = "Microsoft.Compute/virtualMachines"


class Machines(Interfaces):
    """VMs own NICs: their writes set and clear the NICs' back-references and may delete them."""

    def render_vm(self, vm: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(vm)

    def get_vm(self, vm_id: str) -> dict[str, Any] | None:
        with self.lock:
            vm = self.vms.get(id_key(vm_id))
            return self.render_vm(vm) if vm else None

    def put_vm(self, vm_id: str, body: dict[str, Any], state: str = SUCCEEDED) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(vm_id)
        props = props_of(body)
        nic_refs = (props.get("networkProfile") or {}).get("networkInterfaces") or []
        with self.lock:
            old = self.vms.get(rid.key())
            refs = []
            for raw in nic_refs:
                nic_id = ref_id(raw)
                nic = self.nics.get(id_key(nic_id or ""))
                if nic is None:
                    raise ArmError(
                        400,
                        "InvalidParameter" if nic_id is None else "NotFound",
                        f"Network interface '{nic_id}' referenced by virtual machine {rid} was not found.",
                    )
                owner = ref_id(nic["properties"].get("virtualMachine"))
                if owner and id_key(owner) != rid.key() and id_key(owner) in self.vms:
                    raise ArmError(
                        400,
                        "NicInUse",
                        f"Network Interface {nic['id']} is used by existing VM {owner}.",
                    )
                if "privateEndpoint" in nic["properties"]:
                    raise bad_request(
                        "InvalidParameter",
                        f"Network interface {nic['id']} belongs to a private endpoint.",
                    )
                ref_props = (raw.get("properties") or {}) if isinstance(raw, dict) else {}
                refs.append(
                    {
                        "id": nic["id"],
                        "properties": {
                            "primary": bool(ref_props.get("primary", len(nic_refs) == 1)),
                            "deleteOption": ref_props.get("deleteOption", "Detach"),
                        },
                    }
                )
            if len(refs) > 1 and sum(r["properties"]["primary"] for r in refs) != 1:
                raise bad_request(
                    "InvalidParameter",
                    "Virtual machine must have exactly one primary network interface "
                    "when it has more than one.",
                )
            if old is not None:
                self._detach_vm_nics(old, keep={id_key(r["id"]) for r in refs})
            vm_props = copy.deepcopy(props)
            vm_props.pop("instanceView", None)
            vm_props["networkProfile"] = {"networkInterfaces": refs}
            vm_props["provisioningState"] = state
            vm_props["vmId"] = (old or {}).get("properties", {}).get("vmId") or str(uuid.uuid4())
            vm_props.setdefault("hardwareProfile", {"vmSize": "Standard_B1s"})
            vm = {
                "id": str(rid),
                "name": rid.name,
                "type": VM_TYPE,
                "location": self._location(body, old),
                "tags": body.get("tags") or {},
                "etag": new_etag(),
                "properties": vm_props,
            }
            if body.get("zones"):
                vm["zones"] = body["zones"]
            self.vms[rid.key()] = vm
            for ref in refs:
                nic = self.nics[id_key(ref["id"])]
                nic["properties"]["virtualMachine"] = {"id": str(rid)}
                nic["properties"]["primary"] = ref["properties"]["primary"]
                nic["etag"] = new_etag()
            return self.render_vm(vm), old is None

    def _detach_vm_nics(self, vm: dict[str, Any], keep: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
        """Clear the back-reference of the VM's NICs not in `keep`; returns the NIC ids touched."""
        touched = []
        for ref in vm["properties"]["networkProfile"]["networkInterfaces"]:
            nic = self.nics.get(id_key(ref["id"]))
            if nic is None or id_key(ref["id"]) in keep:
                continue
            if id_key(ref_id(nic["properties"].get("virtualMachine")) or "") == id_key(vm["id"]):
                nic["properties"].pop("virtualMachine", None)
                nic["properties"].pop("primary", None)
                nic["etag"] = new_etag()
                touched.append(nic["id"])
        return touched

    def delete_vm(self, vm_id: str) -> tuple[list[str], list[str]] | None:
        """Remove a VM like Compute does: NICs with deleteOption Delete go, the others are detached.

        Returns (deleted NIC ids, detached NIC ids), or None when the VM does not exist.
        """
        with self.lock:
            vm = self.vms.get(id_key(vm_id))
            if vm is None:
                return None
            doomed = [
                ref["id"]
                for ref in vm["properties"]["networkProfile"]["networkInterfaces"]
                if ref["properties"].get("deleteOption") == "Delete" and id_key(ref["id"]) in self.nics
            ]
            del self.vms[id_key(vm_id)]
            detached = self._detach_vm_nics(vm, keep={id_key(n) for n in doomed})
            deleted = []
            for nic_id in doomed:
                nic = self.nics.pop(id_key(nic_id))
                self._unindex_nic(nic)
                deleted.append(nic["id"])
            return deleted, detached
