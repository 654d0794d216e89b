// The app's storage account: shared-key access off (identity only), TLS 1.2, no public blobs; the
// deployment and config containers, the app's queues with their poison queues, and its tables.

@description('Required. Storage account name (3-24 lower-case letters and digits).')
param name string

@description('Optional. Region.')
param location string = resourceGroup().location

@description('Optional. Tags.')
param tags object = {}

@description('Required. Blob containers to create (besides the Functions host\'s own).')
param containers string[]

@description('Required. Queues to create.')
param queues string[]

@description('Required. Tables to create.')
param tables string[]

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: {
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
}

// The Functions host's containers (locks and timer state; function keys), created here so the host's
// Storage Blob Data Owner role can be granted on them alone instead of on the account.
var hostContainers = [
  'azure-webjobs-hosts'
  'azure-webjobs-secrets'
]

resource blobContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in union(hostContainers, containers): {
    parent: blobService
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource storageQueues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queue in queues: {
    parent: queueService
    name: queue
  }
]

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource storageTables 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = [
  for table in tables: {
    parent: tableService
    name: table
  }
]

@description('Account name.')
output name string = account.name

@description('Blob endpoint.')
output blobEndpoint string = account.properties.primaryEndpoints.blob

@description('The Functions host\'s blob containers.')
output hostContainers string[] = hostContainers

@description('Queue endpoint.')
output queueEndpoint string = account.properties.primaryEndpoints.queue

@description('Table endpoint.')
output tableEndpoint string = account.properties.primaryEndpoints.table
