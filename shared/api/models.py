"""The HTTP API's request and answer bodies as pydantic models: the one description of their shape, from
which shared/api/openapi.py generates the OpenAPI document's schemas (and tests check every answer).

Field docstrings become the schema's descriptions. `Strict` models refuse unknown fields (the API answers
400 UnknownField for those); `Open` ones document objects that may grow.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

NonNegative = Annotated[int, Field(ge=0)]
AdminState = Literal["None", "Up", "Down"]
PoolSource = Literal["rules", "manual"]
AuditState = Literal["queued", "running", "succeeded", "failed"]
AuditId = Annotated[str, Field(pattern="^[0-9a-f]{32}$")]
# Every error code the API answers with (tests/api/test_contract.py checks the code raises exactly these).
ERROR_CODES = (
    "AddressConflict", "AddressNotFound", "AmbiguousPool", "AuditNotFinished", "AuditNotFound",
    "AuthenticationNotConfigured", "AzureError", "AzureRejected", "AzureThrottled", "AzureUnavailable",
    "AzureUnreachable", "ConfigurationError", "ConflictsWithRule", "DuplicateInRequest", "Forbidden",
    "GuardRefused", "InternalError", "InvalidAddress", "InvalidAuditId", "InvalidBody", "InvalidField",
    "InvalidIpAddress", "InvalidJson", "InvalidOperationId", "InvalidQueryParameter", "InvalidResourceId",
    "IpOutsideVirtualNetwork", "ManualPoolNotReconciled", "MissingBody", "MissingField", "NicBasedPool",
    "NotFound", "OperationNotFound", "PayloadTooLarge", "PoolNotFound", "PoolNotManaged", "PoolWriteRejected",
    "ReportNotFound", "ReservedIpAddress", "StorageUnavailable", "SubscriptionNotConfigured",
    "Unauthenticated", "UnknownField", "UnsupportedLoadBalancerSku", "VirtualNetworkMismatch",
    "VirtualNetworkNotFound",
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


class Open(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)


# --- errors ----------------------------------------------------------------------------------------


class ErrorDetail(Strict):
    code: Annotated[str, Field(json_schema_extra={"enum": list(ERROR_CODES)})]
    """What went wrong, for programs: one of a fixed set"""
    message: str
    target: str | None
    """The field, parameter or header at fault"""


class Error(Open):
    """Every error. Some carry context next to `error`: `plan` (422 from a manual change, 409
    AddressConflict) or `dryRun`/`pools` (reconcile)."""

    error: ErrorDetail
    plan: Plan | None = None
    dryRun: bool | None = None
    pools: list[PoolOutcome] | None = None


# --- health and pools ------------------------------------------------------------------------------


class Health(Strict):
    status: Literal["ok", "unhealthy"]
    version: str
    configLoaded: bool
    azureReachable: bool
    managedPools: NonNegative
    detail: str | None = None
    """What is unhealthy: `configuration` or `azure:<reason>`"""
    checkAgeSeconds: Annotated[float, Field(ge=0)] | None = None
    """Age of the check this answer reports: one check per process serves every probe for cacheSeconds"""
    cacheSeconds: Annotated[float, Field(ge=1)] | None = None
    """POOLSYNC_HEALTH_CACHE_SECONDS: how long one check's result is reused"""


class LastReconcile(Open):
    """The last reconcile recorded for the pool"""

    at: AwareDatetime | None = None
    status: str | None = None
    source: str | None = None
    by: str | None = None
    """Who asked for it (the signed-in principal, or "function key"); null for poolsync's own runs"""
    summary: dict[str, Any] | None = None
    detail: str | None = None
    """Why the pool was not brought to the rules (failed, refused, rejected, conflict)"""


class PoolSummary(Strict):
    id: str
    href: str
    source: PoolSource
    """rules: reconciled by poolsync; manual: POOLSYNC_MANUAL_POOLS, changed only through this API"""
    rules: list[str]
    exists: bool
    sku: str | None
    memberCount: NonNegative
    managedCount: NonNegative
    unmanagedCount: NonNegative
    drainedCount: NonNegative
    nicMemberCount: NonNegative
    lastReconcile: LastReconcile | None
    """null: no reconcile recorded"""
    heldRemovals: NonNegative
    """Removals the guard held back in the last reconcile (still in the pool, intents deferred)"""
    windowRemovals: NonNegative | None
    """Unconfirmed removals applied within POOLSYNC_GUARD_WINDOW, counted by the guard (null: not known)"""


class PoolList(Strict):
    pools: list[PoolSummary]


class Owner(Open):
    """The VM NIC ipconfig holding the address's IP in its virtual network, if any"""

    vmId: str | None = None
    vmName: str | None = None
    nicId: str | None = None
    nicName: str | None = None
    ipConfiguration: str | None = None
    scaleSetId: str | None = None
    """The VM's scale set: a Uniform instance (vmId .../virtualMachineScaleSets/<set>/virtualMachines/<id>)
    or a Flexible set's VM"""


