"""The azd hooks of azure.yaml: the rules check before packaging and the access deployment after provisioning.

Both scripts run as azd runs them (a subprocess with azd's environment); `az` is a stand-in on PATH that
records its arguments, since there is no Azure here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from shared.core.rules import RulesError, load_rules
from tests.infra.bicep_tree import MAIN_BICEP, REPO_ROOT

CHECK_RULES = REPO_ROOT / "infra" / "scripts" / "check_rules.py"
PROVISION_ACCESS = REPO_ROOT / "infra" / "scripts" / "provision_access.py"
CHECK_RESOURCE_GROUP = REPO_ROOT / "infra" / "scripts" / "check_resource_group.py"
EXAMPLE_RULES = REPO_ROOT / "config" / "rules.example.json"

sys.path.insert(0, str(CHECK_RULES.parent))
import check_rules  # noqa: E402


def run(script: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("POOLSYNC_", "AZURE_"))}
    return subprocess.run(
        [sys.executable, str(script), *args], env={**base, **env}, capture_output=True, text=True, timeout=120
    )


def project(tmp_path: Path, rules: str | None, funcignore: str = "tests/\n") -> Path:
    (tmp_path / "config").mkdir()
    if rules is not None:
        (tmp_path / "config" / "rules.json").write_text(rules)
    (tmp_path / ".funcignore").write_text(funcignore)
    return tmp_path


# --- prepackage: the rules file ---------------------------------------------------------------------


def test_valid_default_rules_file_passes(tmp_path: Path) -> None:
    root = project(tmp_path, EXAMPLE_RULES.read_text())
    done = run(CHECK_RULES, {}, "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert "config/rules.json" in done.stdout


def test_missing_rules_file_stops_the_deploy(tmp_path: Path) -> None:
    done = run(CHECK_RULES, {}, "--root", str(project(tmp_path, None)))
    assert done.returncode == 1
    assert "cannot read rules file" in done.stderr


def test_invalid_rules_stop_the_deploy_with_the_start_up_messages(tmp_path: Path) -> None:
    document = json.loads(EXAMPLE_RULES.read_text())
    document["rules"][0]["cidrs"] = ["10.0.1.7/24"]
    root = project(tmp_path, json.dumps(document))
    done = run(CHECK_RULES, {}, "--root", str(root))
    assert done.returncode == 1
    # Exactly what the app logs at start-up with POOLSYNC_RULES_FILE=config/rules.json in its package root.
    previous = Path.cwd()
    os.chdir(root)
    try:
        with pytest.raises(RulesError) as startup:
            load_rules({"POOLSYNC_RULES_FILE": "config/rules.json"})
    finally:
        os.chdir(previous)
    assert str(startup.value) in done.stderr
    assert "host bits set" in done.stderr


def test_a_rules_file_the_package_would_not_contain_stops_the_deploy(tmp_path: Path) -> None:
    root = project(tmp_path, EXAMPLE_RULES.read_text(), funcignore="config/\n")
    done = run(CHECK_RULES, {}, "--root", str(root))
    assert done.returncode == 1
    assert "excluded from the package by .funcignore" in done.stderr
    absolute = run(
        CHECK_RULES, {"POOLSYNC_RULES_FILE": str(root / "config" / "rules.json")}, "--root", str(root)
    )
    assert absolute.returncode == 1
    assert "must be relative" in absolute.stderr


def test_the_repository_funcignore_ships_the_default_rules_file() -> None:
    patterns = check_rules.funcignore_patterns(REPO_ROOT)
    assert not check_rules.is_ignored("config/rules.json", patterns)
    # ...while still leaving out what the package must not carry.
    for path in (
        "tests/infra/test_deploy_hooks.py",
        "infra/main.bicep",
        "local.settings.json",
        ".venv/bin/python",
    ):
        assert check_rules.is_ignored(path, patterns), path


def test_funcignore_matching_follows_gitignore_rules() -> None:
    patterns = ["config/", "!config/rules.json", "*.md", "docs"]
    assert check_rules.is_ignored("config/other.json", patterns)
    assert not check_rules.is_ignored("config/rules.json", patterns)
    assert check_rules.is_ignored("README.md", patterns) and check_rules.is_ignored("a/b/c.md", patterns)
    assert check_rules.is_ignored("docs/operations.md", patterns)
    assert not check_rules.is_ignored("shared/core/rules.py", patterns)


# --- postprovision: the access deployment -----------------------------------------------------------


def az_on_path(tmp_path: Path, body: str) -> dict[str, str]:
    """The environment of a hook whose `az` is a Python script: `args` holds its arguments, then `body`."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "az"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\nargs = sys.argv[1:]\n{body}")
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}


