"""How fast the membership engine evaluates generated inventories against generated rule sets.

Prints figures only (no pass/fail): `python -m bench.membership [--nics 10000,100000] [--rules 100,1000]`.
Data is generated with a fixed seed: VMs with 1-2 NICs and 1-2 ipconfigs spread over 20 virtual
networks, rules with /24 ranges (a third with a tag filter, some with name globs, every 25th a wide
/20 for its own pool so many addresses land in several pools).
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from typing import Any

from shared.core.cidr_index import MembershipIndex
from shared.core.membership import compute_membership
from shared.core.models import Inventory, IpConfiguration, NetworkInterface, VirtualMachine
from shared.core.rules import RuleSet, parse_rules

SEED = 20261125
SUB = "00000000-0000-0000-0000-00000000beef"
VNETS = 20
NET = f"/subscriptions/{SUB}/resourceGroups/rg-net/providers/Microsoft.Network"
COMPUTE = f"/subscriptions/{SUB}/resourceGroups/{{rg}}/providers/Microsoft.Compute"
ROLES = ("web", "api", "db")


def vnet_id(vnet: int) -> str:
    return f"{NET}/virtualNetworks/vnet{vnet}"


def generate_rules(count: int, rng: random.Random) -> dict[str, Any]:
    rules = []
    for index in range(count):
        vnet = index % VNETS
        rule: dict[str, Any] = {
            "name": f"rule-{index}",
            "virtualNetwork": vnet_id(vnet),
        }
        if index % 25 == 0:  # wide range, own pool: overlaps the /24 rules of other pools
            rule["pool"] = f"{NET}/loadBalancers/lb-wide/backendAddressPools/wide-{index}"
            rule["cidrs"] = [f"10.{vnet}.{(index // VNETS) % 16 * 16}.0/20"]
        else:
            rule["pool"] = f"{NET}/loadBalancers/lb{index % 10}/backendAddressPools/pool-{index % 200}"
            rule["cidrs"] = [f"10.{vnet}.{(index // VNETS) % 256}.0/24"]
        if index % 3 == 0:
            rule["tags"] = {"role": rng.choice(ROLES), "env": "*"}
        if index % 7 == 0:
            rule["vmNames"] = ["vm-1*", "vm-2*"]
        if index % 5 == 0:
            rule["ipConfigurations"] = "all"
        rules.append(rule)
    return {"version": 1, "rules": rules}


def generate_inventory(nic_count: int, rng: random.Random) -> tuple[Inventory, int]:
    inventory = Inventory()
    made = ipconfigs = vm_number = 0
    while made < nic_count:
        vm_number += 1
        rg = f"rg-app{vm_number % 50}"
        vm_id = f"{COMPUTE.format(rg=rg)}/virtualMachines/vm-{vm_number}"
        vnet = rng.randrange(VNETS)
        subnet = f"{vnet_id(vnet)}/subnets/s{rng.randrange(4)}"
        nic_ids = []
        for nic_number in range(min(1 + (rng.random() < 0.2), nic_count - made)):
            nic_id = f"{NET}/networkInterfaces/vm-{vm_number}-nic{nic_number}"
            configs = tuple(
                IpConfiguration(
                    nic_id,
                    f"ipconfig{position + 1}",
                    f"10.{vnet}.{rng.randrange(64)}.{rng.randrange(1, 255)}",
                    subnet,
                    position == 0,
                )
                for position in range(1 + (rng.random() < 0.1))
            )
            ipconfigs += len(configs)
            inventory.add_nic(
                NetworkInterface(
                    nic_id, f"vm-{vm_number}-nic{nic_number}", rg, vm_id, configs, nic_number == 0
                )
            )
            nic_ids.append(nic_id)
            made += 1
        tags = {"role": rng.choice(ROLES), "env": rng.choice(("prod", "dev"))}
        inventory.add_vm(VirtualMachine(vm_id, f"vm-{vm_number}", rg, tags, tuple(nic_ids)))
    return inventory, ipconfigs


def best_of(repeats: int, action: Callable[[], Any]) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = action()
        best = min(best, time.perf_counter() - started)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nics", default="10000,100000")
    parser.add_argument("--rules", default="100,1000")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    header = (
        f"{'NICs':>8} {'rules':>6} {'ipconfigs':>10} {'parse s':>8} {'index s':>8} "
        f"{'membership s':>13} {'desired':>9} {'ipconfigs/s':>12}"
    )
    print(header)
    print("-" * len(header))
    for nic_count in (int(n) for n in args.nics.split(",")):
        inventory, ipconfigs = generate_inventory(nic_count, random.Random(SEED))
        for rule_count in (int(n) for n in args.rules.split(",")):
            document = generate_rules(rule_count, random.Random(SEED))
            started = time.perf_counter()
            rules = parse_rules(document, "bench")
            parse_s = time.perf_counter() - started
            started = time.perf_counter()
            MembershipIndex(rules.rules)
            index_s = time.perf_counter() - started

            def evaluate(
                inventory: Inventory = inventory, rules: RuleSet = rules
            ) -> dict[str, dict[str, Any]]:
                return compute_membership(inventory, rules)

            evaluate()  # builds and caches the rule set's index, as the long-lived app does
            seconds, desired = best_of(args.repeats, evaluate)
            total = sum(len(addresses) for addresses in desired.values())
            print(
                f"{nic_count:>8} {rule_count:>6} {ipconfigs:>10} {parse_s:>8.3f} {index_s:>8.4f} "
                f"{seconds:>13.3f} {total:>9} {ipconfigs / seconds:>12,.0f}"
            )


if __name__ == "__main__":
    main()
