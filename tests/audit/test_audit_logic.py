"""The audit's decisions on hand-built inputs: cases the emulator cannot hold or does not model."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.audit.collect import AuditSettings, lb_facts_from_json, parse_duration, vnet_facts_from_json
from shared.core.audit_findings import audit
from shared.core.audit_model import (
    POOL_SIZE_LIMIT,
    AuditInputs,
    DrainRecord,
    FrontendIp,
    LoadBalancerFacts,
    SubnetFacts,
    VnetFacts,
    drain_key,
)
from shared.core.ids import id_key
from shared.core.models import (
    Inventory,
    IpConfiguration,
    NetworkInterface,
    PoolAddress,
    PoolSnapshot,
    VirtualMachine,
)
from shared.core.naming import address_name
from shared.core.rules import parse_rules

SUB = "11111111-2222-3333-4444-555555555555"
NET = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Network"
VNET = f"{NET}/virtualNetworks/vnet"
SUBNET = f"{VNET}/subnets/default"
LB = f"{NET}/loadBalancers/lb"
POOL = f"{LB}/backendAddressPools/web"
NOW = datetime(2026, 11, 25, tzinfo=UTC)


def nic_id(name: str) -> str:
    return f"{NET}/networkInterfaces/{name}"


def name_of(nic: str) -> str:
    return address_name(nic_id(nic), "ipconfig1")


def add_vm(
    inventory: Inventory, name: str, ip: str, *, tags: dict[str, str] | None = None, attached: bool = True
) -> None:
    vm = f"/subscriptions/{SUB}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}"
    nid = nic_id(f"{name}-nic")
    inventory.add_nic(
        NetworkInterface(
            nid,
            f"{name}-nic",
            "rg",
            vm if attached else None,
            (IpConfiguration(nid, "ipconfig1", ip, SUBNET, True),),
        )
    )
    if attached:
        inventory.add_vm(VirtualMachine(vm, name, "rg", dict(tags or {"app": "web"}), (nid,)))


def entry(name: str, ip: str, admin_state: str = "None", vnet: str = VNET) -> PoolAddress:
    return PoolAddress(name, ip, vnet, None, admin_state)


RULES = parse_rules(
    {
        "version": 1,
        "rules": [
            {
                "name": "web",
                "pool": POOL,
                "virtualNetwork": VNET,
                "cidrs": ["10.0.0.0/24"],
                "tags": {"app": "web"},
            },
        ],
    }
)


def inputs(
    *addresses: PoolAddress,
    inventory: Inventory | None = None,
    vnets: dict | None = None,
    lb: LoadBalancerFacts | None = None,
    drains: dict | None = None,
    rules=RULES,
    now: datetime = NOW,
) -> AuditInputs:
    pool = PoolSnapshot(POOL, 'W/"1"', tuple(addresses), lb_sku="Standard")
    return AuditInputs(
        rules=rules,
        inventory=inventory or Inventory(),
        load_balancers=[lb or LoadBalancerFacts(LB, "Standard", (pool,))],
        vnets=vnets if vnets is not None else {VNET.lower(): VnetFacts(VNET, ("10.0.0.0/16",))},
        now=now,
        drain_max_age=timedelta(days=7),
        drains=drains or {},
    )


def codes(result) -> list[tuple[str, str | None]]:
    return sorted((f.code, f.address) for f in result.findings)


def test_application_gateway_and_container_group_addresses_are_known_by_their_subnet():
    vnets = {
        VNET.lower(): VnetFacts(
            VNET,
            ("10.0.0.0/16",),
            (
                SubnetFacts(f"{VNET}/subnets/appgw", ("10.0.8.0/24",), application_gateway=True),
                SubnetFacts(
                    f"{VNET}/subnets/aci",
                    ("10.0.9.0/24",),
                    delegations=("Microsoft.ContainerInstance/containerGroups",),
                ),
            ),
        )
    }
    result = audit(inputs(entry("gw", "10.0.8.4"), entry("aci", "10.0.9.4"), vnets=vnets))
    targets = {f.address: f.evidence["target"] for f in result.findings}
    assert codes(result) == [("non_vm_backend", "aci"), ("non_vm_backend", "gw")]
    assert targets == {"gw": "application_gateway", "aci": "container_group"}


def test_readdressed_nic_is_stale_and_updated_in_place():
    inventory = Inventory()
    add_vm(inventory, "web-1", "10.0.0.9")
    result = audit(inputs(entry(name_of("web-1-nic"), "10.0.0.4"), inventory=inventory))
    (finding,) = result.findings
    assert (finding.code, finding.remediable, finding.evidence["currentIp"]) == (
        "stale_address",
        True,
        "10.0.0.9",
    )
    assert result.remediable_pool_ids() == [POOL]


def test_missing_address_whose_ip_a_hand_added_entry_holds_is_not_remediable():
    inventory = Inventory()
    add_vm(inventory, "web-1", "10.0.0.4")
    result = audit(inputs(entry("by-hand", "10.0.0.4"), inventory=inventory))
    (finding,) = result.findings
    assert (finding.code, finding.address, finding.remediable) == (
        "missing_address",
        name_of("web-1-nic"),
        False,
    )
    assert "by-hand" in finding.message
    assert result.remediable_pool_ids() == []


def test_detached_nic_makes_a_managed_entry_stale_and_a_hand_added_one_an_orphan():
    inventory = Inventory()
    add_vm(inventory, "old", "10.0.0.4", attached=False)
    add_vm(inventory, "older", "10.0.0.5", attached=False)
    result = audit(
        inputs(entry(name_of("old-nic"), "10.0.0.4"), entry("by-hand", "10.0.0.5"), inventory=inventory)
    )
    assert codes(result) == [("stale_address", name_of("old-nic")), ("unmanaged_orphan", "by-hand")]
    orphan = next(f for f in result.findings if f.code == "unmanaged_orphan")
    assert orphan.evidence["target"] == "detached_nic"


def test_private_link_service_nic_and_lb_frontend_are_not_vm_backends():
    inventory = Inventory()
    nid = nic_id("pls-nic")
    inventory.add_nic(
        NetworkInterface(
            nid,
            "pls-nic",
            "rg",
            None,
            (IpConfiguration(nid, "ipconfig1", "10.0.0.7", SUBNET, True),),
            owner_kind="privateLinkService",
        )
    )
    pool = PoolSnapshot(POOL, None, (entry("pls", "10.0.0.7"), entry("fe", "10.0.0.8")), lb_sku="Standard")
    lb = LoadBalancerFacts(LB, "Standard", (pool,), (FrontendIp(LB, "fe", "10.0.0.8", VNET),))
    result = audit(inputs(*pool.addresses, inventory=inventory, lb=lb))
    assert {(f.code, f.evidence["target"]) for f in result.findings} == {
        ("non_vm_backend", "private_link_service"),
        ("non_vm_backend", "load_balancer_frontend"),
    }


def test_blocked_pool_reports_the_blocker_not_drift():
    inventory = Inventory()
    add_vm(inventory, "web-1", "10.0.0.4")
    pool = PoolSnapshot(POOL, None, (), nic_member_count=2, lb_sku="Basic")
    result = audit(inputs(inventory=inventory, lb=LoadBalancerFacts(LB, "Basic", (pool,))))
    assert codes(result) == [("basic_sku", None), ("mixed_members", None)]
    assert result.pools[0].blocked and result.remediable_pool_ids() == []
    assert next(f for f in result.findings if f.code == "basic_sku").evidence["selectedAddresses"] == 1


def test_a_sync_mode_automatic_pool_is_an_error_and_never_written():
    inventory = Inventory()
    add_vm(inventory, "web-1", "10.0.0.4")
    pool = PoolSnapshot(POOL, None, (), lb_sku="Standard", sync_mode="Automatic")
    result = audit(inputs(inventory=inventory, lb=LoadBalancerFacts(LB, "Standard", (pool,))))
    assert codes(result) == [("sync_mode_automatic", None)]  # no missing_address: poolsync cannot add it
    finding = result.findings[0]
    assert (finding.severity, finding.category, finding.remediable) == ("error", "platform", False)
    assert "syncMode is Manual or unset" in finding.fix
    assert result.pools[0].blocked and result.remediable_pool_ids() == []
    assert result.pools[0].sync_mode == "Automatic"


def test_a_failed_pool_is_an_error_a_remediating_run_fixes_even_without_drift():
    inventory = Inventory()
    add_vm(inventory, "web-1", "10.0.0.4")
    pool = PoolSnapshot(POOL, None, (entry(name_of("web-1-nic"), "10.0.0.4"),), lb_sku="Standard",
                        provisioning_state="Failed")
    result = audit(inputs(inventory=inventory, lb=LoadBalancerFacts(LB, "Standard", (pool,))))
    assert codes(result) == [("pool_provisioning_failed", None)]
    finding = result.findings[0]
    assert (finding.severity, finding.remediable) == ("error", True)
    assert finding.evidence == {"provisioningState": "Failed"}
    assert result.pools[0].plan is not None and result.pools[0].plan.is_empty
    assert result.remediable_pool_ids() == [POOL]


def test_a_failed_pool_that_is_also_blocked_is_not_remediable():
    pool = PoolSnapshot(POOL, None, (), lb_sku="Standard", provisioning_state="Failed", sync_mode="Automatic")
    result = audit(inputs(lb=LoadBalancerFacts(LB, "Standard", (pool,))))
    failed = next(f for f in result.findings if f.code == "pool_provisioning_failed")
    assert failed.remediable is False and result.remediable_pool_ids() == []


@pytest.mark.parametrize("state", ["Succeeded", "Updating", None])
def test_other_provisioning_states_are_no_finding(state):
    pool = PoolSnapshot(POOL, None, (), lb_sku="Standard", provisioning_state=state)
    result = audit(inputs(lb=LoadBalancerFacts(LB, "Standard", (pool,))))
    assert codes(result) == [] and result.remediable_pool_ids() == []


WIDE_RULES = parse_rules({"version": 1, "rules": [
    {"name": "web", "pool": POOL, "virtualNetwork": VNET, "cidrs": ["10.0.0.0/16"], "tags": {"app": "web"}}]})


def _hand_added(count: int) -> tuple[PoolAddress, ...]:
    return tuple(entry(f"manual-{i}", _nth_ip(i)) for i in range(count))


def _nth_ip(index: int) -> str:
    return f"10.0.{index // 250}.{index % 250 + 1}"


def test_a_pool_over_the_documented_size_limit_is_reported():
    addresses = _hand_added(POOL_SIZE_LIMIT + 1)
    rules = WIDE_RULES
    inventory = Inventory()
    for index, address in enumerate(addresses):  # each hand-added address is a selected VM's IP
        add_vm(inventory, f"vm-{index}", address.ip_address or "")
    over = audit(inputs(*addresses, inventory=inventory, rules=rules))
    found = [f for f in over.findings if f.code == "pool_size_limit"]
    assert len(found) == 1
    assert found[0].severity == "error"
    assert found[0].evidence == {"addresses": POOL_SIZE_LIMIT + 1, "selectedAddresses": POOL_SIZE_LIMIT + 1,
                                 "limit": POOL_SIZE_LIMIT}

    at_limit = audit(inputs(*addresses[:POOL_SIZE_LIMIT], rules=rules))
    assert not [f for f in at_limit.findings if f.code == "pool_size_limit"]


def test_selecting_more_addresses_than_a_pool_may_hold_is_reported_before_any_write():
    rules = WIDE_RULES
    inventory = Inventory()
    for index in range(POOL_SIZE_LIMIT + 1):
        add_vm(inventory, f"vm-{index}", _nth_ip(index))
    result = audit(inputs(inventory=inventory, rules=rules))
    found = [f for f in result.findings if f.code == "pool_size_limit"]
    assert len(found) == 1 and "would need" in found[0].message
    evidence = found[0].evidence
    assert (evidence["addresses"], evidence["selectedAddresses"]) == (0, POOL_SIZE_LIMIT + 1)


def test_drain_ages_records_and_forgetting():
    inventory = Inventory()
    for number in (1, 2, 3):
        add_vm(inventory, f"web-{number}", f"10.0.0.{number}")
    addresses = (
        entry(name_of("web-1-nic"), "10.0.0.1", "Down"),
        entry(name_of("web-2-nic"), "10.0.0.2", "Down"),
        entry(name_of("web-3-nic"), "10.0.0.3"),
    )
    old = DrainRecord(POOL, name_of("web-1-nic"), NOW - timedelta(days=8), "observed")
    undrained = DrainRecord(POOL, name_of("web-3-nic"), NOW - timedelta(days=1), "poolsync")
    other_pool = DrainRecord(f"{LB}/backendAddressPools/unmanaged", "x", NOW, "observed")
    drains = {record.key: record for record in (old, undrained, other_pool)}
    result = audit(inputs(*addresses, inventory=inventory, drains=drains))

    (overdue,) = result.findings
    assert (overdue.code, overdue.address) == ("drain_overdue", name_of("web-1-nic"))
    assert "at least 8.0 days" in overdue.message  # first seen by an audit: a lower bound
    assert [(r.name, r.since, r.source) for r in result.drains.upserts] == [
        (name_of("web-2-nic"), NOW, "observed")
    ]
    assert set(result.drains.deletes) == {undrained, other_pool}


def test_drains_of_entries_gone_from_the_pool_are_kept_until_too_old_to_carry_over():
    inventory = Inventory()
    add_vm(inventory, "web-1", "10.0.0.1")
    addresses = (entry(name_of("web-1-nic"), "10.0.0.1"),)
    left = DrainRecord(POOL, name_of("web-2-nic"), NOW - timedelta(days=2), "poolsync")  # may rejoin Down
    expired = DrainRecord(POOL, name_of("web-3-nic"), NOW - timedelta(days=8), "poolsync")
    drains = {record.key: record for record in (left, expired)}
    result = audit(inputs(*addresses, inventory=inventory, drains=drains))
    assert result.drains.deletes == (expired,)


def test_drain_records_of_a_pool_that_could_not_be_read_are_kept():
    rules = parse_rules(
        {
            "version": 1,
            "rules": [
                {"name": "web", "pool": POOL, "virtualNetwork": VNET, "cidrs": ["10.0.0.0/24"]},
                {
                    "name": "api",
                    "pool": f"{LB}/backendAddressPools/api",
                    "virtualNetwork": VNET,
                    "cidrs": ["10.0.1.0/24"],
                },
            ],
        }
    )
    record = DrainRecord(f"{LB}/backendAddressPools/api", "x", NOW - timedelta(days=30))
    result = audit(inputs(rules=rules, drains={record.key: record}))
    assert result.drains.deletes == ()
    assert drain_key(record.pool_id, "X") == record.key
    assert ("rule_pool_missing", None) in codes(result)


def test_address_outside_vnet_uses_the_pool_binding_then_the_frontends_then_the_rules():
    other = VNET.replace("/vnet", "/other")
    vnets = {
        VNET.lower(): VnetFacts(VNET, ("10.0.0.0/16",)),
        other.lower(): VnetFacts(other, ("10.1.0.0/16",)),
    }
    in_other = entry("foreign", "10.1.0.4", vnet=other)
    public = audit(inputs(in_other, vnets=vnets))
    assert codes(public) == [("address_outside_vnet", "foreign"), ("unmanaged_orphan", "foreign")]

    bound = PoolSnapshot(POOL, None, (in_other,), vnet_id=other, lb_sku="Standard")
    result = audit(inputs(in_other, vnets=vnets, lb=LoadBalancerFacts(LB, "Standard", (bound,))))
    assert ("address_outside_vnet", "foreign") not in codes(result)

    internal = LoadBalancerFacts(
        LB, "Standard", (PoolSnapshot(POOL, None, (in_other,)),), (FrontendIp(LB, "fe", "10.1.0.100", other),)
    )
    assert ("address_outside_vnet", "foreign") not in codes(audit(inputs(in_other, vnets=vnets, lb=internal)))


def test_overlaps_are_reported_once_per_pair_of_rules_of_different_pools():
    def rule(name, pool, cidrs):
        return {
            "name": name,
            "pool": f"{LB}/backendAddressPools/{pool}",
            "virtualNetwork": VNET,
            "cidrs": cidrs,
        }

    rules = parse_rules(
        {
            "version": 1,
            "rules": [
                rule("wide", "a", ["10.0.0.0/16"]),
                rule("narrow", "b", ["10.0.1.0/24", "10.0.2.0/24"]),
                rule("inner", "c", ["10.0.1.128/25"]),
                rule("apart", "d", ["10.5.0.0/16"]),
                rule("same-pool", "a", ["10.6.0.0/24"]),
            ],
        }
    )
    overlaps = [f for f in audit(inputs(rules=rules)).findings if f.code == "rules_cidr_overlap"]
    assert sorted(tuple(f.evidence["rules"]) for f in overlaps) == [
        ("narrow", "inner"),
        ("wide", "inner"),
        ("wide", "narrow"),
    ]
    assert {f.severity for f in overlaps} == {"info"}


def test_lb_and_vnet_json_become_facts():
    pool_id = POOL
    lb = lb_facts_from_json(
        {
            "id": LB,
            "sku": {"name": "Standard"},
            "properties": {
                "frontendIPConfigurations": [
                    {"name": "fe", "properties": {"privateIPAddress": "10.0.0.8", "subnet": {"id": SUBNET}}},
                    {"name": "public", "properties": {"publicIPAddress": {"id": "x"}}},
                ],
                "backendAddressPools": [
                    {
                        "id": pool_id,
                        "name": "web",
                        "properties": {
                            "loadBalancerBackendAddresses": [
                                {"name": "a", "properties": {"ipAddress": "10.0.0.4"}}
                            ],
                            "inboundNatRules": [{"id": f"{LB}/inboundNatRules/ssh"}],
                        },
                    }
                ],
                "inboundNatRules": [
                    {
                        "id": f"{LB}/inboundNatRules/ssh",
                        "properties": {"backendAddressPool": {"id": pool_id.upper()}},
                    }
                ],
            },
        }
    )
    assert lb.frontends == (FrontendIp(LB, "fe", "10.0.0.8", VNET),)
    assert lb.vnet_ids == (VNET,)
    assert lb.nat_rules_by_pool == {pool_id.lower(): (f"{LB}/inboundNatRules/ssh",)}
    assert [a.ip_address for a in lb.pools[0].addresses] == ["10.0.0.4"]

    vnet = vnet_facts_from_json(
        {
            "id": VNET,
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [
                    {
                        "id": f"{VNET}/subnets/gw",
                        "properties": {
                            "addressPrefix": "10.0.8.0/24",
                            "applicationGatewayIPConfigurations": [{"id": "y"}],
                        },
                    },
                    {
                        "id": f"{VNET}/subnets/aci",
                        "properties": {
                            "addressPrefixes": ["10.0.9.0/24"],
                            "delegations": [
                                {"properties": {"serviceName": "Microsoft.ContainerInstance/containerGroups"}}
                            ],
                        },
                    },
                ],
            },
        }
    )
    assert vnet.subnets == (
        SubnetFacts(f"{VNET}/subnets/gw", ("10.0.8.0/24",), (), True),
        SubnetFacts(
            f"{VNET}/subnets/aci", ("10.0.9.0/24",), ("Microsoft.ContainerInstance/containerGroups",)
        ),
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P7D", timedelta(days=7)),
        ("PT36H", timedelta(hours=36)),
        ("P1DT12H", timedelta(hours=36)),
        ("36h", timedelta(hours=36)),
        ("90m", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("3600", timedelta(hours=1)),
    ],
)
def test_drain_max_age_formats(text, expected):
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["P", "PT", "seven days", "7w", "-1d"])
def test_bad_drain_max_age_is_refused(text):
    with pytest.raises(ValueError, match="POOLSYNC_DRAIN_MAX_AGE"):
        parse_duration(text)


def test_settings_defaults_and_flags():
    assert AuditSettings.from_env({}) == AuditSettings()
    settings = AuditSettings.from_env({"POOLSYNC_AUDIT_REMEDIATE": "True", "POOLSYNC_DRAIN_MAX_AGE": "2d"})
    assert (settings.remediate, settings.drain_max_age) == (True, timedelta(days=2))
    with pytest.raises(ValueError, match="POOLSYNC_AUDIT_REMEDIATE"):
        AuditSettings.from_env({"POOLSYNC_AUDIT_REMEDIATE": "maybe"})


def test_a_write_azure_rejected_is_a_finding_naming_the_rules() -> None:
    plain = inputs()
    pool_id = plain.rules.managed_pool_ids()[0]
    refusal = "LoadBalancerBackendAddressPoolSizeLimitExceeded"
    rejected = replace(plain, rejected_writes={id_key(pool_id): refusal})

    [finding] = [f for f in audit(rejected).findings if f.code == "write_rejected"]

    assert finding.pool == pool_id and finding.severity == "error"
    selecting = sorted(r.name for r in plain.rules.rules if r.pool_key == id_key(pool_id))
    assert finding.evidence["rules"] == selecting and refusal in finding.message
    assert not [f for f in audit(plain).findings if f.code == "write_rejected"]
