"""The runbook API as deployed: an Entra ID app registration whose app roles are the ones poolsync checks, and
App Service Authentication that rejects every request without a token for it except health and Event Grid."""

from __future__ import annotations

import json

from handlers import http_api
from shared.api import auth
from tests.infra.bicep_tree import INFRA_DIR, MAIN_BICEP, body, one_resource, parse, references, resolve

MODULES = INFRA_DIR / "modules"
REGISTRATION = MODULES / "api-app-registration.bicep"
FUNCTIONAPP = MODULES / "functionapp.bicep"


def auth_settings() -> dict:
    config = body(one_resource(FUNCTIONAPP, "Microsoft.Web/sites/config"))
    assert config["name"] == "authsettingsV2"
    return config["properties"]


def test_the_graph_extension_is_declared_and_pinned_to_the_ga_types() -> None:
    assert "microsoftGraphV1" in parse(REGISTRATION)["extensions"]
    config = json.loads((INFRA_DIR / "bicepconfig.json").read_text())
    assert config["extensions"]["microsoftGraphV1"] == \
        "br:mcr.microsoft.com/bicep/extensions/microsoftgraph/v1.0:1.0.0"


def test_the_app_roles_are_the_ones_the_code_checks_for_people_and_managed_identities() -> None:
    tree = parse(REGISTRATION)
    app = one_resource(REGISTRATION, "Microsoft.Graph/applications")
    roles_loop = body(app)["appRoles"]
    assert roles_loop["loop_type"]["detail"]["array_name"] == ["readerRole", "operatorRole"]
    values = {resolve(tree, name)["value"] for name in ("readerRole", "operatorRole")}
    assert values == {auth.READER, auth.OPERATOR}
    assert roles_loop["config"]["allowedMemberTypes"] == ["User", "Application"]
    assert roles_loop["config"]["isEnabled"] is True
    assignments = {symbol: body(d) for symbol, d in tree["resources"].items()
                   if d["type"] == "Microsoft.Graph/appRoleAssignedTo"}
    assert references(assignments["operators"]["appRoleId"], "operatorRole")
    assert references(assignments["readers"]["appRoleId"], "readerRole")


def test_only_assigned_principals_get_tokens_and_the_azure_cli_may_ask_for_one() -> None:
    tree = parse(REGISTRATION)
    principal = body(one_resource(REGISTRATION, "Microsoft.Graph/servicePrincipals"))
    assert principal["appRoleAssignmentRequired"] is True
    api = body(one_resource(REGISTRATION, "Microsoft.Graph/applications"))["api"]
    assert api["requestedAccessTokenVersion"] == 2
    (pre_authorized,) = api["preAuthorizedApplications"]
    assert resolve(tree, pre_authorized["appId"]) == "04b07795-8ddb-461a-bbee-02f9e1bf7b46"  # Azure CLI
    app = body(one_resource(REGISTRATION, "Microsoft.Graph/applications"))
    assert app["signInAudience"] == "AzureADMyOrg"
    assert tree["variables"]["identifierUri"]["value"].startswith("api://${tenant().tenantId}/")


def test_unauthenticated_requests_are_rejected_except_health_and_the_event_grid_webhook() -> None:
    settings = auth_settings()
    assert settings["platform"]["enabled"] is True
    validation = settings["globalValidation"]
    assert validation["requireAuthentication"] is True
    assert validation["unauthenticatedClientAction"] == "Return401"
    assert validation["excludedPaths"] == ["/api/health", "/runtime/webhooks/eventgrid"]
    assert settings["httpSettings"]["requireHttps"] is True
    assert settings["login"]["tokenStore"]["enabled"] is False


def test_the_excluded_api_path_is_the_anonymous_health_route_and_nothing_else() -> None:
    """An excluded path reaches the code without a token: it must be a route that needs none."""
    import azure.functions as func

    app = func.FunctionApp()
    app.register_functions(http_api.bp)
    triggers = [f.get_trigger().get_dict_repr() for f in app.get_functions()]
    anonymous = {"/api/" + t["route"] for t in triggers
                 if str(getattr(t["authLevel"], "value", t["authLevel"])).lower() == "anonymous"}
    api_paths = [p for p in auth_settings()["globalValidation"]["excludedPaths"] if p.startswith("/api/")]
    assert set(api_paths) == anonymous == {"/api/health"}  # (key mode: every other route takes a key)


def test_tokens_must_be_issued_for_the_registration_by_this_tenant() -> None:
    aad = auth_settings()["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True
    assert aad["registration"]["clientId"] == "apiClientId"
    assert aad["registration"]["openIdIssuer"] == \
        "${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0"
    assert aad["validation"]["allowedAudiences"] == ["apiClientId", "apiIdentifierUri"]
    passed = body(parse(MAIN_BICEP)["modules"]["functionApp"])["params"]
    assert references(passed["apiClientId"], "apiRegistration")
    assert references(passed["apiIdentifierUri"], "apiRegistration")


def test_the_app_runs_in_entra_mode() -> None:
    site = body(one_resource(FUNCTIONAPP, "Microsoft.Web/sites"))
    settings = {item["name"]: item["value"] for item in site["properties"]["siteConfig"]["appSettings"]}
    assert settings["POOLSYNC_API_AUTH"] == "entra"
    assert auth.entra_mode(settings)


def test_role_holders_come_from_azd_settings() -> None:
    parameters = json.loads((INFRA_DIR / "main.parameters.json").read_text())["parameters"]
    assert parameters["apiOperatorPrincipalIds"]["value"] == "${POOLSYNC_API_OPERATORS}"
    assert parameters["apiReaderPrincipalIds"]["value"] == "${POOLSYNC_API_READERS}"
    passed = body(parse(MAIN_BICEP)["modules"]["apiRegistration"])["params"]
    assert passed["operatorPrincipalIds"] == "apiOperatorList"
    assert passed["readerPrincipalIds"] == "apiReaderList"
