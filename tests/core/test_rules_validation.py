"""Rules document: parsing, every validation problem naming rule + field, Azure-fact checks, helpers."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from shared.core.models import PoolAddress, PoolSnapshot
from shared.core.rules import RulesError, load_rules, parse_rules
from shared.core.rules_azure import AzureFacts, validate_against_azure
from shared.core.rules_schema import rules_schema
from tests.core.unit_factories import (
    OTHER_SUB,
    SUB,
    net_id,
    pool_id,
    rule_doc,
    rules_document,
    ruleset,
    subnet_id,
    vnet_id,
)

REPO = Path(__file__).resolve().parents[2]


def problems_of(document) -> list[tuple[str, str | None, str]]:
    with pytest.raises(RulesError) as caught:
        parse_rules(document, "test")
    return [(p.path, p.rule_name, p.message) for p in caught.value.problems]


def only_problem(document) -> tuple[str, str | None, str]:
    found = problems_of(document)
    assert len(found) == 1, found
    return found[0]


# --- a valid document ------------------------------------------------------------------------------


def test_valid_document_becomes_rules_with_defaults_and_lowered_tag_keys():
    rules = ruleset(
        rule_doc("web", cidrs=["10.0.1.0/24", "fd00:db8::/64"], tags={"Role": "web", "env": "*"}),
        rule_doc("api", pool=pool_id("api"), ipConfigurations="all", vmNames=["api-*"]),
    )
    web, api = rules.rules
    assert web.name == "web" and web.index == 0
    assert [str(c) for c in web.cidrs] == ["10.0.1.0/24", "fd00:db8::/64"]
    assert web.tags == (("role", "web"), ("env", "*"))
    assert web.ip_configurations == "primary" and web.primary_only
    assert api.ip_configurations == "all" and not api.primary_only
    assert api.vm_names == ("api-*",)
    assert rules.notes == ()


def test_pool_and_lb_helpers_deduplicate_case_insensitively_in_rule_order():
    rules = ruleset(
        rule_doc("a", pool=pool_id("web"), cidrs=["10.0.1.0/24"]),
        rule_doc("b", pool=pool_id("WEB", lb="LB"), cidrs=["10.0.2.0/24"]),
        rule_doc("c", pool=pool_id("api", lb="lb2"), cidrs=["10.0.1.0/24"]),
    )
    assert rules.managed_pool_ids() == [pool_id("web"), pool_id("api", lb="lb2")]
    assert rules.managed_lb_ids() == [net_id("loadBalancers/lb"), net_id("loadBalancers/lb2")]
    assert [r.name for r in rules.rules_for_pool(pool_id("WEB").lower())] == ["a", "b"]
    assert [r.name for r in rules.rules_for_vnet(vnet_id().upper())] == ["a", "b", "c"]
    assert rules.rules_for_pool(pool_id("nope")) == ()


def test_adjacent_ranges_and_other_pools_may_share_addresses():
    rules = ruleset(
        rule_doc("low", cidrs=["10.0.0.0/25"]),
        rule_doc("high", cidrs=["10.0.0.128/25"]),
        rule_doc("other-pool", pool=pool_id("api"), cidrs=["10.0.0.0/16"]),
        rule_doc("v6", pool=pool_id("v6"), cidrs=["fd00::/48"]),
    )
    assert len(rules.rules) == 4


# --- schema problems -------------------------------------------------------------------------------


def test_unknown_key_in_a_rule_is_named_with_rule_and_field():
    path, rule, message = only_problem(
        rules_document(rule_doc("web"), rule_doc("api", pool=pool_id("api"), colour=1))
    )
    assert (path, rule) == ("rules[1].colour", "api")
    assert "unknown key 'colour'" in message and "cidrs" in message


def test_unknown_top_level_key_is_reported():
    document = rules_document(rule_doc())
    document["rule"] = []
    assert only_problem(document)[0] == "rule"


def test_missing_required_field_is_named():
    doc = rule_doc()
    del doc["virtualNetwork"]
    assert only_problem(rules_document(doc)) == ("rules[0].virtualNetwork", "web", "is required")


def test_wrong_type_is_named_with_expected_and_actual_type():
    doc = rule_doc()
    doc["cidrs"] = "10.0.1.0/24"
    path, rule, message = only_problem(rules_document(doc))
    assert (path, rule) == ("rules[0].cidrs", "web")
    assert message == "must be of type array, got string"


def test_tag_values_must_be_strings():
    path, _, message = only_problem(rules_document(rule_doc(tags={"role": 3})))
    assert path == "rules[0].tags.role" and "string" in message


def test_bad_rule_name_and_bad_ipconfigurations_value():
    found = problems_of(rules_document(rule_doc("no spaces", ipConfigurations="secondary")))
    assert (
        "rules[0].name",
        "no spaces",
        "'no spaces' is not a valid rule name (1-64 of A-Z a-z 0-9 _ . -)",
    ) in found
    assert any(p == "rules[0].ipConfigurations" and "'primary', 'all'" in m for p, _, m in found)


def test_unsupported_version_and_empty_rules():
    found = problems_of({"version": 2, "rules": []})
    assert {p for p, _, _ in found} == {"version", "rules"}


def test_empty_cidr_list_is_refused():
    assert only_problem(rules_document(rule_doc(cidrs=[]))) == (
        "rules[0].cidrs",
        "web",
        "must have at least 1 item(s)",
    )


def test_a_rule_that_is_not_an_object_is_named_by_index():
    path, rule, message = only_problem({"version": 1, "rules": [rule_doc(), "web"]})
    assert (path, rule) == ("rules[1]", None) and "object" in message


# --- semantic problems -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cidr", "expected"),
    [
        ("10.0.1.0/33", "'10.0.1.0/33' is not an IPv4 or IPv6 CIDR"),
        ("web", "'web' is not an IPv4 or IPv6 CIDR"),
        ("10.0.1.7/24", "'10.0.1.7/24' has host bits set (did you mean 10.0.1.0/24?)"),
        ("fd00:db8::1/64", "'fd00:db8::1/64' has host bits set (did you mean fd00:db8::/64?)"),
    ],
)
def test_bad_cidr_names_rule_field_and_reason(cidr, expected):
    assert only_problem(rules_document(rule_doc(cidrs=["10.0.2.0/24", cidr]))) == (
        "rules[0].cidrs[1]",
        "web",
        expected,
    )


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("pool", "lb/web", "not a resource id"),
        ("pool", net_id("loadBalancers/lb"), "is a Microsoft.Network/loadBalancers id"),
        ("pool", net_id("loadBalancers/lb/inboundNatRules/r"), "loadBalancers/inboundNatRules id"),
        ("virtualNetwork", subnet_id(), "is a Microsoft.Network/virtualNetworks/subnets id"),
        ("virtualNetwork", pool_id(), "expected .../providers/Microsoft.Network/virtualNetworks/<vnet>"),
    ],
)
def test_bad_resource_ids_name_the_field_and_the_expected_shape(field, value, fragment):
    path, rule, message = only_problem(rules_document(rule_doc(**{field: value})))
    assert (path, rule) == (f"rules[0].{field}", "web")
    assert fragment in message


def test_duplicate_rule_names_compare_case_insensitively():
    path, rule, message = only_problem(
        rules_document(rule_doc("web"), rule_doc("WEB", pool=pool_id("other")))
    )
    assert (path, rule) == ("rules[1].name", "WEB")
    assert "also rules[0]" in message


def test_duplicate_tag_keys_differing_in_case_are_refused():
    path, _, message = only_problem(rules_document(rule_doc(tags={"role": "a", "Role": "b"})))
    assert path == "rules[0].tags.Role" and "case-insensitive" in message


def test_overlapping_cidrs_of_two_rules_for_the_same_pool_name_both_rules():
    path, rule, message = only_problem(
        rules_document(
            rule_doc("wide", cidrs=["10.0.0.0/16"]),
            rule_doc("narrow", cidrs=["192.168.0.0/24", "10.0.7.0/24"]),
        )
    )
    assert (path, rule) == ("rules[1].cidrs[1]", "narrow")
    assert message == "10.0.7.0/24 overlaps 10.0.0.0/16 of rule 'wide' (rules[0].cidrs[0]) for the same pool"


def test_overlap_is_found_in_ipv6_and_for_identical_ranges():
    found = problems_of(
        rules_document(
            rule_doc("a", cidrs=["fd00:db8::/64", "10.0.1.0/24"]),
            rule_doc("b", cidrs=["fd00:db8::/80"]),
            rule_doc("c", cidrs=["10.0.1.0/24"]),
        )
    )
    assert {(path, rule) for path, rule, _ in found} == {
        ("rules[1].cidrs[0]", "b"),
        ("rules[2].cidrs[0]", "c"),
    }


def test_overlap_check_still_runs_on_a_rule_with_other_problems():
    found = problems_of(
        rules_document(rule_doc("a", cidrs=["10.0.0.0/16"]), rule_doc("b", cidrs=["10.0.1.0/24"], extra=True))
    )
    assert {path for path, _, _ in found} == {"rules[1].extra", "rules[1].cidrs[0]"}


def test_rules_for_one_pool_must_name_one_virtual_network():
    path, rule, message = only_problem(
        rules_document(rule_doc("a"), rule_doc("b", vnet=vnet_id("other"), cidrs=["10.9.0.0/24"]))
    )
    assert (path, rule) == ("rules[1].virtualNetwork", "b")
    assert "one virtual network" in message


def test_vnet_in_another_subscription_is_a_note_not_an_error():
    rules = ruleset(rule_doc(vnet=vnet_id(sub=OTHER_SUB)))
    (note,) = rules.notes
    assert note.severity == "note" and note.path == "rules[0].virtualNetwork" and note.rule_name == "web"
    assert OTHER_SUB in note.message and SUB in note.message


def test_every_problem_is_reported_at_once_and_the_message_lists_them():
    document = rules_document(
        rule_doc("a", cidrs=["10.0.0.1/8"], colour="red"),
        rule_doc("a", pool="nope", cidrs=["x"]),
    )
    with pytest.raises(RulesError) as caught:
        parse_rules(document, "rules.json")
    text = str(caught.value)
    assert text.startswith("5 problem(s) in rules from rules.json:")
    for fragment in (
        "rules[0].colour",
        "rules[0].cidrs[0]",
        "rules[1].name",
        "rules[1].pool",
        "rules[1].cidrs[0]",
    ):
        assert fragment in text


def test_invalid_json_reports_line_and_column():
    assert only_problem('{"version": 1,\n "rules": [}') == (
        "",
        None,
        "invalid JSON at line 2 column 12: Expecting value",
    )


# --- loading from app settings ---------------------------------------------------------------------


def test_load_rules_from_inline_setting():
    rules = load_rules({"POOLSYNC_RULES": json.dumps(rules_document(rule_doc()))})
    assert [r.name for r in rules.rules] == ["web"]
    assert rules.source == "app setting POOLSYNC_RULES"


def test_load_rules_from_file(tmp_path):
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(rules_document(rule_doc("from-file"))), encoding="utf-8")
    rules = load_rules({"POOLSYNC_RULES_FILE": str(path)})
    assert [r.name for r in rules.rules] == ["from-file"] and rules.source == str(path)


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "no rules configured: set POOLSYNC_RULES (inline JSON) or POOLSYNC_RULES_FILE"),
        ({"POOLSYNC_RULES": "  ", "POOLSYNC_RULES_FILE": ""}, "no rules configured"),
        ({"POOLSYNC_RULES": "{}", "POOLSYNC_RULES_FILE": "/x.json"}, "not both"),
        ({"POOLSYNC_RULES_FILE": "/nonexistent/poolsync-rules.json"}, "cannot read rules file"),
    ],
)
def test_load_rules_refuses_missing_or_ambiguous_settings(env, fragment):
    with pytest.raises(RulesError) as caught:
        load_rules(env)
    assert fragment in str(caught.value)


def test_published_schema_is_draft_2020_12_and_the_example_config_is_valid():
    schema = rules_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (
        schema["additionalProperties"] is False and schema["$defs"]["rule"]["additionalProperties"] is False
    )
    rules = load_rules({"POOLSYNC_RULES_FILE": str(REPO / "config" / "rules.example.json")})
    assert len(rules.rules) >= 2


# --- checks against Azure facts --------------------------------------------------------------------


def azure_facts(pool: PoolSnapshot | None = None, spaces=("10.0.0.0/16", "fd00:db8::/48")) -> AzureFacts:
    pool = pool or PoolSnapshot(pool_id(), 'W/"1"', (), lb_sku="Standard")
    return AzureFacts(vnet_address_spaces={vnet_id().lower(): list(spaces)}, pools={pool.id.lower(): pool})


def azure_problems(facts: AzureFacts, *rules) -> list[tuple[str, str]]:
    found = validate_against_azure(ruleset(*(rules or [rule_doc()])), facts)
    assert all(p.rule_name for p in found)
    return [(p.path, p.message) for p in found]


def test_matching_azure_facts_give_no_problems():
    assert azure_problems(azure_facts(), rule_doc(cidrs=["10.0.1.0/24", "fd00:db8:0:1::/64"])) == []


def test_facts_keyed_with_original_id_spelling_are_accepted():
    facts = azure_facts()
    facts = AzureFacts({vnet_id(): ["10.0.0.0/16"]}, {pool_id(): facts.pools[pool_id().lower()]})
    assert azure_problems(facts) == []


def test_cidr_outside_the_vnet_address_space():
    assert azure_problems(azure_facts(), rule_doc(cidrs=["10.0.1.0/24", "10.1.0.0/24", "fd00:db9::/64"])) == [
        (
            "rules[0].cidrs[1]",
            "10.1.0.0/24 is not within the virtual network's address space (10.0.0.0/16, fd00:db8::/48)",
        ),
        (
            "rules[0].cidrs[2]",
            "fd00:db9::/64 is not within the virtual network's address space (10.0.0.0/16, fd00:db8::/48)",
        ),
    ]


def test_missing_vnet_and_missing_pool():
    facts = AzureFacts(vnet_address_spaces={}, pools={})
    assert [path for path, _ in azure_problems(facts)] == ["rules[0].virtualNetwork", "rules[0].pool"]


def test_basic_sku_nic_members_pool_vnet_and_foreign_addresses_are_each_reported():
    pool = PoolSnapshot(
        pool_id(),
        'W/"1"',
        (PoolAddress("manual-1", "10.5.0.4", vnet_id("elsewhere")), PoolAddress("ok", "10.0.1.9", vnet_id())),
        nic_member_count=2,
        vnet_id=vnet_id("elsewhere"),
        lb_sku="Basic",
    )
    found = azure_problems(azure_facts(pool))
    messages = [message for _, message in found]
    assert len(found) == 4
    assert "Basic SKU" in messages[0]
    assert "2 NIC-based member(s)" in messages[1]
    assert found[2][0] == "rules[0].virtualNetwork" and "bound to virtual network" in messages[2]
    assert messages[3] == "the pool already has addresses in another virtual network: manual-1"


def test_pool_problems_are_reported_once_per_pool():
    pool = PoolSnapshot(pool_id(), 'W/"1"', (), lb_sku="Basic")
    found = azure_problems(
        azure_facts(pool), rule_doc("a", cidrs=["10.0.1.0/24"]), rule_doc("b", cidrs=["10.0.2.0/24"])
    )
    assert found == [
        ("rules[0].pool", "the load balancer is Basic SKU; IP-based backend pools need Standard")
    ]


@pytest.mark.parametrize("sync_mode", ["Automatic", "automatic"])
def test_a_pool_azure_syncs_automatically_is_a_rules_error_naming_rule_and_field(sync_mode):
    pool = PoolSnapshot(pool_id(), 'W/"1"', (), lb_sku="Standard", sync_mode=sync_mode)
    found = validate_against_azure(ruleset(rule_doc()), azure_facts(pool))
    assert len(found) == 1
    assert str(found[0]).startswith(
        f"rule 'web' (rules[0].pool): pool {pool_id()} has syncMode Automatic; "
        "poolsync can only manage Manual/unspecified pools"
    )


@pytest.mark.parametrize("sync_mode", ["Manual", None])
def test_manual_or_unspecified_sync_mode_is_fine(sync_mode):
    pool = PoolSnapshot(pool_id(), 'W/"1"', (), lb_sku="Standard", sync_mode=sync_mode)
    assert azure_problems(azure_facts(pool)) == []
