// Log Analytics and Application Insights with local (key) authentication disabled.

@description('Required. Log Analytics workspace name.')
param logAnalyticsName string

@description('Required. Application Insights name.')
param appInsightsName string

@description('Optional. Region.')
param location string = resourceGroup().location

@description('Optional. Tags.')
param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: appInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

@description('Application Insights name.')
output appInsightsName string = appInsights.name

@description('Application Insights connection string (not a secret: ingestion needs Entra auth).')
output connectionString string = appInsights.properties.ConnectionString
