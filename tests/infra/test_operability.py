"""What operating poolsync in Azure relies on: azd owns only the app's resource group, role assignments
survive a down/up cycle, alerts see every line they count, and the workbook, heartbeat and default action
group exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tests.infra.bicep_tree import (
    ACCESS_BICEP,
    INFRA_DIR,
    MAIN_BICEP,
    REPO_ROOT,
    all_resources,
    body,
    parse,
    references,
    resolve,
    resources,
)

MODULES = INFRA_DIR / "modules"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"


def module_files(path: Path) -> set[Path]:
    """A template and every module it deploys, recursively."""
    found = {path}
    for module in parse(path).get("modules", {}).values():
        found |= module_files((path.parent / module["detail"]["path"]).resolve())
    return found


# --- azd down deletes only what azd owns ----------------------------------------------------------


def test_azd_deployment_puts_nothing_into_any_resource_group_but_the_apps_own() -> None:
    """azd down deletes every resource group that appears in its deployment's outputResources."""
    tree = parse(MAIN_BICEP)
    for symbol, module in tree["modules"].items():
        if "scope" not in body(module):  # deployed at main's own (subscription) scope: role assignments only
            target = parse(MAIN_BICEP.parent / module["detail"]["path"])
            assert target["globals"]["scope"]["value"] == "subscription", symbol
            types = {d["type"] for _, d in resources(target)}
            assert types == {"Microsoft.Authorization/roleAssignments"}, symbol
            continue
        assert body(module)["scope"] == "appResourceGroup", f"main.bicep module {symbol} leaves the app group"
    for symbol, declaration in tree["resources"].items():
        assert "scope" not in body(declaration), f"main.bicep resource {symbol} is scoped elsewhere"
        assert declaration["type"].lower() in {
            "microsoft.resources/resourcegroups",
            "microsoft.authorization/roledefinitions",
            "microsoft.authorization/roleassignments",
        }, symbol
    # Inside the app group, no module may reach out to another group either.
    for path in module_files(MAIN_BICEP) - {MAIN_BICEP}:
        for symbol, module in parse(path).get("modules", {}).items():
            assert "scope" not in body(module), f"{path.name}:{symbol}"


def test_everything_in_customer_groups_is_the_separate_access_deployment_without_azd_tags() -> None:
    access = parse(ACCESS_BICEP)
    targets = {module["detail"]["path"] for module in access["modules"].values()}
    assert targets == {
        "modules/lb-role-assignment.bicep",
        "modules/vnet-role-assignment.bicep",
        "modules/rg-role-assignment.bicep",
        "modules/eventgrid.bicep",
    }
    assert "modules/eventgrid.bicep" not in {
        m["detail"]["path"]
        for m in parse(MAIN_BICEP)["modules"].values()
        if body(m).get("scope") != "appResourceGroup"
    }
    # The topics there are tagged from accessTags, which must not carry azd-env-name.
    outputs = parse(MAIN_BICEP)["outputs"]["POOLSYNC_ACCESS_PARAMETERS"]["value"]
    assert outputs["tags"] == "accessTags"
    access_tags = json.dumps(parse(MAIN_BICEP)["variables"]["accessTags"]["value"])
    assert "azd-env-name" not in access_tags
    # Every parameter access.bicep needs comes from main.bicep's output object.
    required = {name for name, p in access["parameters"].items() if p.get("default") is None}
    assert required <= set(outputs)


def test_role_assignment_names_include_the_principal_so_a_new_identity_never_collides() -> None:
    """After azd down the identity is recreated with a new principal id; a name without it would meet the
    orphaned assignment of the old principal and fail with RoleAssignmentExists."""
    assignments = list(all_resources("Microsoft.Authorization/roleAssignments"))
    assert len(assignments) >= 8
    for path, symbol, declaration in assignments:
        name = body(declaration)["name"]
        assert name["function"]["type"] == "guid", f"{path.name}:{symbol}"
        arguments = list(name["function"]["parameters"].values())
        principals = [a for a in arguments if "rincipalId" in json.dumps(a)]
        assert principals, f"{path.name}:{symbol}: name lacks the principal id"
        assert len([a for a in arguments if a is not None]) >= 3, (
            f"{path.name}:{symbol}: scope, principal, role"
        )


# --- sampling never hides an alerted line ---------------------------------------------------------

TABLE_TYPES = {
    "traces": "Trace",
    "requests": "Request",
    "dependencies": "Dependency",
    "exceptions": "Exception",
    "customEvents": "Event",
    "pageViews": "PageView",
}


def expand(tree: dict[str, Any], query: str) -> str:
    """Fill in `${name}` from the file's variables, or a parameter's default."""

    def value(name: str) -> str:
        parameter = tree.get("parameters", {}).get(name)
        return str(parameter["default"] if parameter else resolve(tree, name))

    return re.sub(r"\$\{(\w+)\}", lambda m: value(m.group(1)), query)


def alert_and_workbook_queries() -> list[str]:
    queries = []
    for path in (MODULES / "alerts.bicep", MODULES / "workbook.bicep"):
        tree = parse(path)
        text = json.dumps(tree)
        raw = re.findall(r'"query": "((?:[^"\\]|\\.)*)"', text)
        queries += [expand(tree, json.loads(f'"{q}"')) for q in raw]
    doc = OPERATIONS_DOC.read_text()
    queries += re.findall(r"let poolsync = (\w+)", doc)
    return queries


