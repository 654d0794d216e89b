// A user-assigned managed identity: the Function App's only credential.

@description('Required. Name of the identity.')
param name string

@description('Optional. Region.')
param location string = resourceGroup().location

@description('Optional. Tags.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id.')
output resourceId string = identity.id

@description('Client id.')
output clientId string = identity.properties.clientId

@description('Principal (object) id.')
output principalId string = identity.properties.principalId
