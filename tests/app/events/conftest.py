"""An emulator world with two managed pools on one load balancer, a runtime for it, and the trigger."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient

from emulator import Emulator
from handlers.events import eventgrid_resource_events
from shared.app.flusher import event_service
from shared.app.runtime import Runtime, set_runtime
from shared.core.naming import HASH_LENGTH, address_name, is_managed_name
from tests.app.events.helpers import make_runtime, runtime_env
from tests.fixtures.arm import LB, LOCATION, POOL, RESOURCE_GROUP, SUBNET, SUBSCRIPTION, VNET, ids, topology

ALL_POOL = "pool-all"
OTHER_SUBNET = "other"
ELSEWHERE_VNET = "vnet-elsewhere"

# pool-app: tagged VMs in 10.0.0.0/24 (primary ipconfig); pool-all: every ipconfig in the whole VNet.
RULES = [
    {"name": "tagged", "pool": ids.pool(POOL), "virtualNetwork": ids.vnet(VNET), "cidrs": ["10.0.0.0/24"],
     "tags": {"poolsync": "true"}},
    {"name": "everything", "pool": ids.pool(ALL_POOL), "virtualNetwork": ids.vnet(VNET),
     "cidrs": ["10.0.0.0/16"], "ipConfigurations": "all"},
]

HANDLER = eventgrid_resource_events.build().get_user_function()


def world_topology() -> dict[str, Any]:
    return topology(
        [
            {"count": 3, "name": "web-{i}", "subnet": f"{VNET}/{SUBNET}", "tags": {"poolsync": "true"},
             "delete_option": "Delete"},
            {"name": "kept-1", "subnet": f"{VNET}/{SUBNET}", "tags": {"poolsync": "true"},
             "delete_option": "Detach"},
            {"name": "stranger-1", "subnet": f"{ELSEWHERE_VNET}/{SUBNET}", "tags": {"poolsync": "true"}},
        ],
        vnets=[
            {"name": VNET, "address_space": ["10.0.0.0/16"],
             "subnets": [{"name": SUBNET, "prefix": "10.0.0.0/24"},
                         {"name": OTHER_SUBNET, "prefix": "10.0.1.0/24"}]},
            {"name": ELSEWHERE_VNET, "address_space": ["10.50.0.0/16"],
             "subnets": [{"name": SUBNET, "prefix": "10.50.0.0/24"}]},
        ],
        lbs=[{"name": LB, "sku": "Standard", "pools": [{"name": POOL}, {"name": ALL_POOL}],
              "rules": [{"name": "http", "pool": POOL}]}],
    )


def create_vm(network: NetworkManagementClient, compute: ComputeManagementClient, name: str, *,
              vnet: str = VNET, tags: dict[str, str] | None = None, delete_option: str = "Delete") -> None:
    nic = network.network_interfaces.begin_create_or_update(RESOURCE_GROUP, f"{name}-nic", {
        "location": LOCATION,
        "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {
            "subnet": {"id": ids.subnet(vnet, SUBNET)}, "privateIPAllocationMethod": "Dynamic"}}]},
    }).result()
    compute.virtual_machines.begin_create_or_update(RESOURCE_GROUP, name, {
        "location": LOCATION,
        "tags": tags if tags is not None else {"poolsync": "true"},
        "properties": {
            "hardwareProfile": {"vmSize": "Standard_B1s"},
            "networkProfile": {"networkInterfaces": [
                {"id": nic.id, "properties": {"primary": True, "deleteOption": delete_option}}]},
        },
    }).result()


def member_key(name: str) -> str:
    """A managed name without its hash: the same for every incarnation of one NIC's ipconfig (the hash
    includes the NIC's resourceGuid, which the emulator picks), so tests can name members up front."""
    return name[: -(HASH_LENGTH + 1)] if is_managed_name(name) else name


def pool_key(nic: str, ipconfig: str = "ipconfig1") -> str:
    """The `Stack.pool` key of a NIC ipconfig's entry."""
    return member_key(address_name(ids.nic(nic), ipconfig))


class Stack:
    """The app as Event Grid sees it: deliver events to the trigger, then look at the emulator's pools."""

    def __init__(self, arm: Emulator, env: dict[str, str]) -> None:
        self.arm = arm
        self.env = env
        self.runtime: Runtime = make_runtime(env)
        set_runtime(self.runtime)
        self.service = event_service(self.runtime)

    def deliver(self, *events: dict[str, Any]) -> None:
        """Each event through the Functions worker's decoding and the trigger function, one by one; then
        the flush their request asks for (FlushFailed raised, to be seen), without the request's delay."""
        for event in events:
            delivered = meta.Datum(json.dumps(event), "json")
            HANDLER(EventGridEventInConverter.decode(delivered, trigger_metadata={}))
        self.service.flush(SUBSCRIPTION)

    def emitted(self) -> list[dict[str, Any]]:
        """Events the emulator published since the last call (after pending operations finished)."""
        assert self.arm.wait_operations_done(60)
        events = list(self.arm.events.published)
        self.arm.events.clear()
        return events

    def pool(self, pool: str = POOL) -> dict[str, str]:
        """Address name -> IP of a pool as the emulator holds it; managed names by `member_key`."""
        assert self.arm.wait_operations_done(60)
        raw = self.arm.world.get_pool(ids.pool(pool))
        entries = raw["properties"].get("loadBalancerBackendAddresses", [])
        members = {member_key(a["name"]): a["properties"].get("ipAddress") for a in entries}
        assert len(members) == len(entries), f"two entries for one ipconfig: {[a['name'] for a in entries]}"
        return members

    def pending_intents(self, subscription: str = SUBSCRIPTION) -> int:
        """Intents still waiting (due or deferred) for the subscription."""
        return len(self.service.intents.pending(subscription, due_only=False))

    def nic_ip(self, nic: str, ipconfig: int = 0) -> str:
        raw = self.arm.world.get_nic(ids.nic(nic))
        return raw["properties"]["ipConfigurations"][ipconfig]["properties"]["privateIPAddress"]


def facts(caplog: pytest.LogCaptureFixture, event: str) -> list[dict[str, Any]]:
    """The telemetry facts `poolsync.<event> {json}` captured so far (see shared/telemetry.py)."""
    return [json.loads(r.getMessage().split(" ", 1)[1]) for r in caplog.records
            if getattr(r, "poolsync_event", None) == event]


@pytest.fixture
def stack(arm: Emulator, storage_connection_string: str) -> Iterator[Stack]:
    """The world above, with both pools already in sync (as after the first audit)."""
    arm.reset(world_topology())
    built = Stack(arm, runtime_env(arm.url, arm.ca_path, storage_connection_string, RULES))
    outcomes = built.runtime.reconciler.reconcile()
    assert [o.status for o in outcomes] == ["written", "written"]
    built.emitted()
    arm.stats.reset()
    yield built
    set_runtime(None)
