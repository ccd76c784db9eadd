// poolsync's footprint in the CUSTOMER's resource groups: the pool-writer role on each load balancer and VNet,
// the inventory reader on each watched resource group, and resource-group Event Grid system topics.
//
// Deliberately NOT part of main.bicep: `azd down` deletes every resource group named in the azd deployment's
// outputResources, and an assignment on a load balancer would put the load balancer's group there. This file is
// deployed as its own subscription deployment ("poolsync-access-<env>", no azd-env-name tag) by
// infra/scripts/provision_access.py, the postprovision hook of azure.yaml. Removing poolsync therefore leaves
// these in place on purpose: docs/operations.md ("Remove poolsync entirely") lists the cleanup commands.
targetScope = 'subscription'

@description('Principal id of the app identity (main.bicep output).')
param principalId string

@description('Resource id of the pool-writer custom role (main.bicep).')
param poolWriterRoleId string

@description('Resource id of the inventory-reader custom role (main.bicep).')
param inventoryReaderRoleId string

@minLength(1)
@description('Comma-separated load balancer ids (this subscription).')
param loadBalancerIds string

@minLength(1)
@description('Comma-separated virtual network ids (this subscription).')
param virtualNetworkIds string

@description('Comma-separated watched resource group names; empty = main.bicep assigns the reader on the subscription.')
param watchedResourceGroupNames string = ''

@description('Comma-separated resource group names that get their own system topic; empty = main.bicep deploys the subscription topic.')
param eventSourceResourceGroupNames string = ''

@description('Name of the resource-group system topics.')
param topicName string

@description('Tags of the topics (never azd-env-name: azd would take these resources for its own).')
param tags object

@description('Event Grid settings from main.bicep (see modules/eventgrid.bicep).')
param eventGridSettings object

var loadBalancerIdList = split(replace(loadBalancerIds, ' ', ''), ',')
var virtualNetworkIdList = split(replace(virtualNetworkIds, ' ', ''), ',')
var watchedGroupList = empty(watchedResourceGroupNames) ? [] : split(replace(watchedResourceGroupNames, ' ', ''), ',')
var eventGroupList = empty(eventSourceResourceGroupNames) ? [] : split(replace(eventSourceResourceGroupNames, ' ', ''), ',')

module poolWriterOnLoadBalancers 'modules/lb-role-assignment.bicep' = [
  for (lbId, i) in loadBalancerIdList: {
    name: 'poolsync-lb-writer-${i}'
    scope: resourceGroup(split(lbId, '/')[4])
    params: {
      loadBalancerName: last(split(lbId, '/'))
      principalId: principalId
      roleDefinitionId: poolWriterRoleId
    }
  }
]

module poolWriterOnVirtualNetworks 'modules/vnet-role-assignment.bicep' = [
  for (vnetId, i) in virtualNetworkIdList: {
    name: 'poolsync-vnet-join-${i}'
    scope: resourceGroup(split(vnetId, '/')[4])
    params: {
      virtualNetworkName: last(split(vnetId, '/'))
      principalId: principalId
      roleDefinitionId: poolWriterRoleId
    }
  }
]

module inventoryReaderOnGroups 'modules/rg-role-assignment.bicep' = [
  for (groupName, i) in watchedGroupList: {
    name: 'poolsync-inventory-reader-${i}'
    scope: resourceGroup(groupName)
    params: {
      principalId: principalId
      roleDefinitionId: inventoryReaderRoleId
      description: 'poolsync reads VMs and NICs in this watched resource group.'
    }
  }
]

// A resource-group system topic lives in the resource group it listens to.
module resourceGroupEvents 'modules/eventgrid.bicep' = [
  for (groupName, i) in eventGroupList: {
    name: 'poolsync-events-rg-${i}'
    scope: resourceGroup(groupName)
    params: {
      topicName: topicName
      sourceKind: 'resourceGroup'
      tags: tags
      settings: eventGridSettings
    }
  }
]
