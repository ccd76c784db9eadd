"""Scale sets in the pure core: rules selecting by scale set, scale-set events, what a set's own lists
prove, entry names of Uniform instances, and the audit finding for a set that references a managed pool."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.core.arm_json import nic_from_json, vm_from_json
from shared.core.audit_findings import AuditInputs, LoadBalancerFacts, audit
from shared.core.changes import KIND_VM, OwnerState, owner_change
from shared.core.events import KIND_SCALE_SET, Ignored, parse_event
from shared.core.member_record import MemberRecord
from shared.core.membership import compute_membership
from shared.core.models import Inventory, PoolSnapshot, VirtualMachine
from shared.core.naming import address_name, is_managed_name
from shared.core.plan import CONFIRM_NIC_DELETED
from shared.core.rules import RulesError, parse_rules
from shared.core.rules_azure import AzureFacts, validate_against_azure
from shared.core.scale_sets import (
    ScaleSetRead,
    group_key,
    merged,
    nic_groups,
    profile_from_json,
    read_from_json,
    scale_set_round,
)
from tests.core.unit_factories import SUB, pool_id, rule_doc, rules_document, ruleset, subnet_id, vnet_id

RG = "rg-app"
COMPUTE = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute"


def set_id(name: str) -> str:
    return f"{COMPUTE}/virtualMachineScaleSets/{name}"


def scale_set(
    name: str, mode: str = "Uniform", tags: dict[str, str] | None = None, pools: list[str] | None = None
) -> dict:
    ipconfig = {"subnet": {"id": subnet_id()}}
    if pools:
        ipconfig["loadBalancerBackendAddressPools"] = [{"id": p} for p in pools]
    return {
        "id": set_id(name),
        "name": name,
        "tags": tags or {},
        "properties": {
            "orchestrationMode": mode,
            "virtualMachineProfile": {
                "networkProfile": {
                    "networkInterfaceConfigurations": [
                        {
                            "name": "nic",
                            "properties": {
                                "ipConfigurations": [{"name": "ipconfig1", "properties": ipconfig}]
                            },
                        }
                    ]
                }
            },
        },
    }


def uniform_instance(name: str, n: int) -> tuple[dict, dict]:
    vm = f"{set_id(name)}/virtualMachines/{n}"
    nic = f"{vm}/networkInterfaces/nic"
    return (
        {
            "id": vm,
            "name": f"{name}_{n}",
            "instanceId": str(n),
            "tags": {},
            "properties": {
                "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"primary": True}}]}
            },
        },
        {
            "id": nic,
            "name": "nic",
            "properties": {
                "resourceGuid": f"guid-{n}",
                "virtualMachine": {"id": vm},
                "ipConfigurations": [
                    {
                        "name": "ipconfig1",
                        "properties": {
                            "privateIPAddress": f"10.0.1.{10 + n}",
                            "subnet": {"id": subnet_id()},
                            "primary": True,
                        },
                    }
                ],
            },
        },
    )


def uniform_read(name: str, count: int, tags: dict[str, str] | None = None, start: int = 0):
    pairs = [uniform_instance(name, n) for n in range(start, start + count)]
    return read_from_json(
        set_id(name), scale_set(name, tags=tags), [p[0] for p in pairs], [p[1] for p in pairs]
    )


# --- rules -------------------------------------------------------------------------------------------


def test_rules_select_instances_by_scale_set_name_glob_or_id_and_uniform_instances_carry_the_sets_tags():
    read = uniform_read("web-a", 2, tags={"Role": "web"})
    other = uniform_read("batch", 1)
    inventory = Inventory()
    for vm in read.instances + other.instances:
        inventory.add_vm(vm)
    for nic in read.nics + other.nics:
        inventory.add_nic(nic)
    by_glob = ruleset(rule_doc(scaleSets=["WEB-*"], tags={"role": "web"}))
    by_id = ruleset(rule_doc(scaleSets=[set_id("batch")]))

    assert sorted(
        d.ip_address for d in compute_membership(inventory, by_glob)[pool_id().lower()].values()
    ) == ["10.0.1.10", "10.0.1.11"]
    assert [d.ip_address for d in compute_membership(inventory, by_id)[pool_id().lower()].values()] == [
        "10.0.1.10"
    ]
    desired = next(iter(compute_membership(inventory, by_glob)[pool_id().lower()].values()))
    assert desired.scale_set_id == set_id("web-a")


def test_a_scale_set_entry_that_is_an_id_of_something_else_is_refused_naming_the_field():
    document = rules_document(rule_doc(scaleSets=["web-*", f"{COMPUTE}/virtualMachines/vm1"]))
    with pytest.raises(RulesError) as caught:
        parse_rules(document, "test")
    [problem] = caught.value.problems
    assert problem.path == "rules[0].scaleSets[1]" and "virtualMachineScaleSets" in problem.message


def test_a_vm_of_no_scale_set_does_not_match_a_scale_set_rule():
    rule = ruleset(rule_doc(scaleSets=["*"])).rules[0]
    assert not rule.matches_vm(VirtualMachine(f"{COMPUTE}/virtualMachines/solo", "solo", RG, {}, ()))
    assert rule.matches_vm(VirtualMachine(f"{COMPUTE}/virtualMachines/f_1", "f_1", RG, {}, (), set_id("f")))


# --- events --------------------------------------------------------------------------------------------


def event(event_type: str, subject: str, operation: str) -> dict:
    return {
        "id": "e1",
        "eventType": f"Microsoft.Resources.{event_type}",
        "subject": subject,
        "eventTime": "2026-12-01T00:00:00Z",
        "data": {"operationName": operation, "status": "Succeeded"},
    }


@pytest.mark.parametrize(
    ("event_type", "subject", "operation"),
    [
        ("ResourceWriteSuccess", set_id("web"), "Microsoft.Compute/virtualMachineScaleSets/write"),
        ("ResourceActionSuccess", set_id("web"), "Microsoft.Compute/virtualMachineScaleSets/delete/action"),
        (
            "ResourceActionSuccess",
            set_id("web"),
            "Microsoft.Compute/virtualMachineScaleSets/manualUpgrade/action",
        ),
        (
            "ResourceDeleteSuccess",
            f"{set_id('web')}/virtualMachines/3",
            "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/delete",
        ),
        (
            "ResourceActionSuccess",
            f"{set_id('web')}/virtualMachines/3",
            "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/reimage/action",
        ),
    ],
)
def test_scale_set_events_name_the_scale_set_as_owner(event_type, subject, operation):
    hint = parse_event(event(event_type, subject, operation))
    assert (hint.kind, hint.resource_id) == (KIND_SCALE_SET, set_id("web"))


def test_scale_set_actions_that_change_no_instance_and_extensions_are_ignored():
    restart = event(
        "ResourceActionSuccess", set_id("web"), "Microsoft.Compute/virtualMachineScaleSets/restart/action"
    )
    extension = event(
        "ResourceWriteSuccess",
        f"{set_id('web')}/extensions/health",
        "Microsoft.Compute/virtualMachineScaleSets/extensions/write",
    )
    assert isinstance(parse_event(restart), Ignored)
    assert isinstance(parse_event(extension), Ignored)


# --- what the set's own lists prove -------------------------------------------------------------------


def record(name: str, n: int) -> MemberRecord:
    vm = f"{set_id(name)}/virtualMachines/{n}"
    return MemberRecord(
        pool_id(),
        pool_id().rsplit("/backendAddressPools/", 1)[0],
        address_name(f"{vm}/networkInterfaces/nic", "ipconfig1", f"guid-{n}"),
        f"{vm}/networkInterfaces/nic",
        "ipconfig1",
        vm,
        f"guid-{n}",
        f"10.0.1.{10 + n}",
        set_id(name),
    )


def test_instances_the_set_no_longer_lists_are_confirmed_gone_and_the_listed_ones_are_wanted():
    rules = ruleset(rule_doc(scaleSets=["web"]))
    read = uniform_read("web", 1)  # ten were recorded, the set lists one: a 90% scale-in
    records = [record("web", n) for n in range(10)]

    found = scale_set_round([read], records)
    changes = owner_change(rules, found.owners, found.state, records)

    assert {o.kind for o in found.owners} == {KIND_VM} and len(found.owners) == 10
    work = changes.pools[pool_id().lower()]
    assert [d.ip_address for d in work.wanted.values()] == ["10.0.1.10"]
    assert sorted(set(work.confirmed.values())) == [CONFIRM_NIC_DELETED]
    assert len(work.confirmed) == 9
    assert found.pools_by_set(changes.pools_by_owner) == {set_id("web").lower(): {pool_id().lower()}}


def test_a_deleted_set_confirms_every_recorded_instance_gone():
    gone_set = read_from_json(set_id("web"), None, [], [])
    found = scale_set_round([gone_set], [record("web", 0)])
    assert found.state.gone >= {record("web", 0).vm_id.lower()}
    changes = owner_change(
        ruleset(rule_doc(scaleSets=["web"])), found.owners, found.state, [record("web", 0)]
    )
    assert list(changes.pools[pool_id().lower()].confirmed.values()) == [CONFIRM_NIC_DELETED]


def test_a_set_whose_read_was_refused_decides_nothing_and_its_event_waits_when_it_has_entries():
    rules = ruleset(rule_doc(scaleSets=["web", "batch"]))
    records = [record("web", n) for n in range(3)]
    reads = [ScaleSetRead.refused(set_id("web")), ScaleSetRead.refused(set_id("batch"))]

    found = scale_set_round(reads, records)
    changes = owner_change(rules, found.owners, found.state, records)
    found.settle(changes, {pool_id().lower()})

    assert found.owners == [] and found.state.gone == frozenset()  # neither present nor gone
    assert changes.pools == {}  # no entry of its instances is added, changed or removed
    assert set(changes.undecided) == {set_id("web").lower(), set_id("batch").lower()}
    assert set_id("web") in changes.undecided[set_id("web").lower()]
    assert changes.undecided_with_entries == {set_id("web").lower()}  # batch has none: nothing to wait for


def test_entries_of_a_refused_set_in_pools_no_longer_managed_do_not_hold_its_event():
    found = scale_set_round([ScaleSetRead.refused(set_id("web"))], [record("web", 0)])
    rules = ruleset(rule_doc(scaleSets=["web"]))
    changes = owner_change(rules, found.owners, found.state, [record("web", 0)])
    found.settle(changes, set())
    assert set(changes.undecided) == {set_id("web").lower()} and changes.undecided_with_entries == set()


def test_an_owner_read_directly_is_decided_although_its_set_was_refused_in_the_same_round():
    instance, nic = uniform_instance("web", 0)
    direct = OwnerState(Inventory())
    direct.inventory.add_vm(vm_from_json(instance))
    direct.inventory.add_nic(nic_from_json(nic))
    found = scale_set_round([ScaleSetRead.refused(set_id("web"))], [record("web", 0)])

    state = merged(direct, found.state)

    assert state.unreadable == frozenset()
    assert merged(OwnerState(Inventory()), found.state).unreadable == {
        record("web", 0).vm_id.lower(), record("web", 0).nic_id.lower()}


def test_a_short_instance_list_confirms_nothing_gone_and_its_set_waits():
    rules = ruleset(rule_doc(scaleSets=["web"]))
    records = [record("web", n) for n in range(3)]
    pairs = [uniform_instance("web", 0)]  # the set says 3 instances, the (filtered) list shows one
    read = read_from_json(set_id("web"), {**scale_set("web"), "sku": {"capacity": 3}},
                          [p[0] for p in pairs], [p[1] for p in pairs])

    found = scale_set_round([read], records)
    changes = owner_change(rules, found.owners, found.state, records)
    found.settle(changes, {pool_id().lower()})

    assert found.state.gone == frozenset()
    work = changes.pools[pool_id().lower()]
    assert work.confirmed == {} and set(work.records) == {records[0].name.lower()}  # 1, 2 out of scope
    assert changes.undecided_with_entries == {set_id("web").lower()}
    assert "1 instances listed, capacity 3" in changes.undecided[set_id("web").lower()]


def test_a_nic_a_listed_instance_uses_that_the_nic_list_leaves_out_is_not_gone():
    rules = ruleset(rule_doc(scaleSets=["web"]))
    instance, _ = uniform_instance("web", 0)
    read = read_from_json(set_id("web"), scale_set("web"), [instance], [])  # the NIC list hides its NIC

    found = scale_set_round([read], [record("web", 0)])
    changes = owner_change(rules, found.owners, found.state, [record("web", 0)])
    found.settle(changes, {pool_id().lower()})

    assert found.state.gone == frozenset() and changes.pools == {}
    assert changes.undecided_with_entries == {record("web", 0).vm_id.lower(), set_id("web").lower()}


def test_a_flexible_instances_nic_in_a_resource_group_no_list_read_is_not_proven_gone():
    vm = f"{COMPUTE}/virtualMachines/flex_1"
    nic = f"/subscriptions/{SUB}/resourceGroups/rg-other/providers/Microsoft.Network/networkInterfaces/n"
    instance = {"id": vm, "name": "flex_1", "properties": {
        "networkProfile": {"networkInterfaces": [{"id": nic}]},
        "virtualMachineScaleSet": {"id": set_id("flex")}}}
    flex = scale_set("flex", mode="Flexible")
    recorded = MemberRecord(pool_id(), pool_id().rsplit("/backendAddressPools/", 1)[0],
                            address_name(nic, "ipconfig1", "g"), nic, "ipconfig1", vm, "g", "10.0.1.9",
                            set_id("flex"))
    assert nic_groups(set_id("flex"), [instance]) == [group_key(set_id("flex")), group_key(nic)]

    # The instance now uses another NIC of that group, which the list shows; the recorded one is absent
    other = nic[:-1] + "n2"
    moved = {**instance, "properties": {**instance["properties"],
                                         "networkProfile": {"networkInterfaces": [{"id": other}]}}}
    other_nic = {"id": other, "name": "n2",
                 "properties": {"virtualMachine": {"id": vm}, "ipConfigurations": []}}
    read_there = read_from_json(set_id("flex"), flex, [moved], [other_nic], [group_key(nic)])
    not_read = read_from_json(set_id("flex"), flex, [instance], [], [group_key(set_id("flex"))])

    assert nic.lower() in scale_set_round([read_there], [recorded]).state.gone
    assert scale_set_round([not_read], [recorded]).state.gone == frozenset()


def test_uniform_instance_entries_are_named_after_set_and_instance():
    name = address_name(f"{set_id('web')}/virtualMachines/12/networkInterfaces/nic", "ipconfig1", "g")
    assert name.startswith("psync-web-12-nic-ipconfig1-") and is_managed_name(name)


# --- audit ---------------------------------------------------------------------------------------------


def test_audit_names_a_scale_set_whose_profile_references_a_managed_pool_and_how_to_decouple():
    rules = ruleset(rule_doc(scaleSets=["web"]))
    lb_id = pool_id().rsplit("/backendAddressPools/", 1)[0]
    inputs = AuditInputs(
        rules=rules,
        inventory=Inventory(),
        load_balancers=[LoadBalancerFacts(lb_id, "Standard", (PoolSnapshot(pool_id(), None, ()),))],
        vnets={},
        now=datetime(2026, 12, 1, tzinfo=UTC),
        drain_max_age=timedelta(days=7),
        scale_sets=[
            profile_from_json(scale_set("web", pools=[pool_id().upper()])),
            profile_from_json(scale_set("other")),
        ],
    )

    found = [f for f in audit(inputs).findings if f.code == "scale_set_references_managed_pool"]

    assert [(f.pool, f.evidence["scaleSet"]) for f in found] == [(pool_id(), set_id("web"))]
    assert "network profile" in found[0].fix and found[0].severity == "error"


# --- start-up checks against Azure --------------------------------------------------------------------


def test_start_up_reports_a_named_scale_set_that_is_missing_or_puts_its_nics_in_the_rules_pool():
    rules = ruleset(rule_doc(scaleSets=["web-*", set_id("gone"), set_id("coupled"), set_id("fine")]))
    facts = AzureFacts(
        vnet_address_spaces={vnet_id().lower(): ["10.0.0.0/16"]},
        pools={pool_id().lower(): PoolSnapshot(pool_id(), None, (), lb_sku="Standard")},
        scale_sets={set_id("coupled").lower(): (pool_id(),), set_id("fine").lower(): ()},
    )

    found = [(p.path, p.message.split(";")[0]) for p in validate_against_azure(rules, facts)]

    assert found == [
        ("rules[0].scaleSets[1]", "scale set not found (or not readable by poolsync's identity)"),
        ("rules[0].scaleSets[2]", f"the scale set's network profile puts its instances' NICs in {pool_id()}"),
    ]
