// apim-aoai-audit: Event Hub → Function (Flex Consumption) → audit table + immutable archive.
// `azd up` deploys this with main.parameters.json; see the README, "Deploying to Azure".

targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('azd environment name: names the resource group and resources.')
param environmentName string

@minLength(1)
@description('Region of every resource (the Event Hubs namespace must be in APIM\'s region).')
param location string

@description('Existing API Management instance to wire to the hub; empty to skip.')
param apimName string = ''
@description('Resource group of that instance (default: the one this deployment creates).')
param apimResourceGroup string = ''
@description('APIM API ids whose diagnostics log bodies and LLM messages, e.g. ["azure-openai"].')
param apimApiIds array = []
@description('Bytes of each body APIM logs in GatewayLogs (0-8192).')
@minValue(0)
@maxValue(8192)
param apimPayloadBytes int = 8192
@description('Log LLM messages (GatewayLlmLogs) for those APIs.')
param apimLogLlmMessages bool = true
@description('Also deploy our log-to-eventhub policy as those APIs\' policy (replaces their policy).')
param apimDeployAuditPolicy bool = false

@minValue(1)
@maxValue(32)
param eventHubPartitions int = 4
@minValue(1)
@maxValue(7)
param eventHubRetentionDays int = 7
@description('Capture the hub to Avro files in the audit storage account (replayable history).')
param enableCapture bool = true

@description('Days each raw record stays immutable (time-based retention of the archive).')
@minValue(1)
param archiveRetentionDays int = 365
@description('Encrypt the raw archive with per-record data keys wrapped by a Key Vault key, so that `erase` can shred a subject\'s records on the immutable archive.')
param archiveEncryption bool = true

@description('Private endpoints for storage, Event Hubs and the key vault, and VNet integration of the Function.')
param privateNetworking bool = false
param functionMaxInstances int = 40
@description('App setting overrides (name → value), e.g. {"CAPTURE_OVERRIDES": "..."}.')
param appSettingsOverrides object = {}

var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  application: 'apim-aoai-audit'
}
var defaults = loadJsonContent('app-settings.json')
var hubName = 'apim-logs'
var consumerGroup = 'audit-pipeline'
var captureContainer = enableCapture ? 'capture' : ''

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  scope: rg
  name: 'monitoring'
  params: {
    location: location
    name: token
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  scope: rg
  name: 'storage'
  params: {
    location: location
    name: 'staudit${token}'
    tags: tags
    auditTable: defaults.AUDIT_TABLE
    kpiTable: defaults.KPI_TABLE
    kpiHourlyTable: defaults.KPI_HOURLY_TABLE
    budgetAlertsTable: defaults.BUDGET_ALERTS_TABLE
    archiveKeysTable: defaults.ARCHIVE_KEYS_TABLE
    legalHoldsTable: defaults.LEGAL_HOLDS_TABLE
    archiveContainer: defaults.ARCHIVE_CONTAINER
    deadletterContainer: defaults.DEADLETTER_CONTAINER
    captureContainer: captureContainer
    archiveRetentionDays: archiveRetentionDays
    privateNetworking: privateNetworking
  }
}

module eventHubs 'modules/eventhubs.bicep' = {
  scope: rg
  name: 'eventhubs'
  params: {
    location: location
    name: 'evhns-${token}'
    tags: tags
    hubName: hubName
    consumerGroup: consumerGroup
    partitionCount: eventHubPartitions
    retentionDays: eventHubRetentionDays
    captureStorageId: enableCapture ? storage.outputs.id : ''
    captureContainer: captureContainer
    privateNetworking: privateNetworking
  }
}

module captureWriter 'modules/capture-writer.bicep' = if (enableCapture) {
  scope: rg
  name: 'capture-writer'
  params: {
    namespacePrincipalId: eventHubs.outputs.principalId
    storageName: storage.outputs.name
    captureContainer: captureContainer
  }
}

