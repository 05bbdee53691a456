// Event Hubs: the hub APIM writes to, the consumer group of the audit function, the
// authorization rule Azure Monitor diagnostic settings require (they have no RBAC option), and
// optionally Capture into the audit storage account (written with the namespace's identity).

param location string
param name string
param tags object = {}
param hubName string
param consumerGroup string
@minValue(1)
@maxValue(32)
param partitionCount int
@minValue(1)
@maxValue(7)
param retentionDays int
param captureStorageId string = ''
param captureContainer string = ''
param privateNetworking bool = false

var captureEnabled = !empty(captureStorageId) && !empty(captureContainer)
var capture = {
  enabled: true
  encoding: 'Avro'
  intervalInSeconds: 300
  sizeLimitInBytes: 314572800
  skipEmptyArchives: true
  destination: {
    name: 'EventHubArchive.AzureBlockBlob'
    identity: {
      type: 'SystemAssigned'
    }
    properties: {
      storageAccountResourceId: captureStorageId
      blobContainer: captureContainer
      archiveNameFormat: '{Namespace}/{EventHub}/{PartitionId}/{Year}/{Month}/{Day}/{Hour}/{Minute}/{Second}'
    }
  }
}

resource namespace 'Microsoft.EventHub/namespaces@2024-01-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: 1
  }
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    minimumTlsVersion: '1.2'
    // Diagnostic settings send with an authorization rule: local auth must stay on for them.
    disableLocalAuth: false
    isAutoInflateEnabled: true
    maximumThroughputUnits: 10
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
  }
}

resource networkRules 'Microsoft.EventHub/namespaces/networkRuleSets@2024-01-01' = if (privateNetworking) {
  parent: namespace
  name: 'default'
  properties: {
    defaultAction: 'Deny'
    publicNetworkAccess: 'Disabled'
    trustedServiceAccessEnabled: true // Azure Monitor diagnostic settings are a trusted service
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2024-01-01' = {
  parent: namespace
  name: hubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: retentionDays
    captureDescription: captureEnabled ? capture : null
  }
}

resource group 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2024-01-01' = {
  parent: hub
  name: consumerGroup
}

// Manage, Send, Listen: what a diagnostic setting's eventHubAuthorizationRuleId must grant.
resource diagnosticsRule 'Microsoft.EventHub/namespaces/authorizationRules@2024-01-01' = {
  parent: namespace
  name: 'apim-diagnostics'
  properties: {
    rights: [
      'Manage'
      'Send'
      'Listen'
    ]
  }
}

output id string = namespace.id
output name string = namespace.name
output hubId string = hub.id
output fullyQualifiedNamespace string = '${namespace.name}.servicebus.windows.net'
output diagnosticsRuleId string = diagnosticsRule.id
output principalId string = namespace.identity.principalId
