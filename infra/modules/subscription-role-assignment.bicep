// One role assignment on the subscription this module is deployed to. A module, not a resource of main.bicep,
// because the principal id comes from the identity module's output: a resource name must be known when the
// deployment starts (Bicep error BCP120), while a module parameter may be computed by an earlier deployment.
targetScope = 'subscription'

param principalId string
param roleDefinitionId string
param description string

resource assignment 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(subscription().id, principalId, roleDefinitionId)
  properties: {
    principalId: principalId
    roleDefinitionId: roleDefinitionId
    principalType: 'ServicePrincipal'
    description: description
  }
}
