"""Which ipconfigs the rules put in which pool."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.core.membership import compute_membership
from shared.core.models import Inventory, IpConfiguration, NetworkInterface
from shared.core.naming import address_name
from tests.core.unit_factories import add_vm, nic_id, pool_id, rule_doc, ruleset, subnet_id, vm_id, vnet_id

WEB = pool_id("web").lower()
API = pool_id("api").lower()


def ips_in(membership, pool_key=WEB) -> set[str]:
    return {want.ip_address for want in membership.get(pool_key, {}).values()}


def test_desired_address_carries_name_ip_network_and_owner():
    inventory = Inventory()
    add_vm(inventory, "web-01", ip="10.0.1.4")
    desired = compute_membership(inventory, ruleset(rule_doc()))
    (want,) = desired[WEB].values()
    assert want.name == address_name(nic_id("web-01-nic"), "ipconfig1")
    assert (want.ip_address, want.vnet_id, want.subnet_id) == ("10.0.1.4", vnet_id(), subnet_id())
    assert (want.nic_id, want.ipconfig_name, want.vm_id) == (
        nic_id("web-01-nic"),
        "ipconfig1",
        vm_id("web-01"),
    )
    assert desired[WEB] == {want.name: want}


def test_every_managed_pool_is_present_even_when_empty():
    desired = compute_membership(Inventory(), ruleset(rule_doc(), rule_doc("api", pool=pool_id("api"))))
    assert desired == {WEB: {}, API: {}}


def test_cidr_bounds_and_other_networks():
    inventory = Inventory()
    add_vm(inventory, "first", ip="10.0.1.0")
    add_vm(inventory, "last", ip="10.0.1.255")
    add_vm(inventory, "outside", ip="10.0.2.0")
    add_vm(inventory, "other-vnet", ip="10.0.1.5", vnet="vnet2")
    add_vm(inventory, "no-ip", ip=None)
    assert ips_in(compute_membership(inventory, ruleset(rule_doc()))) == {"10.0.1.0", "10.0.1.255"}


def test_ipv6_addresses_match_ipv6_cidrs_only():
    inventory = Inventory()
    add_vm(inventory, "v6", nics=[("v6-nic", [("ipconfig1", "fd00:db8::4", True)])])
    add_vm(inventory, "v6-out", nics=[("v6-out-nic", [("ipconfig1", "fd00:db9::4", True)])])
    add_vm(inventory, "v4", ip="10.0.1.4")
    rules = ruleset(rule_doc(cidrs=["fd00:db8::/64"]))
    assert ips_in(compute_membership(inventory, rules)) == {"fd00:db8::4"}


def test_dual_stack_vm_with_all_ipconfigs_gets_both_addresses():
    inventory = Inventory()
    add_vm(inventory, "dual", nics=[("dual-nic", [("v4", "10.0.1.4", True), ("v6", "fd00:db8::4", False)])])
    rules = ruleset(rule_doc(cidrs=["10.0.1.0/24", "fd00:db8::/64"], ipConfigurations="all"))
    assert ips_in(compute_membership(inventory, rules)) == {"10.0.1.4", "fd00:db8::4"}


def test_primary_means_primary_ipconfig_of_primary_nic_and_all_means_every_ipconfig():
    inventory = Inventory()
    add_vm(
        inventory,
        "multi",
        nics=[
            ("multi-nic0", [("ipconfig1", "10.0.1.4", True), ("ipconfig2", "10.0.1.5", False)]),
            ("multi-nic1", [("ipconfig1", "10.0.1.6", True)]),
        ],
    )
    primary = compute_membership(inventory, ruleset(rule_doc()))
    every = compute_membership(inventory, ruleset(rule_doc(ipConfigurations="all")))
    assert ips_in(primary) == {"10.0.1.4"}
    assert ips_in(every) == {"10.0.1.4", "10.0.1.5", "10.0.1.6"}
    assert len(every[WEB]) == 3  # one name per (NIC, ipconfig) even with equal ipconfig names


def test_tags_must_all_match_and_star_means_the_key_exists():
    inventory = Inventory()
    add_vm(inventory, "prod", ip="10.0.1.4", tags={"Role": "web", "env": "prod"})
    add_vm(inventory, "dev", ip="10.0.1.5", tags={"role": "web", "ENV": ""})
    add_vm(inventory, "no-env", ip="10.0.1.6", tags={"role": "web"})
    add_vm(inventory, "api", ip="10.0.1.7", tags={"role": "api", "env": "prod"})
    add_vm(inventory, "case", ip="10.0.1.8", tags={"role": "Web", "env": "prod"})
    rules = ruleset(rule_doc(tags={"role": "web", "env": "*"}))
    # keys compare case-insensitively, values exactly; "*" accepts any value, even empty
    assert ips_in(compute_membership(inventory, rules)) == {"10.0.1.4", "10.0.1.5"}


def test_resource_group_and_vm_name_globs_are_case_insensitive():
    inventory = Inventory()
    add_vm(inventory, "WEB-01", rg="RG-Web-Prod", ip="10.0.1.4")
    add_vm(inventory, "web-02", rg="rg-db", ip="10.0.1.5")
    add_vm(inventory, "api-01", rg="rg-web-prod", ip="10.0.1.6")
    add_vm(inventory, "web-x", rg="rg-web-x", ip="10.0.1.7")
    rules = ruleset(rule_doc(resourceGroups=["rg-web-*", "rg-other"], vmNames=["web-0?"]))
    assert ips_in(compute_membership(inventory, rules)) == {"10.0.1.4"}


def test_detached_nics_nics_of_missing_vms_and_non_vm_owners_never_count():
    inventory = Inventory()
    add_vm(inventory, "pe", ip="10.0.1.4", owner_kind="privateEndpoint")
    add_vm(inventory, "ok", ip="10.0.1.9")
    detached = nic_id("loose")
    inventory.add_nic(
        NetworkInterface(
            detached,
            "loose",
            "rg-app",
            None,
            (IpConfiguration(detached, "c", "10.0.1.5", subnet_id(), True),),
        )
    )
    orphan = nic_id("orphan")
    inventory.add_nic(
        NetworkInterface(
            orphan,
            "orphan",
            "rg-app",
            vm_id("gone"),
            (IpConfiguration(orphan, "c", "10.0.1.6", subnet_id(), True),),
        )
    )
    assert ips_in(compute_membership(inventory, ruleset(rule_doc()))) == {"10.0.1.9"}


def test_an_address_may_belong_to_several_pools_under_one_name():
    inventory = Inventory()
    add_vm(inventory, "web-01", ip="10.0.1.4", tags={"role": "web"})
    rules = ruleset(
        rule_doc("web", cidrs=["10.0.1.0/24"]),
        rule_doc("api", pool=pool_id("api"), cidrs=["10.0.0.0/16"], tags={"role": "web"}),
        rule_doc("db", pool=pool_id("db"), cidrs=["10.0.0.0/16"], tags={"role": "db"}),
    )
    desired = compute_membership(inventory, rules)
    assert desired[WEB].keys() == desired[API].keys() and len(desired[WEB]) == 1
    assert desired[pool_id("db").lower()] == {}


def test_two_rules_for_one_pool_with_different_filters():
    inventory = Inventory()
    add_vm(inventory, "a", ip="10.0.1.4", tags={"role": "web"})
    add_vm(inventory, "b", ip="10.0.2.4", tags={"role": "web"})
    add_vm(inventory, "c", ip="10.0.2.5")
    rules = ruleset(
        rule_doc("r1", cidrs=["10.0.1.0/24"]), rule_doc("r2", cidrs=["10.0.2.0/24"], tags={"role": "web"})
    )
    assert ips_in(compute_membership(inventory, rules)) == {"10.0.1.4", "10.0.2.4"}


def test_rule_network_ids_match_subnets_case_insensitively():
    inventory = Inventory()
    add_vm(inventory, "web-01", ip="10.0.1.4", vnet="VNET")
    assert ips_in(compute_membership(inventory, ruleset(rule_doc(vnet=vnet_id("vnet"))))) == {"10.0.1.4"}


# --- agreement with a brute-force evaluation --------------------------------------------------------

octet = st.integers(0, 255)


@st.composite
def random_rules(draw):
    rules = []
    for index in range(draw(st.integers(1, 6))):
        prefix = draw(st.integers(8, 30))
        network = ipaddress.ip_network(f"10.{draw(octet)}.{draw(octet)}.0/{prefix}", strict=False)
        rules.append(rule_doc(f"r{index}", pool=pool_id(f"p{index}"), cidrs=[str(network)]))
    return rules


@settings(max_examples=150, deadline=None)
@given(rules=random_rules(), addresses=st.lists(st.tuples(octet, octet, octet), min_size=1, max_size=30))
def test_index_agrees_with_checking_every_rule(rules, addresses):
    inventory = Inventory()
    for position, (b, c, d) in enumerate(addresses):
        add_vm(inventory, f"vm{position}", ip=f"10.{b}.{c}.{d}")
    rule_set = ruleset(*rules)
    desired = compute_membership(inventory, rule_set)
    for rule in rule_set.rules:
        expected = {
            f"10.{b}.{c}.{d}"
            for b, c, d in addresses
            if ipaddress.ip_address(f"10.{b}.{c}.{d}") in rule.cidrs[0]
        }
        assert ips_in(desired, rule.pool_key) == expected
