// m365-contact-sync: a keyless, least-privilege deployment for azd (`azd up`).
// Local modules in the Azure Verified Modules style; no registry references (CI builds offline).
targetScope = 'resourceGroup'

// ============== //
// Parameters     //
// ============== //

@minLength(1)
@maxLength(64)
@description('Required. Name of the azd environment; used to derive resource names.')
param environmentName string

// Regions that offer the Flex Consumption plan, as the Flex quickstart lists them
// (Azure-Samples/functions-quickstart-typescript-azd, infra/main.bicep; its EUAP canary region left
// out). azd's location metadata makes `azd up` offer only these. Check
// `az functionapp list-flexconsumption-locations` before adding one.
@minLength(1)
@description('Required. Azure region for all resources: one that offers Flex Consumption.')
@allowed([
  'australiaeast'
  'australiasoutheast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'northcentralus'
  'northeurope'
  'norwayeast'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'southindia'
  'spaincentral'
  'swedencentral'
  'uaenorth'
  'uksouth'
  'ukwest'
  'westcentralus'
  'westeurope'
  'westus'
  'westus2'
  'westus3'
])
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Optional. Object id of the deploying user or group, given rights to create the app certificate in Key Vault and upload the policy file. Empty for none.')
param principalId string = ''

@description('Optional. Name of the app certificate in Key Vault, once `cert create` made it (azd env AZURE_CERTIFICATE_NAME); the app may read that secret only. Empty: no Key Vault access yet.')
param certificateName string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Optional. Type of the principal in principalId; azd passes AZURE_PRINCIPAL_TYPE (ServicePrincipal when a pipeline deploys).')
param principalType string = 'User'

@description('Optional. NCRONTAB schedule of the scheduler timer (UTC).')
param schedulerSchedule string = '0 */1 * * * *'

@minValue(30)
@maxValue(540)
@description('Optional. Seconds a mailbox worker runs before it continues in a new message.')
param mailboxTimeBudgetSeconds int = 240

@minValue(10)
@description('Optional. Minutes a run holds its policy at most.')
param policyLeaseMinutes int = 360

@minValue(0)
@description('Optional. Minutes between checks for a renewed certificate in Key Vault.')
param certificateCheckMinutes int = 10

@minValue(40)
@maxValue(1000)
@description('Optional. Flex Consumption scale-out limit (40 to 1000). It applies per function group: the HTTP functions scale together as one group, and the timer and each queue function scale on their own, so each may reach this many instances.')
param maximumInstanceCount int = 40

@allowed([
  512
  2048
  4096
])
@description('Optional. Memory per instance (MB).')
param instanceMemoryMB int = 2048

@description('Optional. Purge protection on the Key Vault: on for production (a deleted vault and its certificate stay recoverable for 90 days, and nobody can purge them). It cannot be turned off once on, and the vault name stays taken until the retention ends, so a test environment that is torn down and recreated (`azd down --purge`, then `azd up`) sets it to false (AZURE_KEY_VAULT_PURGE_PROTECTION=false).')
param enablePurgeProtection bool = true

@maxLength(13)
@description('Optional. Suffix of every resource name. Empty (the default) derives it from the resource group, environment name and region. An environment provisioned before names derived from the resource group sets its existing suffix here (AZURE_RESOURCE_TOKEN) to keep its resources: see docs/deploy.md.')
param resourceToken string = ''

@description('Optional. Client id of the dashboard\'s Entra ID app registration, which defines the app roles ContactSync.Reader and ContactSync.Operator (docs/deploy.md). Empty: the dashboard says sign-in is not configured and shows no data.')
param dashboardClientId string = ''

@description('Optional. Tenant whose users sign in to the dashboard. Default: the deployment\'s tenant.')
param dashboardTenantId string = tenant().tenantId

@description('Optional. Tags for every resource.')
param tags object = {}

// ============== //
// Variables      //
// ============== //

// Unique per resource group: the same environment in another resource group gets new names (Key Vault
// and storage names are global, and a purge-protected vault keeps its name after `azd down`). An
// environment provisioned before that (token from subscription().id) keeps its names by passing its
// old token (docs/deploy.md, "Upgrading an existing environment").
var nameToken = empty(resourceToken)
  ? toLower(uniqueString(resourceGroup().id, environmentName, location))
  : toLower(resourceToken)
