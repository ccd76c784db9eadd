// The pool-writer custom role on ONE load balancer (deployed into that load balancer's resource group).

param loadBalancerName string
param principalId string
param roleDefinitionId string

resource loadBalancer 'Microsoft.Network/loadBalancers@2024-05-01' existing = {
  name: loadBalancerName
}

resource poolWriter 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(loadBalancer.id, principalId, roleDefinitionId)
  scope: loadBalancer
  properties: {
    principalId: principalId
    roleDefinitionId: roleDefinitionId
    principalType: 'ServicePrincipal'
    description: 'poolsync reads this load balancer and writes its backend pools.'
  }
}
