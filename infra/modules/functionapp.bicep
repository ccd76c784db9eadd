// Function App on the Flex Consumption plan (FC1), Python 3.11, running as the user-assigned identity.
// Flex derives the runtime from functionAppConfig, so FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION /
// WEBSITE_RUN_FROM_PACKAGE must not be set as app settings.

param name string
param planName string
param location string
param tags object

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of that identity (AZURE_CLIENT_ID and the __clientId settings).')
param identityClientId string

param storageAccountName string

@description('Blob container URL the Flex platform reads the deployment package from.')
param deploymentContainerUrl string

// Flex Consumption does not support diagnostic settings on the site; the host's logs and poolsync's telemetry
// reach Log Analytics through (workspace-based) Application Insights instead.
param appInsightsConnectionString string

@allowed([512, 2048, 4096])
param instanceMemoryMB int

// Flex Consumption sizing, set deliberately rather than left to the platform's defaults:
// - maximumInstanceCount caps every scale group (the HTTP group and the Event Grid function's own group). The
//   platform allows 1..1000 and defaults to 100
//   (https://learn.microsoft.com/azure/azure-functions/event-driven-scaling#limit-scale-out; older revisions of
//   that page gave 40 as the lowest value). Event intake makes no Azure call and one flusher per subscription
//   does the writes, so extra instances add only start-up reads (the rules are checked against Azure).
// - httpPerInstanceConcurrency is the HTTP group's perInstanceConcurrency. Its default depends on the instance
//   size, and for Python apps it is 1 whatever the size
//   (https://learn.microsoft.com/azure/azure-functions/functions-concurrency#http-trigger-concurrency), so every
//   concurrent runbook or health call would start another instance. The HTTP functions are synchronous and wait
//   on Resource Manager, which the worker's thread pool overlaps.
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int

@minValue(1)
@maxValue(1000)
param httpPerInstanceConcurrency int

param rules string
param rulesFile string
param maxRemoveFraction string
param auditSchedule string
param auditRemediate bool

@description('Name of the Event Grid triggered function (handlers/): the event subscription targets it.')
param eventGridFunctionName string = 'eventgrid_resource_events'

@description('Application (client) id of the API\'s app registration (modules/api-app-registration.bicep).')
param apiClientId string

@description('Application ID URI of that registration: the resource callers ask tokens for.')
param apiIdentifierUri string

// Exactly one rules source is set: inline rules (POOLSYNC_RULES) win over the file (POOLSYNC_RULES_FILE).
var rulesSettingName = empty(rules) ? 'POOLSYNC_RULES_FILE' : 'POOLSYNC_RULES'
var rulesSettingValue = empty(rules) ? rulesFile : rules

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  // checkov:skip=CKV_AZURE_225: poolsync is stateless; during a zone outage Event Grid keeps retrying for up to eventTimeToLiveInMinutes and the audit repairs drift afterwards, so zone redundancy (region-limited on Flex Consumption) is not worth requiring.
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

resource site 'Microsoft.Web/sites@2025-03-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid push delivery and the runbooks' HTTP calls reach the app over its public endpoint; App Service Authentication requires a Microsoft Entra ID token for every route but /api/health and the Event Grid webhook (system key).
  // checkov:skip=CKV_AZURE_17: Event Grid delivery cannot present a client certificate, so requiring one would stop all events.
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero per trigger; there is no fixed instance minimum to configure and a missed event is retried by Event Grid.
  // checkov:skip=CKV_AZURE_213: the Flex Consumption plan does not support App Service health checks (siteConfig.healthCheckPath).
  name: name
  location: location
  // azd deploys the `api` service of azure.yaml to the site carrying this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Event Grid and the runbooks' HTTP calls arrive over the internet; the API takes Entra ID tokens (authSettings).
    publicNetworkAccess: 'Enabled'
    clientCertEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [
        // Host storage, identity-based: no connection string exists anywhere.
        {
          name: 'AzureWebJobsStorage__accountName'
          value: storageAccountName
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: identityClientId
        }
        // DefaultAzureCredential in the app picks the user-assigned identity through this.
        {
          name: 'AZURE_CLIENT_ID'
          value: identityClientId
        }
        // Telemetry with Entra ID auth (Application Insights has local auth disabled).
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: appInsightsConnectionString
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identityClientId};Authorization=AAD'
        }
        {
          name: rulesSettingName
          value: rulesSettingValue
        }
        {
          name: 'POOLSYNC_MAX_REMOVE_FRACTION'
          value: maxRemoveFraction
        }
        {
          name: 'POOLSYNC_AUDIT_SCHEDULE'
          value: auditSchedule
        }
        {
          name: 'POOLSYNC_AUDIT_REMEDIATE'
          value: auditRemediate ? 'true' : 'false'
        }
        // Entra ID app roles per operation; the HTTP routes then take no function key (shared/api/auth.py).
        {
          name: 'POOLSYNC_API_AUTH'
          value: 'entra'
        }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        triggers: {
          http: {
            perInstanceConcurrency: httpPerInstanceConcurrency
          }
        }
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// App Service Authentication: a Microsoft Entra ID token issued for the API's app registration, or 401. Two paths
// stay open: the anonymous health probe, and the Event Grid webhook, which Event Grid calls with the host's system
// key and no token. Which operation needs which app role is poolsync's decision (shared/api/auth.py).
resource authSettings 'Microsoft.Web/sites/config@2025-03-01' = {
  // checkov applies its site checks to every sites/config child; this one is authsettingsV2 and has none of those properties:
  // checkov:skip=CKV_AZURE_13: this resource is App Service Authentication itself (authsettingsV2, platform.enabled true); the check reads only the retired v1 siteAuthEnabled property.
  // checkov:skip=CKV_AZURE_63: HTTP logging belongs to the site's web config; Flex Consumption sends host logs through Application Insights instead.
  // checkov:skip=CKV_AZURE_65: detailed error pages belong to the site's web config, and the API answers JSON errors only.
  // checkov:skip=CKV_AZURE_66: failed request tracing belongs to the site's web config; Flex Consumption sends host logs through Application Insights instead.
  // checkov:skip=CKV_AZURE_80: a .NET Framework version does not apply to a Python app, nor to an authentication config.
  // checkov:skip=CKV_AZURE_88: Flex Consumption reads its package from a blob container; there are no Azure Files mounts to configure.
  // checkov:skip=CKV_AZURE_222: Event Grid and the runbooks reach the app over its public endpoint; this resource is what requires their Entra ID tokens.
  parent: site
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'Return401'
      excludedPaths: [
        '/api/health'
        '/runtime/webhooks/eventgrid'
      ]
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: apiClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
        }
        validation: {
          allowedAudiences: [
            apiClientId
            apiIdentifierUri
          ]
        }
      }
    }
    login: {
      tokenStore: {
        enabled: false
      }
    }
    httpSettings: {
      requireHttps: true
    }
  }
}

// Deployments go through Entra ID (azd / az functionapp deploy); no publishing passwords.
resource ftpCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: site
  name: 'ftp'
  location: location
  properties: {
    allow: false
  }
}

resource scmCredentials 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: site
  name: 'scm'
  location: location
  properties: {
    allow: false
  }
}

output name string = site.name
output id string = site.id
output url string = 'https://${site.properties.defaultHostName}'
output eventGridFunctionId string = '${site.id}/functions/${eventGridFunctionName}'