var allTags = union(tags, { 'azd-env-name': environmentName })
var names = {
  identity: 'id-contactsync-${nameToken}'
  storage: 'stcs${nameToken}'
  keyVault: 'kv-cs-${nameToken}'
  logAnalytics: 'log-contactsync-${nameToken}'
  appInsights: 'appi-contactsync-${nameToken}'
  plan: 'plan-contactsync-${nameToken}'
  functionApp: 'func-contactsync-${nameToken}'
}
var deploymentContainer = 'app-package'
var configContainer = 'config'
// Contact photos by content hash (written by the source refresh, read by mailbox workers).
var photoContainer = 'photos'
var policyBlobName = 'policies.json'

// ============== //
// Resources      //
// ============== //

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: allTags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: names.storage
    location: location
    tags: allTags
    containers: [
      deploymentContainer
      configContainer
      photoContainer
    ]
    queues: [
      'policy-runs'
      'policy-runs-poison'
      'mailbox-syncs'
      'mailbox-syncs-poison'
    ]
    tables: [
      'syncsources'
      'syncmailboxes'
      'syncruns'
      'syncpolicies'
    ]
  }
}

module keyVault 'modules/key-vault.bicep' = {
  name: 'keyVault'
  params: {
    name: names.keyVault
    location: location
    tags: allTags
    enablePurgeProtection: enablePurgeProtection
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: names.logAnalytics
    appInsightsName: names.appInsights
    location: location
    tags: allTags
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'functionApp'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: allTags
    // azd finds the app by this tag (azure.yaml's service `api`); only the site carries it.
    serviceName: 'api'
    identityId: identity.outputs.resourceId
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainer
    appInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    appSettings: {
      AzureWebJobsStorage__credential: 'managedidentity'
      AzureWebJobsStorage__clientId: identity.outputs.clientId
      AzureWebJobsStorage__blobServiceUri: storage.outputs.blobEndpoint
      AzureWebJobsStorage__queueServiceUri: storage.outputs.queueEndpoint
      AzureWebJobsStorage__tableServiceUri: storage.outputs.tableEndpoint
      AZURE_CLIENT_ID: identity.outputs.clientId
      POLICY_BLOB_URL: '${storage.outputs.blobEndpoint}${configContainer}/${policyBlobName}'
      SCHEDULER_SCHEDULE: schedulerSchedule
      MAILBOX_TIME_BUDGET_SECONDS: string(mailboxTimeBudgetSeconds)
      POLICY_LEASE_MINUTES: string(policyLeaseMinutes)
      CERTIFICATE_CHECK_MINUTES: string(certificateCheckMinutes)
      CERTIFICATE_ROTATION_SCHEDULE: '0 17 3 * * *'
      CERTIFICATE_OVERLAP_DAYS: '7'
      // Run records older than this are deleted by the scheduler (the runs table stays bounded).
      RUN_HISTORY_DAYS: '90'
      // Each mailbox's folder name is read (a user's rename undone) at most this often: 1 request per mailbox otherwise.
      FOLDER_NAME_CHECK_HOURS: '24'
      // The dashboard validates Entra ID tokens itself: Easy Auth is not supported on Flex Consumption.
      // Its local sign-in stand-in (DASHBOARD_LOCAL_SIGN_IN) is never set here and refused in Azure.
      DASHBOARD_TENANT_ID: dashboardTenantId
      DASHBOARD_CLIENT_ID: dashboardClientId
      DASHBOARD_AUTHORITY_HOST: environment().authentication.loginEndpoint
    }
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    appPrincipalId: identity.outputs.principalId
    hostContainerNames: concat(storage.outputs.hostContainers, [deploymentContainer])
    appContainerNames: [photoContainer]
    policyContainerName: configContainer
    certificateName: certificateName
    userPrincipalId: principalId
    userPrincipalType: principalType
  }
}

// ============== //
// Outputs        //
// ============== //

@description('The resource group.')
output AZURE_RESOURCE_GROUP string = resourceGroup().name

@description('The Function App name.')
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name

@description('The Function App URL.')
output SERVICE_API_URI string = functionApp.outputs.uri

@description('The admin dashboard; register it as an SPA redirect URI of the dashboard app registration.')
output DASHBOARD_URL string = '${functionApp.outputs.uri}/api/dashboard/'

@description('The Key Vault URL, for `m365-contact-sync cert create --vault`.')
output AZURE_KEY_VAULT_URL string = keyVault.outputs.uri

@description('Where the policy file goes.')
output POLICY_BLOB_URL string = '${storage.outputs.blobEndpoint}${configContainer}/${policyBlobName}'

@description('Client id of the managed identity.')
output AZURE_MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
