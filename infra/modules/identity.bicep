// The one user-assigned identity poolsync runs as: the Function App, its host storage, the deployment package
// download and Event Grid dead-lettering all use it, so every grant is visible on a single principal.

@description('Name of the user-assigned managed identity.')
param name string

param location string
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
