"""Virtual machine scale sets: capacity, the network profile of their instances, and the instance
operations (delete instances, reimage, manual upgrade).

Uniform: instances live under the set (`.../virtualMachineScaleSets/{ss}/virtualMachines/{n}`), their
NICs under the instance (`.../virtualMachines/{n}/networkInterfaces/{nic}`); neither is in the
subscription's VM or NIC list. Flexible: instances are ordinary VMs (`{ss}_{8 hex}`) with ordinary NICs
and a `virtualMachineScaleSet` reference. Either way the instances' IPs come from the subnets of the
set's network profile, and pool references in it make the instances NIC-based pool members.
"""

from __future__ import annotations

import copy
import uuid
from typing import Any

from emulator.errors import ArmError, bad_request, invalid_reference
from emulator.ids import ResourceId, id_key
from emulator.lro import utc_now_text
from emulator.resources.base import FAILED_STATE, SUCCEEDED, new_etag, props_of, ref_id
from emulator.resources.interfaces import mac_for
from emulator.resources.machines import Machines

VMSS_TYPE = "Microsoft.Compute/virtualMachineScaleSets"
VMSS_VM_TYPE = "Microsoft.Compute/virtualMachineScaleSets/virtualMachines"
UNIFORM = "Uniform"
FLEXIBLE = "Flexible"
UPGRADE_MODES = ("Manual", "Automatic", "Rolling")
MAX_CAPACITY = 1000  # Azure's limit for a set of platform images (Flexible: 1000 as well)