class Member(Strict):
    name: str
    ipAddress: str | None
    adminState: AdminState
    managed: bool
    """true: poolsync's own entry (psync-... name)"""
    virtualNetwork: str | None
    subnet: str | None
    rule: str | None
    """The rule of this pool whose CIDRs cover the IP"""
    owner: Owner | None


class PoolDetail(Strict):
    id: str
    source: PoolSource
    sku: str | None
    virtualNetwork: str | None
    etag: str | None
    nicMemberCount: NonNegative
    rules: list[str]
    members: list[Member]


# --- manual changes --------------------------------------------------------------------------------


class IdRef(Strict):
    id: str


ResourceRef = str | IdRef


class AddressInput(Strict):
    """One backend address. The az CLI config-file spellings (ip_address, ip-address, virtual_network,
    virtual-network, admin_state, admin-state) are accepted as aliases."""

    ipAddress: Annotated[str | None, Field(examples=["10.0.0.5"])] = None
    """IPv4 or IPv6 address inside the pool's virtual network"""
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,78}[A-Za-z0-9_])?$")] | None = None
    """Default: manual-<ip>. Names starting with psync- are reserved."""
    virtualNetwork: ResourceRef | None = None
    subnet: ResourceRef | None = None
    adminState: AdminState = "None"
    ip_address: str | None = None
    ip_address_dashed: Annotated[str | None, Field(alias="ip-address")] = None
    admin_state: str | None = None
    admin_state_dashed: Annotated[str | None, Field(alias="admin-state")] = None
    virtual_network: ResourceRef | None = None
    virtual_network_dashed: Annotated[ResourceRef | None, Field(alias="virtual-network")] = None


AddRequest = AddressInput | Annotated[list[AddressInput], Field(min_length=1, max_length=1000)]


class Conflict(Strict):
    name: str
    ipAddress: str | None
    reason: str


class PlanCounts(Open):
    add: NonNegative
    remove: NonNegative
    readdress: NonNegative
    admin: NonNegative
    unchanged: NonNegative
    unmanaged: NonNegative
    conflicts: NonNegative


class Plan(Strict):
    pool: str
    counts: PlanCounts
    diff: list[str]
    """+ add, - remove, ~ change, ! conflict"""
    conflicts: list[Conflict]


class OperationLink(Strict):
    id: str
    href: str
    status: str


class WriteResult(Strict):
    pool: str
    written: bool
    """The change is done in Azure (false: nothing to change, or wait=false and still in progress)"""
    accepted: bool
    """Azure accepted a change (with wait=false, follow `operation` until it is done)"""
    plan: Plan
    addresses: list[Member]
    warnings: list[str] | None = None
    operation: OperationLink | None = None


# --- reconcile, audit, operations ------------------------------------------------------------------


class ReconcileRequest(Strict):
    pool: str | Annotated[list[str], Field(min_length=1)]
    """Pools the rules name: an id, <load balancer>/<pool>, a unique <pool>, a list of those, or "all\""""
    dryRun: bool = False
    force: bool = False
    reason: Annotated[str, Field(max_length=500)] | None = None
    """Why the guard is overridden (required with force; logged)"""
    wait: bool = True


class PoolOutcome(Strict):
    pool: str
    status: Literal["unchanged", "planned", "written", "refused", "rejected", "failed"]
    plan: Plan | None
    detail: str
    operation: OperationLink | None = None


class ReconcileResult(Strict):
    dryRun: bool
    pools: list[PoolOutcome]


class AuditReport(Open):
    """The audit report, exactly as the timer writes it to audit-reports/YYYY/MM/DD/<run-id>.json; its
    full JSON Schema is shared/audit/report.schema.json in the repository."""

    schemaVersion: int
    kind: Literal["poolsync.audit"]
    runId: str
    summary: dict[str, Any]
    pools: list[Any]
    findings: list[dict[str, Any]]
    artifacts: dict[str, Any]


class AuditAccepted(Strict):
    id: AuditId
    status: AuditState
    href: str


class ReportRef(Open):
    """Where the report is stored once succeeded"""

    runId: str | None = None
    container: str | None = None
    json_blob: Annotated[str | None, Field(alias="json")] = None
    html: str | None = None
    error: str | None = None


class AuditError(Strict):
    code: str
    message: str


class AuditStatus(Strict):
    id: AuditId
    status: AuditState
    href: str
    requestedAt: AwareDatetime
    startedAt: AwareDatetime | None
    finishedAt: AwareDatetime | None
    attempts: NonNegative
    """How many times a worker started it (a retried delivery counts again)"""
    summary: dict[str, Any] | None
    """The report's summary once succeeded (see AuditReport)"""
    report: ReportRef | None
    error: AuditError | None


class OperationError(Open):
    code: str | None = None
    message: str | None = None


class OperationStatus(Strict):
    id: str
    status: str
    """InProgress, Succeeded, Failed or Canceled"""
    done: bool
    error: OperationError | None = None


class OpenApiDocument(Open):
    """This document"""


Error.model_rebuild()
