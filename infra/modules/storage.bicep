// Host storage of the Function App, its Flex deployment package, the audit request queue and the Event Grid
// dead-letter container. Shared-key access is off: the Functions host (AzureWebJobsStorage__credential=
// managedidentity) and the Flex package download use the app's identity; Event Grid dead-letters with its own
// identity, which may write the dead-letter container and nothing else.

param name string
param location string
param tags object

@description('Principal id of the app identity (gets the data roles below on this account only).')
param principalId string

@description('Principal id of the identity Event Grid dead-letters as (Blob Data Contributor on the dead-letter container only).')
param deadLetterPrincipalId string

@description('Workspace the storage access logs go to.')
param logAnalyticsWorkspaceId string

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_GZRS'])
@description('Replication. LRS is enough: the account only holds the host state, the package and dead letters.')
param skuName string = 'Standard_LRS'

param deploymentContainerName string = 'app-package'
param deadLetterContainerName string = 'eventgrid-deadletter'

@description('Queue of the queue-triggered audit_requests function (identity-based connection).')
param auditQueueName string = 'poolsync-audit-requests'

@description('Container the audit writes its reports to (POOLSYNC_AUDIT_CONTAINER; the app creates it).')
param auditContainerName string = 'audit-reports'

@minValue(1)
@description('Days an audit report is kept; the lifecycle rule below deletes older ones.')
param auditReportRetentionDays int

// Built-in data roles of the app identity on the whole account, and why it needs each one.
var dataRoles = [
  {
    // Timer-trigger singleton locks are blob leases; host keys/state and the Flex package are blobs.
    // Owner (not Contributor) is what the Functions host documents for AzureWebJobsStorage.
    name: 'Storage Blob Data Owner'
    id: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  }
  {
    // poolsync's own state tables (azure-data-tables) on the same account.
    name: 'Storage Table Data Contributor'
    id: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  }
]

// The queue trigger of audit_requests, granted per queue instead of Queue Data Contributor on the account: it
// reads and deletes messages of its queue (Reader + Message Processor) and moves a message that failed
// maxDequeueCount times to "<queue>-poison" (Message Sender there). Message Sender on the queue itself is for
// poolsync enqueuing audit requests. Both queues are created here, so the host never needs to create a queue.
var poisonQueueName = '${auditQueueName}-poison'
var auditQueueRoles = [
  {
    name: 'Storage Queue Data Reader'
    id: '19e7f393-937e-4f77-808e-94535e297925'
  }
  {
    name: 'Storage Queue Data Message Processor'
    id: '8a0f0c08-91a1-4084-bc3d-661d67233fed'
  }
  {
    name: 'Storage Queue Data Message Sender'
    id: 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
  }
]
var queueMessageSenderRoleId = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'

// Event Grid needs to write blobs in the dead-letter container, nothing more.
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'

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

// A daily audit writes two blobs per run (audit-reports/YYYY/MM/DD/<run>.json|.html); without this rule they pile up
// forever. Only that container is matched: host state, the package and dead letters are never aged out here.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2025-01-01' = {
  parent: account
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'expire-audit-reports'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${auditContainerName}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: auditReportRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2025-01-01' existing = {
  parent: account
  name: 'default'
}

resource auditQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2025-01-01' = {
  parent: queueService
  name: auditQueueName
}

resource auditPoisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2025-01-01' = {
  parent: queueService
  name: poisonQueueName
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

resource auditQueueRoleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in auditQueueRoles: {
    name: guid(auditQueue.id, principalId, role.id)
    scope: auditQueue
    properties: {
      principalId: principalId
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.id)
      principalType: 'ServicePrincipal'
      description: 'poolsync: ${role.name} on the audit request queue only (audit_requests queue trigger).'
    }
  }
]

resource poisonQueueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(auditPoisonQueue.id, principalId, queueMessageSenderRoleId)
  scope: auditPoisonQueue
  properties: {
    principalId: principalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', queueMessageSenderRoleId)
    principalType: 'ServicePrincipal'
    description: 'poolsync: the queue trigger moves a message that keeps failing to the poison queue.'
  }
}

resource deadLetterWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(deadLetterContainer.id, deadLetterPrincipalId, storageBlobDataContributorRoleId)
  scope: deadLetterContainer
  properties: {
    principalId: deadLetterPrincipalId
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalType: 'ServicePrincipal'
    description: 'Event Grid writes poolsync dead letters here, as this identity, and nowhere else.'
  }
}

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
output auditQueueName string = auditQueue.name