class ScaleSets(Machines):
    """Scale sets own their instances: a capacity change creates or deletes them, with their NICs."""

    # ------------------------------------------------------------------ reads
    def render_scale_set(self, scale_set: dict[str, Any]) -> dict[str, Any]:
        return copy.deepcopy(scale_set)

    def get_scale_set(self, scale_set_id: str) -> dict[str, Any] | None:
        with self.lock:
            scale_set = self.scale_sets.get(id_key(scale_set_id))
            return self.render_scale_set(scale_set) if scale_set else None

    def get_scale_set_instance(self, instance_id: str) -> dict[str, Any] | None:
        """A Uniform instance by its id (`.../virtualMachineScaleSets/ss/virtualMachines/n`)."""
        with self.lock:
            rid = ResourceId.parse(instance_id)
            instance = self.ss_instances.get(rid.parent.key(), {}).get((rid.child_name or "").lower())
            return copy.deepcopy(instance) if instance else None

    def list_scale_set_instances(self, scale_set_id: str) -> list[dict[str, Any]] | None:
        """The set's instances (Uniform: its instance VMs; Flexible: its VMs), None if no such set."""
        with self.lock:
            key = id_key(scale_set_id)
            if key not in self.scale_sets:
                return None
            if self._mode(self.scale_sets[key]) == FLEXIBLE:
                return [self.render_vm(self.vms[k]) for k in sorted(self._flex_members.get(key, {}))]
            return [
                copy.deepcopy(i)
                for _, i in sorted(self.ss_instances.get(key, {}).items(), key=lambda kv: int(kv[0]))
            ]

    def list_scale_set_nics(self, parent_id: str) -> list[dict[str, Any]] | None:
        """NICs of a Uniform set (`parent_id` the set) or of one instance; None if the parent is missing.
        A Flexible set's NICs are ordinary NICs: this list (the Network RP's) has none of them."""
        with self.lock:
            prefix = id_key(parent_id) + "/"
            rid = ResourceId.parse(parent_id)
            if rid.parent.key() not in self.scale_sets:
                return None
            if rid.child_type and (rid.child_name or "").lower() not in self.ss_instances.get(
                rid.parent.key(), {}
            ):
                return None
            return [
                self.render_nic(nic) for key, nic in sorted(self.ss_nics.items()) if key.startswith(prefix)
            ]

    def get_scale_set_nic(self, nic_id: str) -> dict[str, Any] | None:
        with self.lock:
            nic = self.ss_nics.get(id_key(nic_id))
            return self.render_nic(nic) if nic else None

    def instance_count(self, scale_set_id: str) -> int:
        instances = self.list_scale_set_instances(scale_set_id)
        return len(instances or [])

    # ----------------------------------------------------------------- writes
    def put_scale_set(
        self, scale_set_id: str, body: dict[str, Any], state: str = SUCCEEDED
    ) -> tuple[dict[str, Any], bool]:
        rid = ResourceId.parse(scale_set_id)
        props = props_of(body)
        with self.lock:
            old = self.scale_sets.get(rid.key())
            old_props = (old or {}).get("properties", {})
            mode = props.get("orchestrationMode") or old_props.get("orchestrationMode") or UNIFORM
            if mode not in (UNIFORM, FLEXIBLE):
                raise bad_request(
                    "InvalidParameter", f"orchestrationMode {mode!r} is not Uniform or Flexible."
                )
            if old is not None and mode != old_props.get("orchestrationMode"):
                raise bad_request(
                    "PropertyChangeNotAllowed",
                    "Changing property 'orchestrationMode' is not allowed.",
                )
            sku = {**(old or {}).get("sku", {}), **(body.get("sku") or {})}
            capacity = sku.get("capacity", 0)
            if (
                not isinstance(capacity, int)
                or isinstance(capacity, bool)
                or not 0 <= capacity <= MAX_CAPACITY
            ):
                raise bad_request(
                    "InvalidParameter", f"sku.capacity must be an integer from 0 to {MAX_CAPACITY}."
                )
            sku = {
                "name": sku.get("name") or "Standard_B1s",
                "tier": sku.get("tier") or "Standard",
                "capacity": capacity,
            }
            upgrade = props.get("upgradePolicy") or old_props.get("upgradePolicy") or {"mode": "Manual"}
            if upgrade.get("mode") not in UPGRADE_MODES:
                raise bad_request(
                    "InvalidParameter", f"upgradePolicy.mode {upgrade.get('mode')!r} is not valid."
                )
            profile = copy.deepcopy(
                props.get("virtualMachineProfile") or old_props.get("virtualMachineProfile") or {}
            )
            configs = self._nic_configs(str(rid), profile)
            scale_set = {
                "id": str(rid),
                "name": rid.name,
                "type": VMSS_TYPE,
                "location": self._location(body, old),
                "tags": body.get("tags") if "tags" in body else (old or {}).get("tags", {}),
                "sku": sku,
                "etag": new_etag(),
                "properties": {
                    "orchestrationMode": mode,
                    "upgradePolicy": {"mode": upgrade["mode"]},
                    "virtualMachineProfile": profile,
                    "provisioningState": state,
                    "uniqueId": old_props.get("uniqueId") or str(uuid.uuid4()),
                    "timeCreated": old_props.get("timeCreated") or utc_now_text(),
                },
            }
            if body.get("zones") or (old or {}).get("zones"):
                scale_set["zones"] = body.get("zones") or old["zones"]  # type: ignore[index]
            model_changed = old is not None and configs != self._nic_configs(
                str(rid), old_props.get("virtualMachineProfile") or {}
            )
            self.scale_sets[rid.key()] = scale_set
            try:
                if model_changed and mode == UNIFORM:
                    if upgrade["mode"] == "Manual":
                        for instance in self.ss_instances.get(rid.key(), {}).values():
                            instance["properties"]["latestModelApplied"] = False
                    else:
                        self._upgrade(scale_set, list(self.ss_instances.get(rid.key(), {})))
                self._scale_to(scale_set, capacity)
            except ArmError:
                if old is None:
                    self.scale_sets.pop(rid.key(), None)
                else:
                    self.scale_sets[rid.key()] = old
                raise
            return self.render_scale_set(scale_set), old is None

    def _nic_configs(self, scale_set_id: str, profile: dict[str, Any]) -> list[dict[str, Any]]:
        """The network profile's NIC configurations, checked: names, one primary, subnets that exist."""
        network = profile.get("networkProfile") or {}
        configs = network.get("networkInterfaceConfigurations") or []
        if not isinstance(configs, list):
            raise bad_request("InvalidParameter", "networkInterfaceConfigurations must be an array.")
        for config in configs:
            if not isinstance(config, dict) or not config.get("name"):
                raise bad_request(
                    "InvalidParameter", "Every networkInterfaceConfigurations entry needs a name."
                )
            ipconfigs = props_of(config).get("ipConfigurations") or []
            if not ipconfigs:
                raise bad_request(
                    "InvalidParameter",
                    f"Network interface configuration {config['name']} of {scale_set_id} needs an IP "
                    "configuration.",
                )
            for ipconfig in ipconfigs:
                subnet_id = ref_id(props_of(ipconfig).get("subnet"))
                if not subnet_id or self._subnet(subnet_id) is None:
                    raise invalid_reference(str(subnet_id), f"{scale_set_id}/{config['name']}")
        if len(configs) > 1 and sum(bool(props_of(c).get("primary")) for c in configs) != 1:
            raise bad_request(
                "InvalidParameter", "A scale set with several NIC configurations must mark one primary."
            )
        return configs

    def _scale_to(self, scale_set: dict[str, Any], capacity: int) -> None:
        """Create or delete instances until the set has `capacity` (scale-in removes the highest
        instance ids, or the newest Flexible VMs)."""
        key = id_key(scale_set["id"])
        if self._mode(scale_set) == FLEXIBLE:
            members = self._flex_members.setdefault(key, {})
            while len(members) < capacity:
                self._new_flexible_instance(scale_set)
            for vm_key in list(members)[capacity:][::-1]:  # members keep creation order
                self.delete_vm(members[vm_key])
            return
        instances = self.ss_instances.setdefault(key, {})
        while len(instances) < capacity:
            self._new_uniform_instance(scale_set)
        for instance_id in sorted(instances, key=int, reverse=True)[: max(0, len(instances) - capacity)]:
            self._drop_uniform_instance(key, instance_id)

    def _new_uniform_instance(self, scale_set: dict[str, Any]) -> None:
        key = id_key(scale_set["id"])
        instance_id = str(self._next_instance.get(key, 0))
        self._next_instance[key] = int(instance_id) + 1
        vm_id = f"{scale_set['id']}/virtualMachines/{instance_id}"
        refs = self._instance_nics(scale_set, vm_id, {})
        vm = {
            "id": vm_id,
            "name": f"{scale_set['name']}_{instance_id}",
            "type": VMSS_VM_TYPE,
            "location": scale_set["location"],
            "instanceId": instance_id,
            "sku": {"name": scale_set["sku"]["name"], "tier": scale_set["sku"]["tier"]},
            "etag": new_etag(),
            "properties": {
                "latestModelApplied": True,
                "vmId": str(uuid.uuid4()),
                "provisioningState": self._instance_state(key),
                "networkProfile": {"networkInterfaces": refs},
                "networkProfileConfiguration": {
                    "networkInterfaceConfigurations": copy.deepcopy(self._configs_of(scale_set))
                },
                "osProfile": {"computerName": f"{scale_set['name']}{int(instance_id):06x}"},
            },
        }
        self.ss_instances.setdefault(key, {})[instance_id] = vm

    def _instance_nics(
        self, scale_set: dict[str, Any], vm_id: str, old_nics: dict[str, dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Build (or rebuild from the model) a Uniform instance's NICs; IPs stick while the subnet does."""
        configs = self._configs_of(scale_set)
        built = []
        try:
            for index, config in enumerate(configs):
                nic_id = f"{vm_id}/networkInterfaces/{config['name']}"
                old = old_nics.get(id_key(nic_id))
                old_ips = self._nic_ips(old) if old else {}
                taken: set[tuple[str, str]] = set()
                ipconfigs = [
                    self._build_ipconfig(nic_id, raw, i, old_ips, taken, None)
                    for i, raw in enumerate(props_of(config).get("ipConfigurations") or [])
                ]
                if len(ipconfigs) == 1:
                    ipconfigs[0]["properties"]["primary"] = True
                primary = bool(props_of(config).get("primary", len(configs) == 1 or index == 0))
                nic = {
                    "id": nic_id,
                    "name": config["name"],
                    "type": "Microsoft.Network/networkInterfaces",
                    "location": scale_set["location"],
                    "etag": new_etag(),
                    "properties": {
                        "provisioningState": SUCCEEDED,
                        "resourceGuid": (old or {}).get("properties", {}).get("resourceGuid")
                        or str(uuid.uuid4()),
                        "ipConfigurations": ipconfigs,
                        "primary": primary,
                        "virtualMachine": {"id": vm_id},
                        "macAddress": mac_for(id_key(nic_id)),
                        "nicType": "Standard",
                    },
                }
                self._index_nic(nic)  # the next NIC of this instance must not take the same address
                self.ss_nics[id_key(nic_id)] = nic
                built.append(nic)
        except ArmError:
            for nic in built:
                self._unindex_nic(nic)
                self.ss_nics.pop(id_key(nic["id"]), None)
            raise
        return [{"id": nic["id"], "properties": {"primary": nic["properties"]["primary"]}} for nic in built]

    def _new_flexible_instance(self, scale_set: dict[str, Any]) -> None:
        key = id_key(scale_set["id"])
        rid = ResourceId.parse(scale_set["id"])
        name = f"{scale_set['name']}_{uuid.uuid4().hex[:8]}"
        vm_id = str(
            ResourceId(rid.subscription, rid.resource_group, "Microsoft.Compute", "virtualMachines", name)
        )
        refs = []
        created: list[str] = []
        try:
            for config in self._configs_of(scale_set):
                nic_id = str(
                    ResourceId(
                        rid.subscription,
                        rid.resource_group,
                        "Microsoft.Network",
                        "networkInterfaces",
                        f"{name}-{config['name']}",
                    )
                )
                ipconfigs = [
                    {"name": c.get("name"), "properties": props_of(c)}
                    for c in props_of(config).get("ipConfigurations") or []
                ]
                self.put_nic(
                    nic_id, {"location": scale_set["location"], "properties": {"ipConfigurations": ipconfigs}}
                )
                created.append(nic_id)
                refs.append(
                    {
                        "id": nic_id,
                        "properties": {
                            "primary": bool(props_of(config).get("primary", len(created) == 1)),
                            "deleteOption": props_of(config).get("deleteOption") or "Delete",
                        },
                    }
                )
        except ArmError:
            for nic_id in created:
                self.delete_nic(nic_id)
            raise
        body = {
            "location": scale_set["location"],
            "properties": {
                "hardwareProfile": {"vmSize": scale_set["sku"]["name"]},
                "networkProfile": {"networkInterfaces": refs},
                "virtualMachineScaleSet": {"id": scale_set["id"]},
            },
        }
        self.put_vm(vm_id, body, self._instance_state(key))
        self._flex_members.setdefault(key, {})[id_key(vm_id)] = vm_id

    def _configs_of(self, scale_set: dict[str, Any]) -> list[dict[str, Any]]:
        profile = scale_set["properties"].get("virtualMachineProfile") or {}
        return list((profile.get("networkProfile") or {}).get("networkInterfaceConfigurations") or [])

    def _drop_uniform_instance(self, scale_set_key: str, instance_id: str) -> None:
        instance = self.ss_instances.get(scale_set_key, {}).pop(instance_id, None)
        if instance is None:
            return
        prefix = id_key(instance["id"]) + "/"
        for key in [k for k in self.ss_nics if k.startswith(prefix)]:
            self._unindex_nic(self.ss_nics.pop(key))

    def delete_vm(self, vm_id: str) -> tuple[list[str], list[str]] | None:
        """A VM delete; a Flexible instance also leaves its set (capacity one less)."""
        with self.lock:
            vm = self.vms.get(id_key(vm_id))
            set_id = ref_id((vm or {}).get("properties", {}).get("virtualMachineScaleSet"))
            outcome = super().delete_vm(vm_id)
            if set_id and outcome is not None:
                members = self._flex_members.get(id_key(set_id), {})
                members.pop(id_key(vm_id), None)
                scale_set = self.scale_sets.get(id_key(set_id))
                if scale_set is not None:
                    scale_set["sku"]["capacity"] = len(members)
            return outcome

    def delete_scale_set_instances(self, scale_set_id: str, instance_ids: list[str]) -> list[str]:
        """Delete instances (Uniform: instance ids; Flexible: VM names); returns the ids removed."""
        with self.lock:
            key = id_key(scale_set_id)
            scale_set = self.scale_sets.get(key)
            if scale_set is None:
                return []
            removed = []
            for instance in self._resolve_instances(scale_set, instance_ids):
                if self._mode(scale_set) == FLEXIBLE:
                    self.delete_vm(instance)
                else:
                    self._drop_uniform_instance(key, ResourceId.parse(instance).child_name or "")
                removed.append(instance)
            scale_set["sku"]["capacity"] = self.instance_count(scale_set_id)
            scale_set["etag"] = new_etag()
            return removed

    def delete_scale_set_instance(self, instance_id: str) -> bool:
        rid = ResourceId.parse(instance_id)
        return bool(self.delete_scale_set_instances(str(rid.parent), [rid.child_name or ""]))

    def delete_scale_set(self, scale_set_id: str) -> bool:
        with self.lock:
            scale_set = self.scale_sets.get(id_key(scale_set_id))
            if scale_set is None:
                return False
            self._scale_to(scale_set, 0)
            del self.scale_sets[id_key(scale_set_id)]
            self._flex_members.pop(id_key(scale_set_id), None)
            self.ss_instances.pop(id_key(scale_set_id), None)
            return True

    def check_instance_ids(self, scale_set_id: str, body: dict[str, Any], required: bool) -> list[str]:
        """The `instanceIds` of an action body as instance resource ids (all instances when omitted and
        not required); raises the 400 Compute answers for unknown ids."""
        with self.lock:
            scale_set = self.scale_sets[id_key(scale_set_id)]
            given = body.get("instanceIds")
            if given is None:
                if required:
                    raise bad_request(
                        "InvalidParameter", "Required parameter 'instanceIds' is missing (null)."
                    )
                return [i["id"] for i in self.list_scale_set_instances(scale_set_id) or []]
            if not isinstance(given, list) or not all(isinstance(i, str) for i in given):
                raise bad_request("InvalidParameter", "instanceIds must be an array of strings.")
            return self._resolve_instances(scale_set, given, strict=True)

    def _resolve_instances(
        self, scale_set: dict[str, Any], instance_ids: list[str], strict: bool = False
    ) -> list[str]:
        key = id_key(scale_set["id"])
        resolved = []
        for given in instance_ids:
            if self._mode(scale_set) == FLEXIBLE:
                rid = ResourceId.parse(scale_set["id"])
                vm_id = str(
                    ResourceId(
                        rid.subscription,
                        rid.resource_group,
                        "Microsoft.Compute",
                        "virtualMachines",
                        given.rsplit("/", 1)[-1],
                    )
                )
                found = id_key(vm_id) in self._flex_members.get(key, {})
                resolved_id = self._flex_members.get(key, {}).get(id_key(vm_id), vm_id)
            else:
                found = given.lower() in self.ss_instances.get(key, {})
                resolved_id = f"{scale_set['id']}/virtualMachines/{given}"
            if not found:
                if strict:
                    raise bad_request(
                        "InvalidParameter",
                        f"The instance id '{given}' is not a valid instance of scale set {scale_set['id']}.",
                    )
                continue
            resolved.append(resolved_id)
        return resolved

    def reimage_instances(self, instance_ids: list[str]) -> None:
        """Reimage replaces the OS disk: NICs and addresses stay, the instance gets a new etag."""
        with self.lock:
            for instance_id in instance_ids:
                instance = self._instance_record(instance_id)
                if instance is not None:
                    instance["etag"] = new_etag()

    def upgrade_instances(self, scale_set_id: str, instance_ids: list[str]) -> None:
        """Manual upgrade: the instances take the set's current model (their NICs are rebuilt from it)."""
        with self.lock:
            scale_set = self.scale_sets.get(id_key(scale_set_id))
            if scale_set is not None and self._mode(scale_set) == UNIFORM:
                self._upgrade(scale_set, [ResourceId.parse(i).child_name or "" for i in instance_ids])

    def _upgrade(self, scale_set: dict[str, Any], instance_names: list[str]) -> None:
        key = id_key(scale_set["id"])
        for name in instance_names:
            instance = self.ss_instances.get(key, {}).get(name.lower())
            if instance is None:
                continue
            prefix = id_key(instance["id"]) + "/"
            old = {k: self.ss_nics.pop(k) for k in [k for k in self.ss_nics if k.startswith(prefix)]}
            for nic in old.values():
                self._unindex_nic(nic)
            try:
                refs = self._instance_nics(scale_set, instance["id"], old)
            except ArmError:
                for nic_key, nic in old.items():
                    self.ss_nics[nic_key] = nic
                    self._index_nic(nic)
                raise
            instance["properties"]["networkProfile"] = {"networkInterfaces": refs}
            instance["properties"]["networkProfileConfiguration"] = {
                "networkInterfaceConfigurations": copy.deepcopy(self._configs_of(scale_set))
            }
            instance["properties"]["latestModelApplied"] = True
            instance["etag"] = new_etag()

    def _instance_record(self, instance_id: str) -> dict[str, Any] | None:
        rid = ResourceId.parse(instance_id)
        if rid.type.lower() == "virtualmachines":
            return self.vms.get(rid.key())
        return self.ss_instances.get(rid.parent.key(), {}).get((rid.child_name or "").lower())

    # --------------------------------------------------------- instance faults
    def fail_next_instances(self, scale_set_id: str, count: int) -> None:
        """Instance-level fault: the next `count` instances this set creates end provisioningState Failed
        (they keep their NICs and addresses, as a failed Azure instance does)."""
        with self.lock:
            self._failing_instances[id_key(scale_set_id)] = int(count)

    def _instance_state(self, scale_set_key: str) -> str:
        left = self._failing_instances.get(scale_set_key, 0)
        if left > 0:
            self._failing_instances[scale_set_key] = left - 1
            return FAILED_STATE
        return SUCCEEDED

    @staticmethod
    def _mode(scale_set: dict[str, Any]) -> str:
        return str(scale_set["properties"]["orchestrationMode"])