module network 'modules/network.bicep' = if (privateNetworking) {
  scope: rg
  name: 'network'
  params: {
    location: location
    name: token
    tags: tags
  }
}

// Before the Function, whose settings name the key; the Function's access to it comes after.
module keyVault 'modules/keyvault.bicep' = if (archiveEncryption) {
  scope: rg
  name: 'keyvault'
  params: {
    location: location
    name: 'kv-${token}'
    tags: tags
    privateNetworking: privateNetworking
  }
}

module function 'modules/function.bicep' = {
  scope: rg
  name: 'function'
  params: {
    location: location
    name: 'func-${token}'
    tags: tags
    hostStorageName: 'stfunc${token}'
    auditStorageName: storage.outputs.name
    eventHubNamespaceName: eventHubs.outputs.name
    eventHubName: hubName
    consumerGroup: consumerGroup
    appInsightsName: monitoring.outputs.insightsName
    appInsightsConnectionString: monitoring.outputs.connectionString
    maximumInstanceCount: functionMaxInstances
    subnetId: privateNetworking ? network.outputs.functionsSubnetId : ''
    archiveEncryption: archiveEncryption
    kekUri: archiveEncryption ? keyVault.outputs.keyUri : ''
    settingsOverrides: appSettingsOverrides
  }
}

module kekUser 'modules/keyvault-crypto-user.bicep' = if (archiveEncryption) {
  scope: rg
  name: 'keyvault-crypto-user'
  params: {
    principalId: function.outputs.principalId
    vaultName: keyVault.outputs.name
    keyName: keyVault.outputs.keyName
  }
}

module privateEndpoints 'modules/private-endpoints.bicep' = if (privateNetworking) {
  scope: rg
  name: 'private-endpoints'
  params: {
    location: location
    token: token
    tags: tags
    subnetId: network.outputs.endpointsSubnetId
    auditStorageId: storage.outputs.id
    hostStorageId: function.outputs.hostStorageId
    eventHubsId: eventHubs.outputs.id
    blobZoneId: network.outputs.blobZoneId
    tableZoneId: network.outputs.tableZoneId
    queueZoneId: network.outputs.queueZoneId
    serviceBusZoneId: network.outputs.serviceBusZoneId
    keyVaultId: archiveEncryption ? keyVault.outputs.id : ''
    keyVaultZoneId: network.outputs.keyVaultZoneId
  }
}

module apim 'modules/apim.bicep' = if (!empty(apimName)) {
  scope: resourceGroup(empty(apimResourceGroup) ? rg.name : apimResourceGroup)
  name: 'apim-wiring'
  params: {
    apimName: apimName
    eventHubNamespaceName: eventHubs.outputs.name
    eventHubName: hubName
    diagnosticsRuleId: eventHubs.outputs.diagnosticsRuleId
    apiIds: apimApiIds
    payloadBytes: apimPayloadBytes
    logLlmMessages: apimLogLlmMessages
    deployAuditPolicy: apimDeployAuditPolicy
  }
}

module apimSender 'modules/apim-sender.bicep' = if (!empty(apimName)) {
  scope: rg
  name: 'apim-sender'
  params: {
    apimPrincipalId: apim.outputs.principalId
    eventHubNamespaceName: eventHubs.outputs.name
    eventHubName: hubName
  }
}

output AZURE_RESOURCE_GROUP string = rg.name
output AUDIT_STORAGE_ACCOUNT string = storage.outputs.name
output AUDIT_ARCHIVE_CONTAINER_ID string = '${storage.outputs.id}/blobServices/default/containers/${defaults.ARCHIVE_CONTAINER}'
output EVENTHUB_NAMESPACE string = eventHubs.outputs.fullyQualifiedNamespace
output EVENTHUB_NAME string = hubName
output FUNCTION_APP_NAME string = function.outputs.name
output ARCHIVE_KEK string = archiveEncryption ? 'keyvault:${keyVault.outputs.keyUri}' : ''
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
