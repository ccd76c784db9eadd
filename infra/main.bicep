// poolsync - everything the Function App needs, with least-privilege access to the load balancers it manages.
//
// Subscription scope because the custom roles, the subscription-wide assignments and the (default)
// subscription Event Grid system topic live there; the app's own resources go into one resource group.
//
// azd owns exactly what this template deploys: `azd down` deletes every resource group that appears in this
// deployment's outputResources. Nothing here may therefore be deployed into the customer's groups (load
// balancers, VNets, watched or event-source groups). What must live there - the role assignments on those
// scopes and resource-group system topics - is in access.bicep, deployed as a separate deployment by the
// postprovision hook (infra/scripts/provision_access.py), which azd neither lists nor deletes.
targetScope = 'subscription'

// ---------------------------------------------------------------------------------------------------------------
// Parameters
// ---------------------------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(40)
@description('Environment name (azd AZURE_ENV_NAME). Part of every resource name and of the custom role names.')
param environmentName string

@minLength(1)
@description('Region for the app resources. Must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
param location string

@description('Resource group for the app. Default: rg-poolsync-<environmentName>.')
param resourceGroupName string = ''

@description('Extra tags for every resource (azd-env-name and app=poolsync are always added).')
param tags object = {}

@minLength(1)
@description('Comma-separated resource ids of the load balancers poolsync may write (only these get the pool-writer role). Must be in this subscription.')
param loadBalancerIds string

@minLength(1)
@description('Comma-separated resource ids of the virtual networks the managed pools point at (joinLoadBalancer/action is granted there only). Must be in this subscription.')
param virtualNetworkIds string

@description('Comma-separated resource group names (this subscription) whose VMs/NICs poolsync may read. Empty = the whole subscription.')
param watchedResourceGroupNames string = ''

@description('Comma-separated resource group names whose events are delivered (one resource-group system topic each). Empty = one subscription-wide system topic.')
param eventSourceResourceGroupNames string = ''

@description('Create the Event Grid subscription. Event Grid checks that the function exists, so the first `azd up` provisions with false, deploys the code, then provisions again with true (the postdeploy hook in azure.yaml does this).')
param createEventSubscription bool = true

@description('Inline rules document (app setting POOLSYNC_RULES). Takes precedence over rulesFile.')
param rules string = ''

@description('Path of the rules file inside the deployed package (app setting POOLSYNC_RULES_FILE), used when rules is empty.')
param rulesFile string = 'config/rules.json'

@description('POOLSYNC_MAX_REMOVE_FRACTION: the largest share of a pool\'s managed addresses one change may remove without force.')
param maxRemoveFraction string = '0.5'

@description('POOLSYNC_AUDIT_SCHEDULE: NCRONTAB (6 fields, UTC) of the audit timer. Daily, like the app\'s own default; the heartbeat alert fires after 26 h without an audit.')
param auditSchedule string = '0 0 3 * * *'

@description('POOLSYNC_AUDIT_REMEDIATE: whether the audit fixes the drift it finds (false = report only).')
param auditRemediate bool = false

@minValue(1)
@maxValue(3650)
@description('Days an audit report (JSON + HTML in the audit-reports container) is kept before the storage lifecycle rule deletes it.')
param auditReportRetentionDays int = 90

@allowed([512, 2048, 4096])
@description('Memory of one Flex Consumption instance, MB.')
param instanceMemoryMB int = 2048

// Flex Consumption sizing: see the comment in modules/functionapp.bicep for the documented limits and defaults.
@minValue(1)
@maxValue(1000)
@description('Upper bound of Flex Consumption instances per scale group (platform: 1-1000, default 100). Intake is cheap and pool writes serialise per load balancer, so a few suffice.')
param maximumInstanceCount int = 10

@minValue(1)
@maxValue(1000)
@description('Concurrent HTTP requests one instance takes before another starts (perInstanceConcurrency of the HTTP group; the platform default for Python is 1).')
param httpPerInstanceConcurrency int = 8

@minValue(1)
@maxValue(30)
@description('Event Grid delivery attempts before an event is dead-lettered.')
param maxDeliveryAttempts int = 10

@minValue(1)
@maxValue(1440)
@description('Minutes Event Grid keeps retrying one event before it is dead-lettered.')
param eventTimeToLiveInMinutes int = 1440

@minValue(30)
@maxValue(730)
@description('Log Analytics retention, days.')
param logRetentionInDays int = 30

@description('Comma-separated object ids (users, groups, service principals such as a runbook\'s managed identity) given the PoolSync.Operator app role of the API.')
param apiOperatorPrincipalIds string = ''

@description('Comma-separated object ids given the PoolSync.Reader app role of the API.')
param apiReaderPrincipalIds string = ''

@description('Resource id of an existing action group the alerts notify. Empty = a poolsync action group e-mailing alertEmail.')
param actionGroupId string = ''

@description('E-mail address of the default action group (POOLSYNC_ALERT_EMAIL); required when actionGroupId is empty, so no alert is ever silent.')
param alertEmail string = ''

// ---------------------------------------------------------------------------------------------------------------
// Names and shared values
// ---------------------------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var allTags = union(tags, { 'azd-env-name': environmentName, app: 'poolsync' })
// Resources in the customer's groups (access.bicep) must not carry azd-env-name: azd treats what carries it as its own.
var accessTags = union(tags, { 'poolsync-env': environmentName, app: 'poolsync' })
var appResourceGroupName = empty(resourceGroupName) ? 'rg-poolsync-${environmentName}' : resourceGroupName
var functionAppName = 'func-poolsync-${resourceToken}'

var apiOperatorList = empty(apiOperatorPrincipalIds) ? [] : split(replace(apiOperatorPrincipalIds, ' ', ''), ',')
var apiReaderList = empty(apiReaderPrincipalIds) ? [] : split(replace(apiReaderPrincipalIds, ' ', ''), ',')
var watchedGroupList = empty(watchedResourceGroupNames) ? [] : split(replace(watchedResourceGroupNames, ' ', ''), ',')
var eventGroupList = empty(eventSourceResourceGroupNames) ? [] : split(replace(eventSourceResourceGroupNames, ' ', ''), ',')

// Custom roles. Every action is listed with the reason it is needed (docs/operations.md has the same table).
var poolWriterActions = [
  // GET the load balancer: SKU (IP-based pools need Standard) and the list of its pools.
  'Microsoft.Network/loadBalancers/read'
  // GET one backend pool: current addresses and its etag, the input of every plan.
  'Microsoft.Network/loadBalancers/backendAddressPools/read'
  // PUT the backend pool with the new loadBalancerBackendAddresses. Removing an address is also a PUT, so
  // backendAddressPools/delete is deliberately absent: poolsync never deletes a pool.
  'Microsoft.Network/loadBalancers/backendAddressPools/write'
  // Linked check on the virtual network each IP-based backend address names (evaluated at the VNet scope).
  'Microsoft.Network/virtualNetworks/joinLoadBalancer/action'
  // The same linked check when an address names a subnet instead (the add API accepts `subnet` references and
  // a written pool echoes existing ones): evaluated at the subnet, which inherits the assignment on its VNet.
  'Microsoft.Network/virtualNetworks/subnets/joinLoadBalancer/action'
  // GET the virtual network: address space to validate rule CIDRs against.
  'Microsoft.Network/virtualNetworks/read'
]
var inventoryReaderActions = [
  // List/GET VMs: tags, name, resource group and the NIC references rules match on.
  'Microsoft.Compute/virtualMachines/read'
  // List/GET NICs: private IPs, subnets and the VM back-reference of every ipconfig.
  'Microsoft.Network/networkInterfaces/read'
]
var operationStatusActions = [
  // Network writes are long-running: the SDK polls Azure-AsyncOperation / Location URLs, which live under
  // /subscriptions/<id>/providers/Microsoft.Network/locations/... and are authorised at subscription scope.
  'Microsoft.Network/locations/operations/read'
  'Microsoft.Network/locations/operationResults/read'
]

// ---------------------------------------------------------------------------------------------------------------
// Resource group and app resources
// ---------------------------------------------------------------------------------------------------------------

resource appResourceGroup 'Microsoft.Resources/resourceGroups@2024-11-01' = {
  name: appResourceGroupName
  location: location
  tags: allTags
}

module identity 'modules/identity.bicep' = {
  name: 'poolsync-identity'
  scope: appResourceGroup
  params: {
    name: 'id-poolsync-${resourceToken}'
    location: location
    tags: allTags
  }
}

// Event Grid dead-letters as this identity: it may write the dead-letter container and nothing else, so the
// topic never holds the app identity (which owns the host's blob containers, function keys included).
module deadLetterIdentity 'modules/identity.bicep' = {
  name: 'poolsync-deadletter-identity'
  scope: appResourceGroup
  params: {
    name: 'id-poolsync-deadletter-${resourceToken}'
    location: location
    tags: allTags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'poolsync-monitoring'
  scope: appResourceGroup
  params: {
    logAnalyticsName: 'log-poolsync-${resourceToken}'
    appInsightsName: 'appi-poolsync-${resourceToken}'
    location: location
    tags: allTags
    retentionInDays: logRetentionInDays
    principalId: identity.outputs.principalId
  }
}

module storage 'modules/storage.bicep' = {
  name: 'poolsync-storage'
  scope: appResourceGroup
  params: {
    name: take('stpoolsync${resourceToken}', 24)
    location: location
    tags: allTags
    principalId: identity.outputs.principalId
    deadLetterPrincipalId: deadLetterIdentity.outputs.principalId
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsWorkspaceId
    auditReportRetentionDays: auditReportRetentionDays
  }
}

// Who may call the runbook API: an Entra ID app registration with the reader and operator app roles.
module apiRegistration 'modules/api-app-registration.bicep' = {
  name: 'poolsync-api-registration'
  scope: appResourceGroup
  params: {
    uniqueName: 'poolsync-api-${environmentName}-${resourceToken}'
    displayName: 'poolsync API (${environmentName})'
    operatorPrincipalIds: apiOperatorList
    readerPrincipalIds: apiReaderList
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'poolsync-functionapp'
  scope: appResourceGroup
  params: {
    name: functionAppName
    planName: 'plan-poolsync-${resourceToken}'
    location: location
    tags: allTags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    appInsightsConnectionString: monitoring.outputs.appInsightsConnectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
    rules: rules
    rulesFile: rulesFile
    maxRemoveFraction: maxRemoveFraction
    auditSchedule: auditSchedule
    auditRemediate: auditRemediate
    apiClientId: apiRegistration.outputs.clientId
    apiIdentifierUri: apiRegistration.outputs.identifierUri
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Custom roles and their assignments (narrowest scopes that work)
// ---------------------------------------------------------------------------------------------------------------

resource poolWriterRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'poolsync-pool-writer', environmentName)
  properties: {
    roleName: 'poolsync pool writer (${environmentName}, ${resourceToken})'
    description: 'Read a load balancer and read/write its backend pools; join IP-based backend addresses to a VNet. Assigned per load balancer and per VNet.'
    type: 'CustomRole'
    permissions: [
      {
        actions: poolWriterActions
        notActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource inventoryReaderRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'poolsync-inventory-reader', environmentName)
  properties: {
    roleName: 'poolsync inventory reader (${environmentName}, ${resourceToken})'
    description: 'Read VMs and NICs, nothing else. Assigned on the watched resource groups or the subscription.'
    type: 'CustomRole'
    permissions: [
      {
        actions: inventoryReaderActions
        notActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

resource operationStatusRole 'Microsoft.Authorization/roleDefinitions@2022-04-01' = {
  name: guid(subscription().id, 'poolsync-operation-status', environmentName)
  properties: {
    roleName: 'poolsync network operation status reader (${environmentName}, ${resourceToken})'
    description: 'Poll the status of Microsoft.Network long-running operations. Assigned on the subscription.'
    type: 'CustomRole'
    permissions: [
      {
        actions: operationStatusActions
        notActions: []
      }
    ]
    assignableScopes: [
      subscription().id
    ]
  }
}

// The pool-writer role on each load balancer and VNet, and the inventory reader on each watched group, are
// assigned by access.bicep (those scopes are in the customer's resource groups; see the top of this file).

// Assignment names include the principal: after `azd down` the identity is new, and a name derived without it
// would collide with the orphaned assignment of the old principal (RoleAssignmentExists). The principal id is a
// module output, which a resource name here cannot use (BCP120), so the assignments are modules taking it as a
// parameter (tests/infra/test_deploy_time_names.py checks every name in infra/).
module inventoryReaderOnSubscription 'modules/subscription-role-assignment.bicep' = if (empty(watchedGroupList)) {
  name: 'poolsync-inventory-reader-subscription'
  params: {
    principalId: identity.outputs.principalId
    roleDefinitionId: inventoryReaderRole.id
    description: 'poolsync reads VMs and NICs in the whole subscription (no watched resource groups given).'
  }
}

module operationStatusOnSubscription 'modules/subscription-role-assignment.bicep' = {
  name: 'poolsync-operation-status-subscription'
  params: {
    principalId: identity.outputs.principalId
    roleDefinitionId: operationStatusRole.id
    description: 'poolsync polls the long-running pool writes it started.'
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Event Grid: resource events -> eventgrid_resource_events
// ---------------------------------------------------------------------------------------------------------------

var eventGridSettings = {
  functionResourceId: functionApp.outputs.eventGridFunctionId
  deadLetterIdentityId: deadLetterIdentity.outputs.id
  storageAccountId: storage.outputs.id
  deadLetterContainerName: storage.outputs.deadLetterContainerName
  createEventSubscription: createEventSubscription
  maxDeliveryAttempts: maxDeliveryAttempts
  eventTimeToLiveInMinutes: eventTimeToLiveInMinutes
  actionGroupId: effectiveActionGroupId
}

module subscriptionEvents 'modules/eventgrid.bicep' = if (empty(eventGroupList)) {
  name: 'poolsync-events-subscription'
  scope: appResourceGroup
  params: {
    topicName: 'evgt-poolsync-${resourceToken}'
    sourceKind: 'subscription'
    tags: allTags
    settings: eventGridSettings
  }
}

// Resource-group system topics live in the groups they listen to: access.bicep deploys them.

// ---------------------------------------------------------------------------------------------------------------
// Log alerts on poolsync's own telemetry
// ---------------------------------------------------------------------------------------------------------------

// Without an action group of the operator's own, alerts go to a poolsync one e-mailing alertEmail: a guard
// refusal (a removal left pending) or a stopped audit must reach a person.
module defaultActionGroup 'modules/actiongroup.bicep' = if (empty(actionGroupId)) {
  name: 'poolsync-action-group'
  scope: appResourceGroup
  params: {
    name: 'ag-poolsync-${resourceToken}'
    tags: allTags
    email: alertEmail
  }
}

var effectiveActionGroupId = empty(actionGroupId) ? defaultActionGroup.outputs.id : actionGroupId

module alerts 'modules/alerts.bicep' = {
  name: 'poolsync-alerts'
  scope: appResourceGroup
  params: {
    namePrefix: 'poolsync-${resourceToken}'
    location: location
    tags: allTags
    appInsightsId: monitoring.outputs.appInsightsId
    actionGroupId: effectiveActionGroupId
  }
}

module workbook 'modules/workbook.bicep' = {
  name: 'poolsync-workbook'
  scope: appResourceGroup
  params: {
    location: location
    tags: allTags
    appInsightsId: monitoring.outputs.appInsightsId
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment)
// ---------------------------------------------------------------------------------------------------------------

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = appResourceGroup.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output FUNCTION_APP_URL string = functionApp.outputs.url
output POOLSYNC_API_CLIENT_ID string = apiRegistration.outputs.clientId
output POOLSYNC_API_RESOURCE string = apiRegistration.outputs.identifierUri
output POOLSYNC_IDENTITY_NAME string = identity.outputs.name
output POOLSYNC_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output POOLSYNC_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output POOLSYNC_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output POOLSYNC_DEAD_LETTER_CONTAINER string = storage.outputs.deadLetterContainerName
output POOLSYNC_APP_INSIGHTS_NAME string = monitoring.outputs.appInsightsName
output POOLSYNC_POOL_WRITER_ROLE_ID string = poolWriterRole.id
output POOLSYNC_INVENTORY_READER_ROLE_ID string = inventoryReaderRole.id
output POOLSYNC_ACTION_GROUP string = effectiveActionGroupId
// Everything access.bicep needs, as one object: the postprovision hook passes it on as its parameters.
output POOLSYNC_ACCESS_PARAMETERS object = {
  principalId: identity.outputs.principalId
  poolWriterRoleId: poolWriterRole.id
  inventoryReaderRoleId: inventoryReaderRole.id
  loadBalancerIds: loadBalancerIds
  virtualNetworkIds: virtualNetworkIds
  watchedResourceGroupNames: watchedResourceGroupNames
  eventSourceResourceGroupNames: eventSourceResourceGroupNames
  topicName: 'evgt-poolsync-${resourceToken}'
  tags: accessTags
  eventGridSettings: eventGridSettings
}
