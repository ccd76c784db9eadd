// Azure Monitor workbook "poolsync operations": the telemetry lines of docs/operations.md ("Telemetry contract")
// as charts, over the app's Application Insights. The queries are the ones that page documents.

param location string
param tags object

@description('Application Insights the app logs to; the workbook queries its traces table.')
param appInsightsId string

param displayName string = 'poolsync operations'

// Same split as the alert rules: event name, then its JSON payload.
var poolsync = 'traces | where message startswith "poolsync." | extend event = tostring(split(message, " ")[0]) | extend payload = parse_json(substring(message, strlen(event) + 1))'

var panels = [
  {
    name: 'events'
    title: 'Resource events: applied / ignored / failed'
    query: '${poolsync} | where event in ("poolsync.event_applied", "poolsync.event_ignored", "poolsync.event_failed") | summarize count() by event, bin(timestamp, 5m)'
    visualization: 'timechart'
  }
  {
    name: 'guard-refusals'
    title: 'Guard refusals (each one is a removal waiting for a human)'
    query: '${poolsync} | where event == "poolsync.guard_refused" | project timestamp, pool = tostring(payload.pool), removes = toint(payload.removes), reason = tostring(payload.reason)'
    visualization: 'table'
  }
  {
    name: 'pool-writes'
    title: 'Pool writes by outcome'
    query: '${poolsync} | where event == "poolsync.pool_write" | summarize count() by outcome = tostring(payload.outcome), bin(timestamp, 5m)'
    visualization: 'timechart'
  }
  {
    name: 'retries'
    title: 'Retries by reason (throttled = ARM 429)'
    query: '${poolsync} | where event in ("poolsync.retry", "poolsync.retry_gave_up") | summarize count() by reason = strcat(event, " ", tostring(payload.reason)), bin(timestamp, 5m)'
    visualization: 'timechart'
  }
  {
    name: 'audit-findings'
    title: 'Audit findings by kind'
    query: '${poolsync} | where event == "poolsync.audit_finding" | summarize count() by kind = tostring(payload.kind), bin(timestamp, 1h)'
    visualization: 'barchart'
  }
  {
    name: 'audit-runs'
    title: 'Audit runs (the heartbeat alert fires after 26 h without one)'
    query: '${poolsync} | where event == "poolsync.audit_completed" | project timestamp, findings = toint(payload.findings), remediated = toint(payload.remediated), duration_ms = toint(payload.duration_ms)'
    visualization: 'table'
  }
  {
    name: 'http-failures'
    title: 'HTTP API failures by route and status'
    query: '${poolsync} | where event == "poolsync.http_failed" | summarize count() by route = tostring(payload.route), status = toint(payload.status), code = tostring(payload.code)'
    visualization: 'table'
  }
]

var titleItem = {
  type: 1
  name: 'title'
  content: {
    json: '## poolsync operations\nTelemetry lines are described in docs/operations.md (Telemetry contract).'
  }
}

var panelItems = [
  for panel in panels: {
    type: 3
    name: panel.name
    content: {
      version: 'KqlItem/1.0'
      title: panel.title
      query: panel.query
      queryType: 0
      resourceType: 'microsoft.insights/components'
      visualization: panel.visualization
      timeContext: {
        durationMs: 86400000
      }
      size: 0
    }
  }
]

var workbookContent = {
  version: 'Notebook/1.0'
  items: concat([titleItem], panelItems)
  fallbackResourceIds: [
    appInsightsId
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  // Workbook names must be GUIDs; stable per app so a re-provision updates it in place.
  name: guid(appInsightsId, 'poolsync-operations-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: displayName
    category: 'workbook'
    sourceId: appInsightsId
    serializedData: string(workbookContent)
  }
}

output id string = workbook.id
