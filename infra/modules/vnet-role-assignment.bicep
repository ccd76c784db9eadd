// The pool-writer custom role on ONE virtual network, for joinLoadBalancer/action (VNet and subnets) and VNet read:
// Azure checks the join on the VNet every IP-based backend address refers to.

param virtualNetworkName string
param principalId string
param roleDefinitionId string

resource virtualNetwork 'Microsoft.Network/virtualNetworks@2024-05-01' existing = {
  name: virtualNetworkName
}

resource vnetJoin 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(virtualNetwork.id, principalId, roleDefinitionId)
  scope: virtualNetwork
  properties: {
    principalId: principalId
    roleDefinitionId: roleDefinitionId
    principalType: 'ServicePrincipal'
    description: 'poolsync joins IP-based load balancer backend addresses to this virtual network.'
  }
}
