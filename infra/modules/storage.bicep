// The audit storage account: tables (AuditLog, KpiDaily, KpiHourly, BudgetAlerts, ArchiveKeys,
// LegalHolds), the raw archive container with version-level immutability (WORM) and a time-based
// retention policy, the dead-letter container (not immutable: dead letters are replayed and
// marked done), and optionally the Capture container.
// Shared-key access is off: every client uses Microsoft Entra ID.

param location string
param name string
param tags object = {}
param auditTable string
param kpiTable string
param kpiHourlyTable string
param budgetAlertsTable string
param archiveKeysTable string
param legalHoldsTable string
param archiveContainer string
param deadletterContainer string
param captureContainer string = ''
@description('Days a raw record stays immutable after it is written.')
@minValue(1)
param archiveRetentionDays int
@description('Disable public network access (private endpoints reach the account).')
param privateNetworking bool = false

resource account 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GZRS' // audit evidence: zone- and geo-redundant
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices' // Event Hubs Capture writes as a trusted service
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: account
  name: 'default'
  properties: {
    isVersioningEnabled: true // required by version-level immutability
    deleteRetentionPolicy: {
      enabled: true
      days: 30
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 30
    }
  }
}

resource archive 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: archiveContainer
  properties: {
    publicAccess: 'None'
    // Settable only when the container is created: WORM per blob version.
    immutableStorageWithVersioning: {
      enabled: true
    }
  }
}

// Time-based retention, unlocked: an admin locks it once the period is agreed (README,
// "Immutability"). Locking is an action (POST .../immutabilityPolicies/default/lock), not a property.
resource archiveRetention 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = {
  parent: archive
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: archiveRetentionDays
    allowProtectedAppendWrites: false
  }
}

resource deadletters 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deadletterContainer
  properties: {
    publicAccess: 'None'
  }
}

resource capture 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (!empty(captureContainer)) {
  parent: blobService
  name: empty(captureContainer) ? 'unused' : captureContainer
  properties: {
    publicAccess: 'None'
  }
}

resource tableService 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: account
  name: 'default'
}

resource audit 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: auditTable
}

resource kpi 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: kpiTable
}

resource kpiHourly 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: kpiHourlyTable
}

resource budgetAlerts 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: budgetAlertsTable
}

// Not immutable, unlike the archive: `erase` shreds records by deleting their data keys here.
resource archiveKeys 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: archiveKeysTable
}

resource legalHolds 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: tableService
  name: legalHoldsTable
}

output id string = account.id
output name string = account.name
output blobEndpoint string = account.properties.primaryEndpoints.blob