def test_every_table_the_alerts_workbook_and_docs_query_is_excluded_from_sampling() -> None:
    sampling = json.loads((REPO_ROOT / "host.json").read_text())["logging"]["applicationInsights"][
        "samplingSettings"
    ]
    queries = alert_and_workbook_queries()
    assert len(queries) >= 10
    tables = {query.split("|")[0].split()[0] for query in queries}
    assert tables, "no queries found"
    if not sampling.get("isEnabled", True):
        return
    excluded = set(filter(None, sampling.get("excludedTypes", "").split(";")))
    for table in tables:
        assert TABLE_TYPES[table] in excluded, f"{table} is sampled: an alert on it would undercount"


# --- alerts, workbook and action group --------------------------------------------------------------


def test_heartbeat_alert_fires_when_the_audit_did_not_complete_for_26_hours() -> None:
    tree = parse(MODULES / "alerts.bicep")
    rule = body(dict(resources(tree, "Microsoft.Insights/scheduledQueryRules"))["auditHeartbeat"])[
        "properties"
    ]
    [criterion] = rule["criteria"]["allOf"]
    query = expand(tree, criterion["query"])
    assert (
        '"poolsync.audit_completed"' in query
        and f"ago({tree['parameters']['auditHeartbeatHours']['default']}h)" in query
    )
    assert tree["parameters"]["auditHeartbeatHours"]["default"] == 26
    assert (criterion["operator"], criterion["threshold"], criterion["timeAggregation"]) == (
        "LessThan",
        1,
        "Count",
    )
    assert rule["windowSize"] == "P2D"  # at least the 26 h the query looks back
    assert references(rule["actions"], "actions") or references(
        resolve(tree, rule["actions"]), "actionGroupId"
    )


def test_a_guard_refusal_pages_and_stays_open_until_someone_acts() -> None:
    tree = parse(MODULES / "alerts.bicep")
    [guard] = [rule for rule in resolve(tree, "occurrenceRules") if rule["event"] == "poolsync.guard_refused"]
    assert guard["autoMitigate"] is False  # the refused removal stays pending; so must the alert
    assert guard["severity"] <= 1
    loop = body(dict(resources(tree, "Microsoft.Insights/scheduledQueryRules"))["logAlerts"])
    assert references(loop["properties"]["autoMitigate"], "rule")


def test_alerts_use_the_default_action_group_unless_one_is_given() -> None:
    main = parse(MAIN_BICEP)
    default = main["modules"]["defaultActionGroup"]
    assert "empty" in json.dumps(default["config"]["condition"]) and references(
        default["config"]["condition"], "actionGroupId"
    )
    choice = json.dumps(main["variables"]["effectiveActionGroupId"]["value"])
    assert "defaultActionGroup" in choice and "actionGroupId" in choice
    assert references(body(main["modules"]["alerts"])["params"]["actionGroupId"], "effectiveActionGroupId")
    assert references(
        main["variables"]["eventGridSettings"]["value"]["actionGroupId"], "effectiveActionGroupId"
    )
    group = parse(MODULES / "actiongroup.bicep")
    receivers = body(dict(resources(group, "Microsoft.Insights/actionGroups"))["actionGroup"])["properties"]
    assert receivers["emailReceivers"][0]["emailAddress"] == "email"
    assert {"type": "min_length", "argument": 3} in group["parameters"]["email"]["decorators"]
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    assert parameters["alertEmail"]["value"] == "${POOLSYNC_ALERT_EMAIL}"


def test_workbook_charts_every_measure_the_operations_guide_lists() -> None:
    tree = parse(MODULES / "workbook.bicep")
    queries = " ".join(panel["query"] for panel in resolve(tree, "panels"))
    for event in (
        "event_applied",
        "event_ignored",
        "event_failed",
        "guard_refused",
        "pool_write",
        "retry",
        "audit_finding",
        "audit_completed",
        "http_failed",
    ):
        assert f'"poolsync.{event}"' in queries, event
        assert f"`poolsync.{event}`" in OPERATIONS_DOC.read_text(), event
    workbook = body(dict(resources(tree, "Microsoft.Insights/workbooks"))["workbook"])
    assert workbook["properties"]["serializedData"]["function"]["type"] == "string"
    assert "workbook" in {
        m["detail"]["path"].split("/")[-1].removesuffix(".bicep")
        for m in parse(MAIN_BICEP)["modules"].values()
    }


# --- Function App resources -------------------------------------------------------------------------


def test_function_app_has_no_diagnostic_settings_and_publishing_policies_have_a_location() -> None:
    functionapp = parse(MODULES / "functionapp.bicep")
    # Flex Consumption does not support diagnostic settings on the site: the deployment would fail.
    assert not list(resources(functionapp, "Microsoft.Insights/diagnosticSettings"))
    policies = list(resources(functionapp, "Microsoft.Web/sites/basicPublishingCredentialsPolicies"))
    assert len(policies) == 2
    for symbol, declaration in policies:
        assert body(declaration)["location"] == "location", symbol
        assert body(declaration)["properties"]["allow"] is False
