// The Microsoft Entra ID app registration that guards poolsync's runbook API: App Service Authentication on the
// Function App accepts tokens issued for it, and poolsync checks its app roles per operation (shared/api/auth.py).
// Declared with the Microsoft Graph Bicep extension (GA, types v1.0:1.0.0, Bicep >= 0.36.1; infra/bicepconfig.json):
// https://learn.microsoft.com/graph/templates/bicep/whats-new. The deploying user needs Application.ReadWrite.All
// (or to be allowed to create applications) and, to assign roles, AppRoleAssignment.ReadWrite.All.
// Entra ID objects are not in any resource group: `azd down` leaves them (docs/operations.md says how to delete).
extension microsoftGraphV1

@description('Tenant-unique name: re-deployments update the registration carrying it instead of creating another.')
param uniqueName string

param displayName string

@description('Object ids of users, groups or service principals (a runbook\'s managed identity) given PoolSync.Operator.')
param operatorPrincipalIds array = []

@description('Object ids of users, groups or service principals given PoolSync.Reader.')
param readerPrincipalIds array = []

// Allowed for a single-tenant app under Entra ID's identifier URI rules (api://<tenant id>/<string>).
var identifierUri = 'api://${tenant().tenantId}/${uniqueName}'

// The role values shared/api/auth.py checks. Ids are stable per registration so re-deployments keep assignments.
var readerRole = {
  id: guid(uniqueName, 'PoolSync.Reader')
  value: 'PoolSync.Reader'
  displayName: 'poolsync reader'
  description: 'List managed pools and their members, plan a reconcile (dry run), read audit and operation status.'
}
var operatorRole = {
  id: guid(uniqueName, 'PoolSync.Operator')
  value: 'PoolSync.Operator'
  displayName: 'poolsync operator'
  description: 'Everything a reader may, and add, remove, drain and enable pool addresses, reconcile, run the audit.'
}

// People call the API with `az account get-access-token --resource <identifierUri>`: the Azure CLI asks for a
// delegated scope of the API, pre-authorised here so nobody has to consent to it.
var azureCliAppId = '04b07795-8ddb-461a-bbee-02f9e1bf7b46'
var userScopeId = guid(uniqueName, 'user_impersonation')

resource app 'Microsoft.Graph/applications@v1.0' = {
  uniqueName: uniqueName
  displayName: displayName
  description: 'Runbook API of poolsync (Azure Load Balancer IP-based backend pools).'
  signInAudience: 'AzureADMyOrg'
  identifierUris: [
    identifierUri
  ]
  owners: {
    relationships: [
      deployer().objectId
    ]
  }
  api: {
    // v2 tokens whatever endpoint the caller used: issuer login.microsoftonline.com/<tenant>/v2.0, audience the client id.
    requestedAccessTokenVersion: 2
    oauth2PermissionScopes: [
      {
        id: userScopeId
        value: 'user_impersonation'
        type: 'User'
        isEnabled: true
        adminConsentDisplayName: 'Call the poolsync API as the signed-in user'
        adminConsentDescription: 'Lets the application call the poolsync runbook API as the signed-in user; what the user may do there still depends on the poolsync app roles assigned to them.'
        userConsentDisplayName: 'Call the poolsync API as you'
        userConsentDescription: 'Lets the application call the poolsync runbook API as you.'
      }
    ]
    preAuthorizedApplications: [
      {
        appId: azureCliAppId
        delegatedPermissionIds: [
          userScopeId
        ]
      }
    ]
  }
  appRoles: [
    for role in [readerRole, operatorRole]: {
      id: role.id
      value: role.value
      displayName: role.displayName
      description: role.description
      // People (and groups) as well as applications: a runbook's managed identity is an application.
      allowedMemberTypes: [
        'User'
        'Application'
      ]
      isEnabled: true
    }
  ]
}

resource servicePrincipal 'Microsoft.Graph/servicePrincipals@v1.0' = {
  appId: app.appId
  // Only principals holding a poolsync role get a token for the API at all.
  appRoleAssignmentRequired: true
}

resource operators 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for principalId in operatorPrincipalIds: {
    appRoleId: operatorRole.id
    principalId: principalId
    resourceId: servicePrincipal.id
  }
]

resource readers 'Microsoft.Graph/appRoleAssignedTo@v1.0' = [
  for principalId in readerPrincipalIds: {
    appRoleId: readerRole.id
    principalId: principalId
    resourceId: servicePrincipal.id
  }
]

output clientId string = app.appId
output identifierUri string = identifierUri
output servicePrincipalId string = servicePrincipal.id
