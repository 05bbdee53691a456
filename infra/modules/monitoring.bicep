// Log Analytics workspace and workspace-based Application Insights for the Function App.
// Local (key) authentication is off: the app sends telemetry with its managed identity.

param location string
param name string
param tags object = {}

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-${name}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 90
  }
}

resource insights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-${name}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    DisableLocalAuth: true
  }
}

output connectionString string = insights.properties.ConnectionString
output insightsId string = insights.id
output insightsName string = insights.name
output workspaceId string = workspace.id
