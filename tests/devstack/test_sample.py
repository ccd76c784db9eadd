"""The sample world `make run` and `make demo` start with: its rules load, fit what the topology holds in
Azure, and select the tagged VMs of each tier and nothing else."""

from __future__ import annotations

from devstack.settings import local_settings
from devstack.stack import SAMPLE_RULES, SAMPLE_TOPOLOGY
from emulator import Emulator
from shared.app.runtime import Runtime
from shared.azure.retry import RetryStats


def sample_runtime(arm: Emulator) -> Runtime:
    arm.reset(SAMPLE_TOPOLOGY)
    return Runtime.from_env(local_settings(arm.url, arm.ca_path, rules_path=SAMPLE_RULES),
                            retry_stats=RetryStats())


def test_sample_rules_fit_the_sample_topology(arm: Emulator) -> None:
    runtime = sample_runtime(arm)
    assert runtime.reconciler.validate_against_azure() == []
    pools = [pool.rsplit("/", 1)[-1] for pool in runtime.reconciler.managed_pool_ids()]
    assert pools == ["pool-web", "pool-api"]


def test_sample_rules_select_each_tier_and_leave_the_rest(arm: Emulator) -> None:
    runtime = sample_runtime(arm)
    inventory = runtime.reconciler.read_inventory()
    desired = runtime.reconciler.desired(inventory)
    vm_names = {pool.rsplit("/", 1)[-1]: sorted(label(a.vm_id) for a in wanted.values())
                for pool, wanted in desired.items()}
    # ss-web's Uniform instances by the set's tags; ss-api's Flexible VMs by the scale-set rule
    assert vm_names == {"pool-web": ["ss-web/0", "ss-web/1", "web-1", "web-2", "web-3"],
                        "pool-api": ["api-1", "api-2", "ss-api_*", "ss-api_*"]}


def label(vm_id: str) -> str:
    """A VM's name; a Uniform instance as set/instance; a Flexible instance's random suffix as *."""
    parts = vm_id.split("/")
    if "virtualMachineScaleSets" in parts:
        return f"{parts[-3]}/{parts[-1]}"
    return parts[-1].split("_", 1)[0] + "_*" if "_" in parts[-1] else parts[-1]