@pytest.fixture
def fake_az(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An `az` that records its arguments and the parameters file it was given; fails when told to."""
    record = tmp_path / "az-calls.json"
    return az_on_path(
        tmp_path,
        "params = args[args.index('--parameters') + 1].lstrip('@')\n"
        f"json.dump({{'args': args, 'parameters': json.load(open(params))}}, open({str(record)!r}, 'w'))\n"
        "sys.exit(int(os.environ.get('FAKE_AZ_EXIT', '0')))\n",
    ), record


ACCESS_PARAMETERS = {
    "principalId": "11111111-2222-3333-4444-555555555555",
    "poolWriterRoleId": "/subscriptions/s/providers/Microsoft.Authorization/roleDefinitions/w",
    "loadBalancerIds": "/subscriptions/s/resourceGroups/rg-net/providers/Microsoft.Network/loadBalancers/lb",
    "tags": {"app": "poolsync", "poolsync-env": "prod"},
}
AZD_ENV = {
    "AZURE_ENV_NAME": "prod",
    "AZURE_LOCATION": "westeurope",
    "AZURE_SUBSCRIPTION_ID": "s",
    "POOLSYNC_ACCESS_PARAMETERS": json.dumps(ACCESS_PARAMETERS),
}


def test_access_is_deployed_as_its_own_deployment_without_azd_tags(
    fake_az: tuple[dict[str, str], Path],
) -> None:
    path_env, record = fake_az
    done = run(PROVISION_ACCESS, {**path_env, **AZD_ENV})
    assert done.returncode == 0, done.stderr
    call = json.loads(record.read_text())
    args = call["args"]
    assert args[:3] == ["deployment", "sub", "create"]
    option = {args[i]: args[i + 1] for i in range(3, len(args) - 1) if args[i].startswith("--")}
    assert option["--name"] == "poolsync-access-prod"
    assert Path(option["--template-file"]) == REPO_ROOT / "infra" / "access.bicep"
    assert option["--location"] == "westeurope" and option["--subscription"] == "s"
    assert "--tags" not in args  # azd recognises its deployments by the azd-env-name tag
    assert call["parameters"]["parameters"] == {name: {"value": v} for name, v in ACCESS_PARAMETERS.items()}


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AZURE_ENV_NAME": "prod", "AZURE_LOCATION": "westeurope"}, "POOLSYNC_ACCESS_PARAMETERS is not set"),
        (
            {"AZURE_ENV_NAME": "prod", "AZURE_LOCATION": "westeurope", "POOLSYNC_ACCESS_PARAMETERS": "{"},
            "not JSON",
        ),
        ({"AZURE_LOCATION": "westeurope", "POOLSYNC_ACCESS_PARAMETERS": "{}"}, "AZURE_ENV_NAME"),
    ],
)
def test_missing_inputs_fail_the_hook_clearly(
    fake_az: tuple[dict[str, str], Path], env: dict[str, str], message: str
) -> None:
    path_env, record = fake_az
    done = run(PROVISION_ACCESS, {**path_env, **env})
    assert done.returncode == 1
    assert message in done.stderr
    assert not record.exists()  # az never ran


def test_a_failed_access_deployment_fails_the_hook(fake_az: tuple[dict[str, str], Path]) -> None:
    path_env, _ = fake_az
    assert run(PROVISION_ACCESS, {**path_env, **AZD_ENV, "FAKE_AZ_EXIT": "3"}).returncode == 3


# --- preprovision: the target resource group -----------------------------------------------------------


@pytest.fixture
def fake_az_groups(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An `az` answering `group exists` / `group show` from FAKE_AZ_GROUPS (name -> group JSON), or failing
    with FAKE_AZ_EXIT; it logs every call."""
    log = tmp_path / "az-calls.jsonl"
    return az_on_path(
        tmp_path,
        f"open({str(log)!r}, 'a').write(json.dumps(args) + '\\n')\n"
        "if os.environ.get('FAKE_AZ_EXIT'):\n"
        "    print('ERROR: AADSTS700082: the refresh token has expired', file=sys.stderr)\n"
        "    sys.exit(int(os.environ['FAKE_AZ_EXIT']))\n"
        "groups = json.loads(os.environ.get('FAKE_AZ_GROUPS', '{}'))\n"
        "name = args[args.index('--name') + 1]\n"
        "if args[:2] == ['group', 'exists']:\n"
        "    print(json.dumps(name in groups))\n"
        "elif args[:2] == ['group', 'show'] and name in groups:\n"
        "    print(json.dumps(groups[name]))\n"
        "else:\n"
        "    print(f'ERROR: (ResourceGroupNotFound) {name}', file=sys.stderr)\n"
        "    sys.exit(3)\n",
    ), log


def group(name: str, tags: dict[str, str]) -> dict[str, object]:
    return {"id": f"/subscriptions/s/resourceGroups/{name}", "name": name, "location": "westeurope",
            "tags": tags}


def check_group(fake: tuple[dict[str, str], Path], groups: dict[str, object], **env: str):
    path_env, _ = fake
    base = {"AZURE_ENV_NAME": "prod", "AZURE_SUBSCRIPTION_ID": "s", "FAKE_AZ_GROUPS": json.dumps(groups)}
    return run(CHECK_RESOURCE_GROUP, {**path_env, **base, **env})


def test_an_existing_group_this_environment_did_not_create_stops_the_provision(fake_az_groups) -> None:
    shared = {"rg-apps": group("rg-apps", {"team": "web"})}
    done = check_group(fake_az_groups, shared, AZURE_RESOURCE_GROUP="rg-apps")
    assert done.returncode == 1
    assert "rg-apps already exists and belongs to no azd environment" in done.stderr
    assert "`azd down` would then delete the whole group" in done.stderr
    assert "azd env set POOLSYNC_ALLOW_EXISTING_RESOURCE_GROUP true" in done.stderr
    calls = [json.loads(line) for line in fake_az_groups[1].read_text().splitlines()]
    assert all(call[call.index("--subscription") + 1] == "s" for call in calls)


def test_a_group_of_another_azd_environment_stops_the_provision(fake_az_groups) -> None:
    other = {"rg-poolsync-prod": group("rg-poolsync-prod", {"azd-env-name": "staging"})}
    done = check_group(fake_az_groups, other)  # no AZURE_RESOURCE_GROUP: the template's default name
    assert done.returncode == 1
    assert "rg-poolsync-prod already exists and belongs to azd environment 'staging'" in done.stderr


@pytest.mark.parametrize(
    ("groups", "env", "said"),
    [
        ({}, {"AZURE_RESOURCE_GROUP": "rg-new"}, "rg-new does not exist yet"),
        ({}, {}, "rg-poolsync-prod does not exist yet"),
        (
            {"rg-poolsync-prod": group("rg-poolsync-prod", {"azd-env-name": "prod"})},
            {},
            "created by azd environment prod",
        ),
        (
            {"rg-mine": group("rg-mine", {"azd-env-name": "prod", "app": "poolsync"})},
            {"AZURE_RESOURCE_GROUP": "rg-mine"},
            "rg-mine was created by azd environment prod",
        ),
    ],
)
def test_a_new_group_or_one_this_environment_created_passes(fake_az_groups, groups, env, said) -> None:
    done = check_group(fake_az_groups, groups, **env)
    assert done.returncode == 0, done.stderr
    assert said in done.stdout


def test_the_override_turns_the_refusal_into_a_warning(fake_az_groups) -> None:
    shared = {"rg-apps": group("rg-apps", {})}
    done = check_group(
        fake_az_groups, shared, AZURE_RESOURCE_GROUP="rg-apps", POOLSYNC_ALLOW_EXISTING_RESOURCE_GROUP="true"
    )
    assert done.returncode == 0
    assert "WARNING: resource group rg-apps already exists" in done.stderr


def test_a_group_that_cannot_be_checked_stops_the_provision(fake_az_groups) -> None:
    done = check_group(fake_az_groups, {}, AZURE_RESOURCE_GROUP="rg-apps", FAKE_AZ_EXIT="1")
    assert done.returncode == 1
    assert "cannot check the target resource group" in done.stderr and "AADSTS700082" in done.stderr


def test_the_hook_uses_the_template_default_group_name() -> None:
    # The hook must look at the group main.bicep deploys into when AZURE_RESOURCE_GROUP is empty.
    default = "empty(resourceGroupName) ? 'rg-poolsync-${environmentName}' : resourceGroupName"
    assert default in MAIN_BICEP.read_text()
    parameters = json.loads((REPO_ROOT / "infra" / "main.parameters.json").read_text())["parameters"]
    assert parameters["resourceGroupName"]["value"] == "${AZURE_RESOURCE_GROUP}"


# --- azure.yaml wires both ------------------------------------------------------------------------


def test_azure_yaml_runs_the_group_check_before_provisioning_rules_before_packaging_access_after() -> None:
    hooks = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())["hooks"]
    for hook, script in (
        ("prepackage", "infra/scripts/check_rules.py"),
        ("postprovision", "infra/scripts/provision_access.py"),
        ("preprovision", "infra/scripts/check_resource_group.py"),
    ):
        for platform in ("posix", "windows"):
            assert script in hooks[hook][platform]["run"], (hook, platform)
            assert hooks[hook][platform]["continueOnError"] is False, (hook, platform)
