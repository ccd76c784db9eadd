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
from tests.infra.bicep_tree import REPO_ROOT

CHECK_RULES = REPO_ROOT / "infra" / "scripts" / "check_rules.py"
PROVISION_ACCESS = REPO_ROOT / "infra" / "scripts" / "provision_access.py"
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


@pytest.fixture
def fake_az(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An `az` that records its arguments and the parameters file it was given; fails when told to."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "az-calls.json"
    script = bin_dir / "az"
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "args = sys.argv[1:]\n"
        "params = args[args.index('--parameters') + 1].lstrip('@')\n"
        f"json.dump({{'args': args, 'parameters': json.load(open(params))}}, open({str(record)!r}, 'w'))\n"
        "sys.exit(int(os.environ.get('FAKE_AZ_EXIT', '0')))\n"
    )
    script.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}, record


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


# --- azure.yaml wires both ------------------------------------------------------------------------


def test_azure_yaml_runs_the_rules_check_before_packaging_and_access_after_provisioning() -> None:
    hooks = yaml.safe_load((REPO_ROOT / "azure.yaml").read_text())["hooks"]
    for hook, script in (
        ("prepackage", "infra/scripts/check_rules.py"),
        ("postprovision", "infra/scripts/provision_access.py"),
    ):
        for platform in ("posix", "windows"):
            assert script in hooks[hook][platform]["run"], (hook, platform)
            assert hooks[hook][platform]["continueOnError"] is False, (hook, platform)
