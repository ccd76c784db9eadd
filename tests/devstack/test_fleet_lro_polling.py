"""The local tooling's VM writes never sit in Compute's Retry-After nor in the SDK's 30 s default: against the
emulator's `azure` profile (Compute's Retry-After as Azure sends it) the fleet creates and deletes a VM
through the real SDK polling at POOLSYNC_LRO_POLL_CAP. What the SDK waited is read from its own transport."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from azure.core.pipeline.transport import RequestsTransport

from devstack.fleet import Fleet
from emulator import Emulator
from shared.azure.clients import ArmSettings, compute_client, network_client
from tests.fixtures.arm import RESOURCE_GROUP, SUBSCRIPTION, ids, topology

SDK_DEFAULT_POLLING_INTERVAL = 30.0  # azure-mgmt-compute's and azure-mgmt-network's configuration default
CAP = 0.05


class RecordingTransport(RequestsTransport):
    """The SDK's own HTTP transport, noting each answer's Retry-After and each wait the poller asks for."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.answers: list[tuple[str, str, str | None]] = []  # (method, path, Retry-After)
        self.waits: list[float] = []

    def send(self, request: Any, **kwargs: Any) -> Any:
        response = super().send(request, **kwargs)
        path = request.url.split("?", 1)[0].split("/providers/", 1)[-1]
        self.answers.append((request.method, path, response.headers.get("Retry-After")))
        return response

    def sleep(self, duration: float) -> None:
        self.waits.append(duration)
        super().sleep(duration)


def recording_fleet(arm: Emulator, arm_settings: ArmSettings) -> tuple[Fleet, RecordingTransport]:
    # the SDK's default polling_interval: a wait of 30 s would show in the transport
    settings = replace(arm_settings, polling_interval=SDK_DEFAULT_POLLING_INTERVAL, lro_poll_cap=CAP)
    fleet = Fleet(settings, SUBSCRIPTION, RESOURCE_GROUP)
    transport = RecordingTransport(connection_verify=arm.ca_path)
    fleet.compute = compute_client(settings, SUBSCRIPTION, transport=transport)
    fleet.network = network_client(settings, SUBSCRIPTION, transport=transport)
    return fleet, transport


def compute_polls(transport: RecordingTransport, since: int) -> list[str | None]:
    return [retry_after for method, path, retry_after in transport.answers[since:]
            if method == "GET" and path.startswith("Microsoft.Compute/locations/")]


def test_a_vm_create_and_delete_poll_at_the_cap_whatever_compute_asks(arm, arm_settings):
    arm.set_profile("azure")
    arm.reset(topology())
    arm.operation_seconds = 0.4  # several polls at the cap before the operation ends
    fleet, transport = recording_fleet(arm, arm_settings)

    fleet.create_vm("web-9", ids.subnet(), {"poolsync": "true"})
    put = next(a for a in transport.answers if a[0] == "PUT" and a[1].startswith("Microsoft.Compute/"))
    assert put[2] == "10"  # Compute's answer to the PUT
    created_polls = compute_polls(transport, transport.answers.index(put))
    assert created_polls[0] == "50" and len(created_polls) >= 3  # it asked for 50 s; the tooling came back
    assert set(created_polls[1:]) == {None}  # later polls carry none: the SDK alone would wait 30 s

    mark = len(transport.answers)
    fleet.delete_vm("web-9")
    deleting = transport.answers[mark]
    assert deleting[0] == "DELETE" and deleting[2] == "10"
    deleted_polls = compute_polls(transport, mark)
    assert deleted_polls[0] == "30" and len(deleted_polls) >= 3

    assert transport.waits and max(transport.waits) <= CAP  # never Retry-After's 50/30 s, never 30 s
    assert arm.world.get_vm(ids.vm("web-9")) is None
