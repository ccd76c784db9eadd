"""Offline checks of infra/: every Bicep file parses, modules are wired correctly, and the properties
operators rely on (least privilege, event filtering, identity-only storage, Flex settings, tags) hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shared.core.arm_json import address_to_json
from shared.core.models import PoolAddress
from tests.infra.bicep_tree import (
    ACCESS_BICEP,
    INFRA_DIR,
    MAIN_BICEP,
    REPO_ROOT,
    all_resources,
    bicep_files,
    body,
    one_resource,
    parse,
    references,
    required_parameters,
    resolve,
    resources,
)

MODULES = INFRA_DIR / "modules"
PARAMETERS_FILE = INFRA_DIR / "main.parameters.json"
OPERATIONS_DOC = REPO_ROOT / "docs" / "operations.md"

# Resource types Azure Resource Manager does not let you tag.
UNTAGGABLE_TYPES = {
    "microsoft.authorization/roledefinitions",
    "microsoft.authorization/roleassignments",
    "microsoft.insights/diagnosticsettings",
    "microsoft.storage/storageaccounts/blobservices",
    "microsoft.storage/storageaccounts/blobservices/containers",
    "microsoft.storage/storageaccounts/queueservices/queues",
    "microsoft.web/sites/basicpublishingcredentialspolicies",
    "microsoft.eventgrid/systemtopics/eventsubscriptions",
    "microsoft.storage/storageaccounts/managementpolicies",
    "microsoft.web/sites/config",
    # Microsoft Graph (Entra ID) objects are not Azure resources; their `tags` are plain strings.
    "microsoft.graph/applications",
    "microsoft.graph/serviceprincipals",
    "microsoft.graph/approleassignedto",
}

# Newest API version of these types is still a preview one.
PREVIEW_ONLY_TYPES = {"microsoft.insights/diagnosticsettings"}


def role_actions(role_symbol: str) -> set[str]:
    tree = parse(MAIN_BICEP)
    role = body(tree["resources"][role_symbol])
    (permission,) = role["properties"]["permissions"]
    assert permission["notActions"] == []
    return set(resolve(tree, permission["actions"]))


def app_settings() -> dict[str, object]:
    site = body(one_resource(MODULES / "functionapp.bicep", "Microsoft.Web/sites"))
    return {item["name"]: item["value"] for item in site["properties"]["siteConfig"]["appSettings"]}


def event_subscription() -> dict:
    return body(
        one_resource(MODULES / "eventgrid.bicep", "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    )


# --- parsing and wiring ---------------------------------------------------------------------------


def test_infra_contains_main_and_modules():
    names = {path.relative_to(INFRA_DIR).as_posix() for path in bicep_files()}
    assert "main.bicep" in names
    assert {"modules/functionapp.bicep", "modules/eventgrid.bicep", "modules/storage.bicep"} <= names


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.relative_to(INFRA_DIR).as_posix())
def test_bicep_file_parses(path: Path):
    tree = parse(path)
    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares nothing"


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.relative_to(INFRA_DIR).as_posix())
def test_module_calls_pass_exactly_the_parameters_the_module_declares(path: Path):
    for symbol, module in parse(path).get("modules", {}).items():
        target = path.parent / module["detail"]["path"]
        assert target.exists(), f"{path.name}: module {symbol} points at missing {target}"
        declared = set(parse(target).get("parameters", {}))
        passed = set(body(module).get("params", {}))
        assert passed <= declared, f"{symbol}: unknown params {sorted(passed - declared)}"
        missing = required_parameters(parse(target)) - passed
        assert not missing, f"{symbol}: required params not passed {sorted(missing)}"


def test_parameters_file_sets_only_known_parameters_and_all_required_ones():
    parameters = json.loads(PARAMETERS_FILE.read_text())["parameters"]
    declared = set(parse(MAIN_BICEP)["parameters"])
    assert set(parameters) <= declared, sorted(set(parameters) - declared)
    assert required_parameters(parse(MAIN_BICEP)) <= set(parameters)


def test_every_taggable_resource_is_tagged():
    untagged = [
        f"{path.name}:{symbol}"
        for path, symbol, declaration in all_resources()
        if declaration["type"].lower() not in UNTAGGABLE_TYPES and "tags" not in body(declaration)
    ]
    assert untagged == []


def test_api_versions_are_stable_and_recent():
    for path, symbol, declaration in all_resources():
        version = declaration["api_version"]
        if declaration["type"].lower() in PREVIEW_ONLY_TYPES:
            continue
        assert "preview" not in version, f"{path.name}:{symbol} uses {version}"
        # Older versions lack properties used here (e.g. functionAppConfig, deadLetterWithResourceIdentity).
        if declaration["type"].lower() not in {
            "microsoft.insights/components",
            "microsoft.insights/metricalerts",
        }:
            assert version >= "2022-04-01", f"{path.name}:{symbol} uses old {version}"


# --- least privilege ------------------------------------------------------------------------------


def test_pool_writer_role_can_only_read_lbs_and_write_backend_pools():
    assert role_actions("poolWriterRole") == {
        "Microsoft.Network/loadBalancers/read",
        "Microsoft.Network/loadBalancers/backendAddressPools/read",
        "Microsoft.Network/loadBalancers/backendAddressPools/write",
        "Microsoft.Network/virtualNetworks/joinLoadBalancer/action",
        "Microsoft.Network/virtualNetworks/subnets/joinLoadBalancer/action",
        "Microsoft.Network/virtualNetworks/read",
    }


# The linked-access check Azure makes for each network reference a backend address can carry in a pool PUT.
JOIN_ACTION_PER_REFERENCE = {
    "virtualNetwork": "Microsoft.Network/virtualNetworks/joinLoadBalancer/action",
    "subnet": "Microsoft.Network/virtualNetworks/subnets/joinLoadBalancer/action",
}


def test_pool_writer_role_covers_every_network_reference_poolsync_writes():
    vnet = "/subscriptions/s/resourceGroups/net/providers/Microsoft.Network/virtualNetworks/v"
    written = [
        address_to_json(PoolAddress("by-vnet", "10.0.1.4", vnet)),
        address_to_json(PoolAddress("by-subnet", "10.0.1.5", None, vnet + "/subnets/app")),
    ]
    references_written = {key for entry in written for key in entry["properties"]
                          if key in {"virtualNetwork", "subnet"}}
    assert references_written == set(JOIN_ACTION_PER_REFERENCE)
    actions = role_actions("poolWriterRole")
    for reference in references_written:
        assert JOIN_ACTION_PER_REFERENCE[reference] in actions, reference


def test_custom_roles_have_no_wildcards_deletes_or_other_writes():
    allowed_non_reads = {
        "Microsoft.Network/loadBalancers/backendAddressPools/write",
        "Microsoft.Network/virtualNetworks/joinLoadBalancer/action",
        "Microsoft.Network/virtualNetworks/subnets/joinLoadBalancer/action",
    }
    for symbol in ("poolWriterRole", "inventoryReaderRole", "operationStatusRole"):
        for action in role_actions(symbol):
            assert "*" not in action, f"{symbol}: {action}"
            assert action.endswith("/read") or action in allowed_non_reads, f"{symbol}: {action}"


def test_pool_writer_role_is_assigned_per_load_balancer_and_per_vnet_only():
    tree = parse(MAIN_BICEP)
    # No direct assignment of the writer role in main.bicep (that would be subscription-wide).
    for symbol, declaration in tree["resources"].items():
        if declaration["type"] == "Microsoft.Authorization/roleAssignments":
            assert not references(body(declaration), "poolWriterRole"), symbol
    # main.bicep only hands the role to access.bicep (as an output); access.bicep assigns it.
    modules = tree["modules"].values()
    assert not any(references(body(module).get("params", {}), "poolWriterRole") for module in modules)
    access = parse(ACCESS_BICEP)
    writer_modules = {
        module["detail"]["path"]
        for module in access["modules"].values()
        if references(body(module).get("params", {}), "poolWriterRoleId")
    }
    assert writer_modules == {"modules/lb-role-assignment.bicep", "modules/vnet-role-assignment.bicep"}
    for module_file, scope_symbol in (
        ("lb-role-assignment.bicep", "loadBalancer"),
        ("vnet-role-assignment.bicep", "virtualNetwork"),
    ):
        assignment = one_resource(MODULES / module_file, "Microsoft.Authorization/roleAssignments")
        assert body(assignment)["scope"] == scope_symbol, f"{module_file} must scope to the {scope_symbol}"


def test_storage_roles_are_blob_owner_and_table_contributor_on_the_account_and_queue_roles_per_queue():
    storage = MODULES / "storage.bicep"
    tree = parse(storage)
    role_ids = {role["id"] for role in resolve(tree, "dataRoles")}
    assert role_ids == {
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",  # Storage Blob Data Owner
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",  # Storage Table Data Contributor
    }
    assignments = dict(resources(tree, "Microsoft.Authorization/roleAssignments"))
    assert body(assignments["dataRoleAssignments"])["scope"] == "account"
    # The audit_requests queue trigger: read and process its own queue, send to its poison queue; nothing
    # account-wide (Queue Data Contributor would let it create/delete any queue).
    assert {role["id"] for role in resolve(tree, "auditQueueRoles")} == {
        "19e7f393-937e-4f77-808e-94535e297925",  # Storage Queue Data Reader
        "8a0f0c08-91a1-4084-bc3d-661d67233fed",  # Storage Queue Data Message Processor
        "c6a89b2d-59bc-44d0-9896-0f6e12d7b80a",  # Storage Queue Data Message Sender
    }
    assert body(assignments["auditQueueRoleAssignments"])["scope"] == "auditQueue"
    assert body(assignments["poisonQueueSender"])["scope"] == "auditPoisonQueue"
    assert tree["parameters"]["auditQueueName"]["default"] == "poolsync-audit-requests"
    all_ids = json.dumps([body(a) for a in assignments.values()]) + json.dumps(tree["variables"])
    assert "974c5e8b-45b9-4653-ba55-5f855dd0fb88" not in all_ids  # no Storage Queue Data Contributor


def test_dead_letters_are_written_by_their_own_identity_with_access_to_their_container_only():
    storage = parse(MODULES / "storage.bicep")
    writer = body(dict(resources(storage, "Microsoft.Authorization/roleAssignments"))["deadLetterWriter"])
    assert writer["scope"] == "deadLetterContainer"
    assert writer["properties"]["principalId"] == "deadLetterPrincipalId"
    assert resolve(storage, "storageBlobDataContributorRoleId") == "ba92f5b4-2d11-453d-a403-e96b0029c9fe"
    main = parse(MAIN_BICEP)
    passed = body(main["modules"]["storage"])["params"]
    assert references(passed["deadLetterPrincipalId"], "deadLetterIdentity")
    assert references(passed["principalId"], "identity")
    # Event Grid (topic and dead-letter destination) only ever holds the dead-letter identity.
    settings = main["variables"]["eventGridSettings"]["value"]
    assert references(settings["deadLetterIdentityId"], "deadLetterIdentity")
    assert not references(settings, "identity")


# --- storage and Function App ---------------------------------------------------------------------


def test_storage_account_refuses_shared_keys_and_anonymous_access():
    account = body(one_resource(MODULES / "storage.bicep", "Microsoft.Storage/storageAccounts"))["properties"]
    assert account["allowSharedKeyAccess"] is False
    assert account["allowBlobPublicAccess"] is False
    assert account["minimumTlsVersion"] == "TLS1_2"


def test_function_app_is_flex_consumption_python_311_with_identity_based_package():
    functionapp = MODULES / "functionapp.bicep"
    plan = body(one_resource(functionapp, "Microsoft.Web/serverfarms"))
    assert plan["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    site = body(one_resource(functionapp, "Microsoft.Web/sites"))
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    assert config["deployment"]["storage"]["authentication"]["type"] == "UserAssignedIdentity"
    assert site["identity"]["type"] == "UserAssigned"
    assert site["properties"]["httpsOnly"] is True


def test_app_settings_use_identity_based_storage_and_every_poolsync_setting():
    settings = app_settings()
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert settings["AZURE_CLIENT_ID"] == "identityClientId"
    for name in (
        "AzureWebJobsStorage__accountName",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "POOLSYNC_MAX_REMOVE_FRACTION",
        "POOLSYNC_AUDIT_SCHEDULE",
        "POOLSYNC_AUDIT_REMEDIATE",
    ):
        assert name in settings, name
    # The rules source is POOLSYNC_RULES or POOLSYNC_RULES_FILE, picked by rulesSettingName.
    assert "rulesSettingName" in settings
    tree = parse(MODULES / "functionapp.bicep")
    choice = tree["variables"]["rulesSettingName"]["value"]["operator"]["operands"]
    assert {choice["true_value"], choice["false_value"]} == {"POOLSYNC_RULES_FILE", "POOLSYNC_RULES"}


def test_app_settings_contain_no_connection_string_or_flex_forbidden_setting():
    settings = app_settings()
    # Flex Consumption rejects these (the runtime comes from functionAppConfig); a plain AzureWebJobsStorage
    # would be a key-based connection string.
    for forbidden in (
        "AzureWebJobsStorage",
        "FUNCTIONS_WORKER_RUNTIME",
        "FUNCTIONS_EXTENSION_VERSION",
        "WEBSITE_RUN_FROM_PACKAGE",
        "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    ):
        assert forbidden not in settings, forbidden


# --- Event Grid -----------------------------------------------------------------------------------


def test_event_subscription_targets_the_eventgrid_function():
    destination = event_subscription()["properties"]["destination"]
    assert destination["endpointType"] == "AzureFunction"
    assert destination["properties"]["maxEventsPerBatch"] == 1
    function_name = parse(MODULES / "functionapp.bicep")["parameters"]["eventGridFunctionName"]["default"]
    assert function_name == "eventgrid_resource_events"


def test_event_subscriptions_take_their_filters_from_the_evaluated_table():
    # tests/infra/test_eventgrid_filter.py evaluates `eventSubscriptions`; the deployed resource must use it.
    subscription = event_subscription()
    assert references(subscription["properties"]["filter"], "eventSubscription")
    loop = one_resource(MODULES / "eventgrid.bicep", "Microsoft.EventGrid/systemTopics/eventSubscriptions")
    assert loop["config"]["loop_type"]["detail"]["array_name"] == "deployedSubscriptions"
    tree = parse(MODULES / "eventgrid.bicep")
    # pycep nests `settings.createEventSubscription ? a : b` as an accessor around the conditional.
    text = json.dumps(tree["variables"]["deployedSubscriptions"]["value"])
    choice = '"condition": "createEventSubscription", "true_value": "eventSubscriptions", "false_value": []'
    assert choice in text


def test_failed_deliveries_are_retried_then_dead_lettered_with_the_identity():
    properties = event_subscription()["properties"]
    assert set(properties["retryPolicy"]) == {"maxDeliveryAttempts", "eventTimeToLiveInMinutes"}
    dead_letter = properties["deadLetterWithResourceIdentity"]
    assert dead_letter["identity"]["type"] == "UserAssigned"
    assert dead_letter["deadLetterDestination"]["endpointType"] == "StorageBlob"
    assert "deadLetterDestination" not in properties  # no key-based dead-lettering
    topic = body(one_resource(MODULES / "eventgrid.bicep", "Microsoft.EventGrid/systemTopics"))
    assert topic["identity"]["type"] == "UserAssigned"  # the topic must hold the identity it dead-letters as
    assert "settings.deadLetterIdentityId" in json.dumps(topic["identity"])  # never the app identity


# --- alerts and docs ------------------------------------------------------------------------------


def test_every_alert_notifies_the_optional_action_group():
    alert_types = {"microsoft.insights/scheduledqueryrules", "microsoft.insights/metricalerts"}
    alerts = [(p, s, d) for p, s, d in all_resources() if d["type"].lower() in alert_types]
    assert len(alerts) >= 2
    for path, symbol, declaration in alerts:
        actions = body(declaration)["properties"]["actions"]
        tree = parse(path)
        wired = references(actions, "actionGroupId") or references(resolve(tree, actions), "actionGroupId")
        assert wired, f"{path.name}:{symbol} ignores actionGroupId"


def test_alerted_telemetry_events_are_documented():
    tree = parse(MODULES / "alerts.bicep")
    events = {rule["event"] for rule in resolve(tree, "occurrenceRules")} | {"poolsync.audit_completed"}
    assert {"poolsync.guard_refused", "poolsync.event_failed", "poolsync.audit_finding"} <= events
    doc = OPERATIONS_DOC.read_text()
    for event in events:
        assert f"`{event}`" in doc, f"{event} missing from docs/operations.md"


def test_permissions_table_in_docs_lists_every_custom_role_action():
    doc = OPERATIONS_DOC.read_text()
    for symbol in ("poolWriterRole", "inventoryReaderRole", "operationStatusRole"):
        for action in role_actions(symbol):
            assert f"`{action}`" in doc, f"{action} missing from docs/operations.md"


def test_azd_project_deploys_the_function_app_from_the_repo_root():
    project = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())
    api = project["services"]["api"]
    assert api["host"] == "function"
    assert api["language"] in {"python", "py"}
    assert (REPO_ROOT / api["project"] / "requirements.txt").exists()
    assert project["infra"]["path"] == "infra"
