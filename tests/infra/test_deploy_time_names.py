"""Resource and module names are known when a deployment starts (the Bicep compiler's BCP120).

No Bicep compiler runs in CI, so this walks every `name:` in infra/ (see tests/infra/deploy_time.py). The
snippet cases prove the check catches what the compiler rejects, including the subscription role assignments
main.bicep once named from `identity.outputs.principalId`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.infra.bicep_tree import INFRA_DIR, bicep_files, parse
from tests.infra.deploy_time import name_problems


@pytest.mark.parametrize("path", bicep_files(), ids=lambda path: path.relative_to(INFRA_DIR).as_posix())
def test_every_name_in_infra_is_known_when_the_deployment_starts(path: Path) -> None:
    assert name_problems(path) == []


SNIPPET_HEADER = """
targetScope = 'subscription'
param environmentName string
param principalIdParam string
var watched = []
var token = toLower(uniqueString(subscription().id, environmentName))
module identity 'modules/identity.bicep' = {
  name: 'poolsync-identity-${token}'
}
resource role 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'reader', environmentName)
}
resource account 'Microsoft.Storage/storageAccounts@2025-01-01' existing = {
  name: 'st${token}'
}
var fromModule = identity.outputs.principalId
var roles = [
  { id: role.id, principal: identity.outputs.principalId }
]
"""


def named(expression: str) -> str:
    return f"resource a 'T/x@2020-01-01' = {{\n  name: {expression}\n}}\n"


def names_of(tmp_path: Path, declaration: str) -> list[str]:
    path = tmp_path / f"snippet{abs(hash(declaration))}.bicep"
    path.write_text(SNIPPET_HEADER + declaration)
    parse.cache_clear()
    return name_problems(path)


# What main.bicep declared before the role assignments moved into modules/subscription-role-assignment.bicep.
OLD_MAIN_ASSIGNMENT = (
    "\nresource inventoryReaderOnSubscription 'Microsoft.Authorization/roleAssignments@2022-04-01'"
    " = if (empty(watched)) {"
) + """
  name: guid(subscription().id, identity.outputs.principalId, role.id)
  properties: {
    principalId: identity.outputs.principalId
    roleDefinitionId: role.id
  }
}
"""

REJECTED = {
    "module output (the old main.bicep)": OLD_MAIN_ASSIGNMENT,
    "module output in an interpolation": named("'ra-${identity.outputs.clientId}'"),
    "module output through a variable": named("guid(fromModule)"),
    "module output through a loop item": (
        "resource a 'T/x@2020-01-01' = [for r in roles: {\n  name: guid(r.id, r.principal)\n}]\n"
    ),
    "reference()": named("guid(reference(account.id).primaryEndpoints.blob)"),
    "listKeys() on a resource": named("guid(account.listKeys().keys[0].value)"),
    "listKeys() as a function": (
        named("guid(listKeys(account.id, '2025-01-01').keys[0].value)")
    ),
    "a runtime property": named("guid(account.properties.primaryEndpoints.blob)"),
    "a runtime property in an interpolation": (
        named("'x-${account.properties.creationTime}'")
    ),
    "a module named from a module output": (
        "module other 'modules/identity.bicep' = {\n  name: 'other-${identity.outputs.name}'\n}\n"
    ),
}


@pytest.mark.parametrize("declaration", REJECTED.values(), ids=list(REJECTED))
def test_names_computed_from_deployed_values_are_rejected(tmp_path: Path, declaration: str) -> None:
    problems = names_of(tmp_path, declaration)
    assert problems, "the check let through a name the Bicep compiler rejects (BCP120)"


ACCEPTED = {
    "parameters, variables and deployment functions": (
        named("guid(subscription().id, principalIdParam, token)")
    ),
    "id, name and type of a resource": (
        named("guid(account.id, account.name, role.type, role.id)")
    ),
    "an interpolation of parameters": named("'x-${environmentName}-${token}'"),
}


@pytest.mark.parametrize("declaration", ACCEPTED.values(), ids=list(ACCEPTED))
def test_names_known_at_start_pass(tmp_path: Path, declaration: str) -> None:
    assert names_of(tmp_path, declaration) == []


def test_the_old_main_bicep_assignment_is_reported_with_its_cause(tmp_path: Path) -> None:
    (problem,) = names_of(tmp_path, OLD_MAIN_ASSIGNMENT)
    assert "inventoryReaderOnSubscription" in problem
    assert "identity.outputs.principalId (a module output)" in problem


def test_a_graph_resources_unique_name_counts_as_its_name(tmp_path: Path) -> None:
    problems = names_of(tmp_path, (
        "resource app 'Microsoft.Graph/applications@v1.0' = {\n"
        "  uniqueName: 'api-${identity.outputs.principalId}'\n  displayName: 'x'\n}\n"))
    assert problems == ["snippet: resource app uniqueName uses identity.outputs.principalId (a module output)"
                        .replace("snippet", problems[0].split(":")[0])]
