// Event Grid system topic (Azure subscription, or one resource group) -> eventgrid_resource_events.
// Deployed into the app's resource group for the subscription topic, or into the watched resource group
// itself for a resource-group topic. Azure allows ONE system topic per source: see docs/operations.md.

@description('System topic name.')
param topicName string

@allowed(['subscription', 'resourceGroup'])
@description('Which Azure Resource Manager events the topic carries: the whole subscription or this resource group.')
param sourceKind string

param tags object

@description('Shared settings from main.bicep: functionResourceId, deadLetterIdentityId, storageAccountId, deadLetterContainerName, createEventSubscription, maxDeliveryAttempts, eventTimeToLiveInMinutes, actionGroupId.')
param settings object

var isSubscriptionTopic = sourceKind == 'subscription'

// Separate subscriptions because advanced filters are ANDed: one AND-chain cannot say "a VM/NIC operation on a VM/NIC
// subject, OR a resource-group delete/move" without also letting every tag write on every resource through.
// tests/infra/test_eventgrid_filter.py evaluates both filters against the events shared/core/events.py turns into hints.

// Operations that can change which IPs belong in a pool. Tag edits made through the Tags API (portal, az tag)
// arrive as Microsoft.Resources/tags/write|delete on "<vm or nic id>/providers/Microsoft.Resources/tags/default".
// VM power actions (start/deallocate) do not release a NIC's private IP, so they are not needed.
var vmNicOperations = [
  'Microsoft.Compute/virtualMachines/write'
  'Microsoft.Compute/virtualMachines/delete'
  'Microsoft.Network/networkInterfaces/write'
  'Microsoft.Network/networkInterfaces/delete'
  'Microsoft.Resources/tags/write'
  'Microsoft.Resources/tags/delete'
]

// The subject is the resource id; the trailing slash keeps virtualMachineScaleSets out.
var vmNicSubjects = [
  '/providers/Microsoft.Compute/virtualMachines/'
  '/providers/Microsoft.Network/networkInterfaces/'
]

// Scale sets: instances are created and deleted inside the Compute RP, so ARM emits one event per request made
// to it - the set's write (capacity, model), delete-instances, an instance delete, reimage, manual upgrade - with
// the set or a Uniform instance (".../virtualMachineScaleSets/<ss>/virtualMachines/<n>") as subject.
var scaleSetOperations = [
  'Microsoft.Compute/virtualMachineScaleSets/write'
  'Microsoft.Compute/virtualMachineScaleSets/delete'
  'Microsoft.Compute/virtualMachineScaleSets/delete/action'
  'Microsoft.Compute/virtualMachineScaleSets/reimage/action'
  'Microsoft.Compute/virtualMachineScaleSets/reimageAll/action'
  'Microsoft.Compute/virtualMachineScaleSets/manualUpgrade/action'
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/delete'
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/reimage/action'
  'Microsoft.Compute/virtualMachineScaleSets/virtualMachines/reimageAll/action'
]

// A deleted resource group takes its VMs and NICs with it (no per-resource delete event is guaranteed), and a
// move changes resource ids; the subject of both is the resource group itself.
var resourceGroupOperations = [
  'Microsoft.Resources/subscriptions/resourceGroups/delete'
  'Microsoft.Resources/subscriptions/resourceGroups/moveResources/action'
]

var eventSubscriptions = [
  {
    name: 'poolsync-vm-nic-changes'
    eventFilter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
        'Microsoft.Resources.ResourceDeleteSuccess'
      ]
      isSubjectCaseSensitive: false
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: vmNicOperations
        }
        {
          operatorType: 'StringContains'
          key: 'subject'
          values: vmNicSubjects
        }
      ]
    }
  }
  {
    name: 'poolsync-scale-set-changes'
    eventFilter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceWriteSuccess'
        'Microsoft.Resources.ResourceDeleteSuccess'
        'Microsoft.Resources.ResourceActionSuccess'
      ]
      isSubjectCaseSensitive: false
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: scaleSetOperations
        }
      ]
    }
  }
  {
    name: 'poolsync-group-changes'
    eventFilter: {
      includedEventTypes: [
        'Microsoft.Resources.ResourceDeleteSuccess'
        'Microsoft.Resources.ResourceActionSuccess'
      ]
      isSubjectCaseSensitive: false
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.operationName'
          values: resourceGroupOperations
        }
      ]
    }
  }
]

