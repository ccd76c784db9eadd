// Host storage of the Function App, its Flex deployment package and the Event Grid dead-letter container.
// Shared-key access is off: the Functions host (AzureWebJobsStorage__credential=managedidentity), the Flex
// package download and Event Grid dead-lettering all authenticate with the app's user-assigned identity.

param name string
param location string
param tags object

@description('Principal id of the app identity (gets the data roles below on this account only).')
param principalId string

@description('Workspace the storage access logs go to.')
param logAnalyticsWorkspaceId string

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS'])
@description('Replication. LRS is enough: the account only holds the host state, the package and dead letters.')
param skuName string = 'Standard_LRS'

param deploymentContainerName string = 'app-package'
param deadLetterContainerName string = 'eventgrid-deadletter'

// Built-in data roles, and why the app needs each one on this account.
var dataRoles = [
  {
    // Timer-trigger singleton locks are blob leases; host keys/state and the Flex package are blobs;
    // Event Grid writes dead letters as blobs. Owner (not Contributor) is what the Functions host documents.
    name: 'Storage Blob Data Owner'
    id: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  }
  {
    // poolsync's own state tables (azure-data-tables) on the same account.
    name: 'Storage Table Data Contributor'
    id: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  }
  {
    // Queue triggers/bindings (and the blob trigger's internal queues) need it. The Event Grid, HTTP and timer
    // triggers do not: remove this entry if poolsync never adds a queue.
    name: 'Storage Queue Data Contributor'
    id: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  }
]

resource account 'Microsoft.Storage/storageAccounts@2025-01-01' = {
  // checkov:skip=CKV_AZURE_35: a Flex Consumption app without VNet integration reaches its host storage over the public endpoint; shared keys are disabled, so every request needs an Entra ID token with a data role.
  // checkov:skip=CKV_AZURE_59: same reason as CKV_AZURE_35 - the public endpoint is required without VNet integration; anonymous blob access and shared keys are both disabled.
  // checkov:skip=CKV_AZURE_206: the account holds only disposable host state, the re-deployable package and dead letters whose changes the audit also repairs; LRS by default, skuName allows ZRS/GRS.
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    allowCrossTenantReplication: false
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      // Flex Consumption without VNet integration reaches its storage over the public endpoint.
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2025-01-01' = {
  parent: account
  name: 'default'
  properties: {
    // Accidentally deleted dead letters or packages stay recoverable for a week.
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-01-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-01-01' = {
  parent: blobService
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2025-01-01' existing = {
  parent: account
  name: 'default'
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2025-01-01' existing = {
  parent: account
  name: 'default'
}

resource dataRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in dataRoles: {
    name: guid(account.id, principalId, role.id)
    scope: account
    properties: {
      principalId: principalId
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
      principalType: 'ServicePrincipal'
      description: 'poolsync: ${role.name} on its own storage account only.'
    }
  }
]

// Storage access logs, so reads/writes/deletes on the dead letters and host state can be audited.
var storageLogCategories = [
  {
    category: 'StorageRead'
    enabled: true
  }
  {
    category: 'StorageWrite'
    enabled: true
  }
  {
    category: 'StorageDelete'
    enabled: true
  }
]

resource blobLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'poolsync-blob-logs'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogCategories
  }
}

resource queueLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'poolsync-queue-logs'
  scope: queueService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogCategories
  }
}

resource tableLogs 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'poolsync-table-logs'
  scope: tableService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: storageLogCategories
  }
}

output id string = account.id
output name string = account.name
output deploymentContainerUrl string = '${account.properties.primaryEndpoints.blob}${deploymentContainerName}'
output deadLetterContainerName string = deadLetterContainerName
