// Role assignments: the app identity gets data-plane roles only (no keys anywhere), each on the
// narrowest scope that works: blob ownership on the host's containers only, the policy container
// read-only, the certificate's secret rather than the vault. The deploying principal may create the
// app certificate and upload the policy file.

@description('Required. Storage account name.')
param storageAccountName string

@description('Required. Key Vault name.')
param keyVaultName string

@description('Required. Application Insights name.')
param appInsightsName string

@description('Required. Principal id of the app identity.')
param appPrincipalId string

@description('Required. Blob containers the Functions host writes (its locks, keys and the deployment package): Storage Blob Data Owner on each.')
param hostContainerNames string[]

@description('Required. Blob containers the app writes (contact photos): Storage Blob Data Contributor on each.')
param appContainerNames string[]

@description('Required. The blob container holding the policy file: read-only to the app.')
param policyContainerName string

@description('Optional. The Key Vault certificate the app reads (its secret); empty until `cert create` made it. Key Vault Secrets User is granted on that secret only.')
param certificateName string = ''

@description('Optional. Principal id of the deploying user or group; empty for none.')
param userPrincipalId string = ''

@description('Optional. Type of the deploying principal.')
param userPrincipalType string = 'User'

// Storage Blob Data Owner: the host's containers and the deployment package, nothing else.
var storageBlobDataOwner = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Storage Blob Data Contributor: the app's photos; the deploying user's upload of the policy file.
var storageBlobDataContributor = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Storage Blob Data Reader: the app reads the policy file and may not change it.
var storageBlobDataReader = '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
// Storage Queue Data Contributor: the app's queues.
var storageQueueDataContributor = '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
// Storage Table Data Contributor: sync state.
var storageTableDataContributor = '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
// Key Vault Secrets User: reads the certificate's private key (as a secret); the app, and the
// deploying user for `doctor` and `run` from a workstation.
var keyVaultSecretsUser = '4633458b-17de-408a-b874-0445c86b69e6'
// Key Vault Certificates Officer: the deploying user creates and renews the certificate.
var keyVaultCertificatesOfficer = 'a4417e6f-fecd-4de8-b567-7b0420556985'
// Monitoring Metrics Publisher: Entra-authenticated telemetry.
var monitoringMetricsPublisher = '3913510d-42f4-4e42-8a64-420c390055eb'

resource storageAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storageAccount
  name: 'default'
}

resource hostContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for name in hostContainerNames: {
    parent: blobService
    name: name
  }
]

resource appContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for name in appContainerNames: {
    parent: blobService
    name: name
  }
]

resource policyContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: policyContainerName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// Key Vault keeps a certificate's private key as a secret of the same name.
resource certificateSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = if (!empty(certificateName)) {
  parent: vault
  name: empty(certificateName) ? 'none' : certificateName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

var storageRolesForApp = [
  storageQueueDataContributor
  storageTableDataContributor
]

resource appStorageRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for roleId in storageRolesForApp: {
    name: guid(storageAccount.id, appPrincipalId, roleId)
    scope: storageAccount
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleId)
    }
  }
]

resource appHostBlobRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in hostContainerNames: {
    name: guid(hostContainers[i].id, appPrincipalId, storageBlobDataOwner)
    scope: hostContainers[i]
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwner)
    }
  }
]

resource appBlobRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (name, i) in appContainerNames: {
    name: guid(appContainers[i].id, appPrincipalId, storageBlobDataContributor)
    scope: appContainers[i]
    properties: {
      principalId: appPrincipalId
      principalType: 'ServicePrincipal'
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
    }
  }
]

resource appPolicyReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(policyContainer.id, appPrincipalId, storageBlobDataReader)
  scope: policyContainer
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataReader)
  }
}

resource appVaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(certificateName)) {
  name: guid(certificateSecret.id, appPrincipalId, keyVaultSecretsUser)
  scope: certificateSecret
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

resource appMonitoringRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisher)
  }
}

resource userVaultRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, keyVaultCertificatesOfficer)
  scope: vault
  properties: {
    principalId: userPrincipalId
    principalType: userPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCertificatesOfficer)
  }
}

resource userVaultSecretsRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(vault.id, userPrincipalId, keyVaultSecretsUser)
  scope: vault
  properties: {
    principalId: userPrincipalId
    principalType: userPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUser)
  }
}

// The deploying principal uploads the policy file, so it writes the policy container and nothing
// else: on the account it could also rewrite the host's keys and the deployment package (code that
// runs as the app identity) and the photos that go into every mailbox.
resource userStorageRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(userPrincipalId)) {
  name: guid(policyContainer.id, userPrincipalId, storageBlobDataContributor)
  scope: policyContainer
  properties: {
    principalId: userPrincipalId
    principalType: userPrincipalType
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributor)
  }
}
