// Log alerts on poolsync's telemetry in Application Insights. They rely on the telemetry contract in
// docs/operations.md: every poolsync telemetry record is a trace whose message is
// "poolsync.<event> <JSON object>", e.g. poolsync.guard_refused {"pool": "/subscriptions/...", "removes": 7}.

param namePrefix string
param location string
param tags object

@description('Application Insights the app logs to (the alerts query its traces table).')
param appInsightsId string

@description('Action group to notify; empty = no notification.')
param actionGroupId string

// Splits the message into the event name and its JSON payload. Shared by every rule below.
var poolsyncTraces = 'traces | where message startswith "poolsync." | extend poolsyncEvent = tostring(split(message, " ")[0]) | extend payload = parse_json(substring(message, strlen(poolsyncEvent) + 1))'

var rules = [
  {
    // The blast-radius guard refused a plan: something wants to remove more than POOLSYNC_MAX_REMOVE_FRACTION
    // of a pool (or empty it). Needs a human: a real mass deletion, or broken rules.
    name: 'guard-refused'
    displayName: 'poolsync: guard refused a pool change'
    severity: 2
    event: 'poolsync.guard_refused'
    splitBy: 'pool'
    frequency: 'PT5M'
    window: 'PT15M'
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
  }
]

resource logAlerts 'Microsoft.Insights/scheduledQueryRules@2023-12-01' = [
  for rule in rules: {
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
      autoMitigate: true
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
      actions: {
        actionGroups: empty(actionGroupId) ? [] : [
          actionGroupId
        ]
      }
    }
  }
]

output alertRuleIds array = [for (rule, i) in rules: logAlerts[i].id]
