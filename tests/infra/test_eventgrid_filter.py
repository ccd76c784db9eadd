"""The deployed Event Grid filters, evaluated: every event shared.core.events turns into a hint is delivered,
and obvious noise (other resource types, failed operations, child resources, power actions) is not."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from shared.core.events import Ignored, ResourceHint, parse_event
from tests.infra.bicep_tree import INFRA_DIR, parse, resolve
from tests.infra.eventgrid_filter import delivered, filter_matches

EVENTGRID = INFRA_DIR / "modules" / "eventgrid.bicep"
SUB = "6b3a1c2e-0f4d-4e1a-9c8b-2d7e5f6a9b01"
RG = f"/subscriptions/{SUB}/resourceGroups/rg-web"
VM = f"{RG}/providers/Microsoft.Compute/virtualMachines/web-1"
NIC = f"{RG}/providers/Microsoft.Network/networkInterfaces/web-1-nic"
TAGS = "/providers/Microsoft.Resources/tags/default"
SCALE_SET = f"{RG}/providers/Microsoft.Compute/virtualMachineScaleSets/web"


def deployed_filters() -> list[dict[str, Any]]:
    tree = parse(EVENTGRID)
    filters = []
    for subscription in resolve(tree, "eventSubscriptions"):
        event_filter = dict(subscription["eventFilter"])
        event_filter["advancedFilters"] = [
            {**advanced, "values": resolve(tree, advanced["values"])}
            for advanced in event_filter["advancedFilters"]
        ]
        filters.append(event_filter)
    return filters


def event(kind: str, operation: str, subject: str, status: str = "Succeeded") -> dict[str, Any]:
    """An Azure subscription system-topic event in the Event Grid schema."""
    return {
        "id": f"{kind}-{operation}-{subject}",
        "topic": f"/subscriptions/{SUB}",
        "subject": subject,
        "eventType": f"Microsoft.Resources.{kind}",
        "eventTime": "2026-11-25T08:00:00Z",
        "data": {"operationName": operation, "status": status, "resourceUri": subject, "subscriptionId": SUB},
        "dataVersion": "2",
        "metadataVersion": "1",
    }


def spellings(subject: str) -> list[str]:
    # ARM is not consistent about casing in ids (resourcegroups vs resourceGroups, lower-cased providers).
    return [subject, subject.lower(), subject.replace("resourceGroups", "resourcegroups")]


HINTS = [
    *(event("ResourceWriteSuccess", "Microsoft.Compute/virtualMachines/write", s) for s in spellings(VM)),
    event("ResourceDeleteSuccess", "Microsoft.Compute/virtualMachines/delete", VM),
    *(event("ResourceWriteSuccess", "Microsoft.Network/networkInterfaces/write", s) for s in spellings(NIC)),
    event("ResourceDeleteSuccess", "Microsoft.Network/networkInterfaces/delete", NIC),
    event("ResourceWriteSuccess", "microsoft.network/networkinterfaces/write", NIC),
    # Tags API (portal, az tag): the tags extension resource of the VM or NIC is the subject.
    event("ResourceWriteSuccess", "Microsoft.Resources/tags/write", VM + TAGS),
    event("ResourceWriteSuccess", "Microsoft.Resources/tags/write", NIC + TAGS),
    event("ResourceDeleteSuccess", "Microsoft.Resources/tags/delete", VM + TAGS),
    event("ResourceDeleteSuccess", "Microsoft.Resources/tags/delete", NIC + TAGS),
    # A deleted resource group takes its VMs and NICs along; a move changes their ids.
    *(
        event("ResourceDeleteSuccess", "Microsoft.Resources/subscriptions/resourceGroups/delete", s)
        for s in spellings(RG)
    ),
    event(
        "ResourceActionSuccess", "Microsoft.Resources/subscriptions/resourceGroups/moveResources/action", RG
    ),
    # Scale sets: one event per request to ARM (the set's write, delete-instances, instance delete, reimage,
    # manual upgrade), none per instance.
    *(event("ResourceWriteSuccess", "Microsoft.Compute/virtualMachineScaleSets/write", s)
      for s in spellings(SCALE_SET)),
    event("ResourceDeleteSuccess", "Microsoft.Compute/virtualMachineScaleSets/delete", SCALE_SET),
    event("ResourceActionSuccess", "Microsoft.Compute/virtualMachineScaleSets/delete/action", SCALE_SET),
    event("ResourceActionSuccess", "Microsoft.Compute/virtualMachineScaleSets/manualUpgrade/action",
          SCALE_SET),
    event("ResourceActionSuccess", "Microsoft.Compute/virtualMachineScaleSets/reimage/action", SCALE_SET),
    event("ResourceDeleteSuccess", "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/delete",
          f"{SCALE_SET}/virtualMachines/3"),
    event("ResourceActionSuccess", "Microsoft.Compute/virtualMachineScaleSets/virtualMachines/reimage/action",
          f"{SCALE_SET}/virtualMachines/3"),
]

STORAGE = f"{RG}/providers/Microsoft.Storage/storageAccounts/stweb"
NOISE = [
    event("ResourceWriteSuccess", "Microsoft.Storage/storageAccounts/write", STORAGE),
    event("ResourceDeleteSuccess", "Microsoft.Storage/storageAccounts/delete", STORAGE),
    event("ResourceWriteSuccess", "Microsoft.Resources/tags/write", STORAGE + TAGS),
    event(
        "ResourceWriteSuccess",
        "Microsoft.Compute/virtualMachineScaleSets/extensions/write",
        f"{SCALE_SET}/extensions/health",
    ),
    event("ResourceActionSuccess", "Microsoft.Compute/virtualMachineScaleSets/restart/action", SCALE_SET),
    event(
        "ResourceWriteSuccess", "Microsoft.Compute/virtualMachines/extensions/write", f"{VM}/extensions/agent"
    ),
    event(
        "ResourceWriteSuccess",
        "Microsoft.Network/networkInterfaces/tapConfigurations/write",
        f"{NIC}/tapConfigurations/t",
    ),
    event("ResourceActionSuccess", "Microsoft.Compute/virtualMachines/start/action", VM),
    event("ResourceActionSuccess", "Microsoft.Compute/virtualMachines/deallocate/action", VM),
    event("ResourceWriteFailure", "Microsoft.Compute/virtualMachines/write", VM, status="Failed"),
    event("ResourceDeleteCancel", "Microsoft.Network/networkInterfaces/delete", NIC, status="Canceled"),
    event(
        "ResourceWriteSuccess",
        "Microsoft.Network/loadBalancers/write",
        f"{RG}/providers/Microsoft.Network/loadBalancers/lb",
    ),
    event(
        "ResourceWriteSuccess",
        "Microsoft.Network/publicIPAddresses/write",
        f"{RG}/providers/Microsoft.Network/publicIPAddresses/ip",
    ),
    event(
        "ResourceWriteSuccess",
        "Microsoft.Resources/deployments/write",
        f"{RG}/providers/Microsoft.Resources/deployments/d",
    ),
    event("ResourceWriteSuccess", "Microsoft.Resources/subscriptions/resourceGroups/write", RG),
    event(
        "ResourceWriteSuccess",
        "Microsoft.Authorization/roleAssignments/write",
        f"{RG}/providers/Microsoft.Authorization/roleAssignments/0b1c",
    ),
]


def label(sample: dict[str, Any]) -> str:
    kind = sample["eventType"].rpartition(".")[2]
    return f"{kind} {sample['data']['operationName']} {sample['subject'][-40:]}"


@pytest.mark.parametrize("sample", HINTS, ids=label)
def test_every_event_poolsync_acts_on_is_delivered(sample: dict[str, Any]) -> None:
    assert isinstance(parse_event(sample), ResourceHint), "the sample table is wrong: poolsync ignores it"
    assert delivered(deployed_filters(), sample)


@pytest.mark.parametrize("sample", NOISE, ids=label)
def test_noise_is_dropped_before_delivery(sample: dict[str, Any]) -> None:
    assert isinstance(parse_event(sample), Ignored), "the sample table is wrong: poolsync acts on it"
    assert not delivered(deployed_filters(), sample)


def test_the_samples_cover_every_kind_of_hint_the_code_produces() -> None:
    produced = {
        (hint.kind, hint.action) for hint in map(parse_event, HINTS) if isinstance(hint, ResourceHint)
    }
    assert produced == {
        ("vm", "write"),
        ("vm", "delete"),
        ("nic", "write"),
        ("nic", "delete"),
        ("resourceGroup", "delete"),
        ("resourceGroup", "action"),
        ("scaleSet", "write"),
        ("scaleSet", "delete"),
        ("scaleSet", "action"),
    }


def test_no_sample_combination_poolsync_acts_on_is_filtered_out() -> None:
    """Recombine the tables' event types, operations and subjects: whatever parse_event turns into a hint
    must reach it, so the filter can never be narrower than the code. Only realistic events are built: an
    operation keeps its own subject (it names the subject's type), and Azure reports a `.../write` operation
    as ResourceWrite*, `.../delete` as ResourceDelete*, `.../action` as ResourceAction*."""
    samples = HINTS + NOISE
    types = {s["eventType"].rpartition(".")[2] for s in samples}
    pairs = {(s["data"]["operationName"], s["subject"]) for s in samples}
    for kind, (operation, subject) in itertools.product(types, pairs):
        verb = operation.rpartition("/")[2].lower()
        if not kind.lower().startswith(f"resource{verb}"):
            continue
        sample = event(kind, operation, subject)
        if isinstance(parse_event(sample), ResourceHint):
            assert delivered(deployed_filters(), sample), label(sample)


# --- the evaluator itself follows Event Grid's documented semantics -----------------------------------


def test_evaluator_ands_filters_ors_values_and_ignores_case() -> None:
    event_filter = {
        "includedEventTypes": ["Microsoft.Resources.ResourceWriteSuccess"],
        "advancedFilters": [
            {"operatorType": "StringIn", "key": "data.operationName", "values": ["A/write", "B/write"]},
            {"operatorType": "StringContains", "key": "Subject", "values": ["/vms/"]},
        ],
    }
    hit = event("ResourceWriteSuccess", "b/WRITE", "/x/VMS/1")
    assert filter_matches(event_filter, hit)
    assert not filter_matches(event_filter, event("ResourceWriteSuccess", "C/write", "/x/vms/1"))
    assert not filter_matches(event_filter, event("ResourceWriteSuccess", "A/write", "/x/nics/1"))
    assert not filter_matches(event_filter, event("ResourceDeleteSuccess", "A/write", "/x/vms/1"))


def test_evaluator_not_operators_and_missing_keys() -> None:
    sample = event("ResourceWriteSuccess", "A/write", "/x/vms/1")
    not_contains = {"operatorType": "StringNotContains", "key": "subject", "values": ["/nics/", "/VMS/"]}
    assert not filter_matches({"advancedFilters": [not_contains]}, sample)
    missing = {"operatorType": "StringIn", "key": "data.nothing", "values": ["x"]}
    assert not filter_matches({"advancedFilters": [missing]}, sample)
    assert filter_matches({"advancedFilters": [{**missing, "operatorType": "StringNotIn"}]}, sample)
    assert filter_matches({"subjectBeginsWith": "/X/", "isSubjectCaseSensitive": False}, sample)
    assert not filter_matches({"subjectBeginsWith": "/X/", "isSubjectCaseSensitive": True}, sample)
    with pytest.raises(NotImplementedError):
        filter_matches(
            {"advancedFilters": [{"operatorType": "NumberIn", "key": "id", "values": [1]}]}, sample
        )