// Event Grid checks that the function exists, so the first provision creates the topic only.
var deployedSubscriptions = settings.createEventSubscription ? eventSubscriptions : []

var actionGroups = empty(settings.actionGroupId) ? [] : [
  {
    actionGroupId: settings.actionGroupId
  }
]

resource topic 'Microsoft.EventGrid/systemTopics@2025-02-15' = {
  name: topicName
  location: 'global'
  tags: tags
  // Needed for deadLetterWithResourceIdentity: Event Grid writes dead letters as this identity, which may only
  // write blobs in the dead-letter container (not the app identity, which owns the host's keys container).
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${settings.deadLetterIdentityId}': {}
    }
  }
  properties: {
    source: isSubscriptionTopic ? subscription().id : resourceGroup().id
    topicType: isSubscriptionTopic ? 'Microsoft.Resources.Subscriptions' : 'Microsoft.Resources.ResourceGroups'
  }
}

resource toFunction 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2025-02-15' = [
  for eventSubscription in deployedSubscriptions: {
    parent: topic
    name: eventSubscription.name
    properties: {
      eventDeliverySchema: 'EventGridSchema'
      destination: {
        endpointType: 'AzureFunction'
        properties: {
          resourceId: settings.functionResourceId
          // The trigger takes one event per invocation; one failed event must not retry a whole batch.
          maxEventsPerBatch: 1
          preferredBatchSizeInKilobytes: 64
        }
      }
      filter: eventSubscription.eventFilter
      retryPolicy: {
        maxDeliveryAttempts: settings.maxDeliveryAttempts
        eventTimeToLiveInMinutes: settings.eventTimeToLiveInMinutes
      }
      deadLetterWithResourceIdentity: {
        identity: {
          type: 'UserAssigned'
          userAssignedIdentity: settings.deadLetterIdentityId
        }
        deadLetterDestination: {
          endpointType: 'StorageBlob'
          properties: {
            resourceId: settings.storageAccountId
            blobContainerName: settings.deadLetterContainerName
          }
        }
      }
    }
  }
]

// An event that exhausted its retries (dead-lettered) or could not even be dead-lettered (dropped) is a pool
// change poolsync never applied: the next audit will find it, but someone should look now.
var deliveryFailureMetrics = [
  {
    metric: 'DeadLetteredCount'
    title: 'dead-lettered'
    severity: 2
  }
  {
    metric: 'DroppedEventCount'
    title: 'dropped'
    severity: 1
  }
]

resource deliveryFailureAlerts 'Microsoft.Insights/metricAlerts@2018-03-01' = [
  for failure in deliveryFailureMetrics: {
    name: '${topicName}-${failure.title}'
    location: 'global'
    tags: tags
    properties: {
      description: 'poolsync: Event Grid ${failure.title} resource events (${failure.metric} > 0). See docs/operations.md#replaying-dead-lettered-events.'
      severity: failure.severity
      enabled: true
      scopes: [
        topic.id
      ]
      evaluationFrequency: 'PT5M'
      windowSize: 'PT15M'
      autoMitigate: true
      criteria: {
        'odata.type': 'Microsoft.Azure.Monitor.SingleResourceMultipleMetricCriteria'
        allOf: [
          {
            criterionType: 'StaticThresholdCriterion'
            name: failure.metric
            metricNamespace: 'Microsoft.EventGrid/systemTopics'
            metricName: failure.metric
            operator: 'GreaterThan'
            threshold: 0
            timeAggregation: 'Total'
          }
        ]
      }
      actions: actionGroups
    }
  }
]

output topicId string = topic.id
output topicName string = topic.name
