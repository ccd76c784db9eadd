// Log alerts on poolsync's telemetry in Application Insights. They rely on the telemetry contract in
// docs/operations.md: every poolsync telemetry record is a trace whose message is
// "poolsync.<event> <JSON object>", e.g. poolsync.guard_refused {"pool": "/subscriptions/...", "removes": 7}.
// host.json keeps traces out of adaptive sampling, so a count here is every line that was logged.

param namePrefix string
param location string
param tags object

@description('Application Insights the app logs to (the alerts query its traces table).')
param appInsightsId string

@description('Action group every alert notifies (POOLSYNC_ACTION_GROUP_ID, or the default one of actiongroup.bicep).')
param actionGroupId string

@description('Hours without a poolsync.audit_completed line before the heartbeat alert fires (daily audit + slack).')
param auditHeartbeatHours int = 26

// Splits the message into the event name and its JSON payload. Shared by every rule below.
var poolsyncTraces = 'traces | where message startswith "poolsync." | extend poolsyncEvent = tostring(split(message, " ")[0]) | extend payload = parse_json(substring(message, strlen(poolsyncEvent) + 1))'

// Rules that fire when an event occurred, one alert per value of splitBy.
var occurrenceRules = [
  {
    // The blast-radius guard refused a plan: something wants to remove more than POOLSYNC_MAX_REMOVE_FRACTION
    // of a pool (or empty it). The refused change stays pending until a human decides, so the alert does not
    // resolve itself when the lines stop: it pages and stays fired until acknowledged.
    name: 'guard-refused'
    displayName: 'poolsync: guard refused a pool change'
    severity: 1
    event: 'poolsync.guard_refused'
    splitBy: 'pool'
    frequency: 'PT5M'
    window: 'PT15M'
    autoMitigate: false
  }
  {
    // Azure refused a pool write (e.g. LoadBalancerBackendAddressPoolSizeLimitExceeded: the rules select more
    // than the pool holds). Removals of gone VMs were written alone; the additions wait until a human changes
    // the rules named in the line, so the alert stays fired until acknowledged.
    name: 'pool-write-refused'
    displayName: 'poolsync: Azure refused a pool write'
    severity: 1
    event: 'poolsync.pool_write_refused'
    splitBy: 'pool'
    frequency: 'PT5M'
    window: 'PT15M'
    autoMitigate: false
  }
  {
    // A VM's add or move is blocked by another entry holding its IP and the round could not resolve it (an
    // unmanaged entry, or a managed one whose removal the guard holds): the pool is not what Azure says.
    name: 'pool-conflict'
    displayName: 'poolsync: an address is blocked by another pool entry'
    severity: 2
    event: 'poolsync.pool_conflict'
    splitBy: 'pool'
    frequency: 'PT15M'
    window: 'PT30M'
    autoMitigate: true
  }
  {
    // poolsync may not read an owner an event named (403): a VM in a resource group outside its role. If it
    // has entries in a managed pool (has_entries), they are left as they are and the intent waits.
    name: 'owner-unreadable'
    displayName: 'poolsync: read of a VM or NIC refused'
    severity: 3
    event: 'poolsync.owner_unreadable'
    splitBy: 'owner'
    frequency: 'PT15M'
    window: 'PT30M'
    autoMitigate: true
  }
  {
    // A full reconcile could not build a pool's member index rows: retried on a back-off by the event path.
    name: 'index-pool-unbuilt'
    displayName: 'poolsync: a pool could not be reconciled in full'
    severity: 2
    event: 'poolsync.index_pool_unbuilt'
    splitBy: 'pool'
    frequency: 'PT15M'
    window: 'PT30M'
    autoMitigate: true
  }
  {
    // An event handler gave up on an event (it raised; Event Grid will retry it, then dead-letter it).
    name: 'event-failed'
    displayName: 'poolsync: resource event failed'
    severity: 2
    event: 'poolsync.event_failed'
    splitBy: 'reason'
    frequency: 'PT5M'
    window: 'PT15M'
    autoMitigate: true
  }
  {
    // The audit found drift between the rules and the pools (missed event, manual edit, ...), per kind.
    name: 'audit-findings'
    displayName: 'poolsync: audit found drift'
    severity: 3
    event: 'poolsync.audit_finding'
    splitBy: 'kind'
    frequency: 'PT15M'
    window: 'PT30M'
    autoMitigate: true
  }
]

var actions = {
  actionGroups: [
    actionGroupId
  ]
}

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in occurrenceRules: {
    name: '${namePrefix}-${rule.name}'
    location: location
    tags: tags
    kind: 'LogAlert'
    properties: {
      displayName: rule.displayName
      description: '${rule.displayName}. Meaning and runbook: docs/operations.md.'
      severity: rule.severity
      enabled: true
      scopes: [
        appInsightsId
      ]
      evaluationFrequency: rule.frequency
      windowSize: rule.window
      autoMitigate: rule.autoMitigate
      criteria: {
        allOf: [
          {
            query: '${poolsyncTraces} | where poolsyncEvent == "${rule.event}" | extend ${rule.splitBy} = tostring(payload.${rule.splitBy})'
            timeAggregation: 'Count'
            dimensions: [
              {
                name: rule.splitBy
                operator: 'Include'
                values: [
                  '*'
                ]
              }
            ]
            operator: 'GreaterThan'
            threshold: 0
            failingPeriods: {
              numberOfEvaluationPeriods: 1
              minFailingPeriodsToAlert: 1
            }
          }
        ]
      }
      actions: actions
    }
  }
]

// Heartbeat: the audit is the safety net for lost events; if it stops running (timer disabled, app down,
// configuration broken) nothing else notices. Absence of a line is an empty result, which counts as 0.
resource auditHeartbeat 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = {
  name: '${namePrefix}-audit-heartbeat'
  location: location
  tags: tags
  kind: 'LogAlert'
  properties: {
    displayName: 'poolsync: audit did not run in ${auditHeartbeatHours} h'
    description: 'No poolsync.audit_completed line for ${auditHeartbeatHours} hours. Meaning and runbook: docs/operations.md.'
    severity: 2
    enabled: true
    scopes: [
      appInsightsId
    ]
    evaluationFrequency: 'PT1H'
    // The window must cover the heartbeat period; the query narrows it to exactly auditHeartbeatHours.
    windowSize: 'P2D'
    autoMitigate: true
    criteria: {
      allOf: [
        {
          query: '${poolsyncTraces} | where timestamp > ago(${auditHeartbeatHours}h) | where poolsyncEvent == "poolsync.audit_completed"'
          timeAggregation: 'Count'
          operator: 'LessThan'
          threshold: 1
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    actions: actions
  }
}

output alertRuleIds array = [for (rule, i) in occurrenceRules: logAlerts[i].id]
output heartbeatAlertId string = auditHeartbeat.id
