// The key-encryption key (KEK) of the archive (ARCHIVE_ENCRYPTION=on). Each archived record has
// its own data key, wrapped with this KEK and kept in the ArchiveKeys table; `erase` destroys a
// subject's data keys, which makes their records on the immutable archive unreadable
// (crypto-shredding). Losing the KEK would do the same to every record, hence soft delete with
// purge protection: a deleted vault or key can be recovered for 90 days and nobody, not even an
// owner, can shorten that. The Function's access to the key is granted by
// keyvault-crypto-user.bicep, once the Function (and its identity) exists.

param location string
param name string
param tags object = {}
param keyName string = 'archive-kek'
@description('Disable public network access (a private endpoint reaches the vault).')
param privateNetworking bool = false

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC, not access policies: roles can be scoped to the one key and show up with the
    // rest of the deployment's role assignments.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90 // the maximum
    // Irreversible once on: a purge can no longer skip the retention above.
    enablePurgeProtection: true
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      bypass: 'AzureServices'
    }
  }
}

// wrapKey/unwrapKey only: the KEK never encrypts data itself and is never exported. No expiry:
// the data keys of the whole retention period stay wrapped with it.
resource kek 'Microsoft.KeyVault/vaults/keys@2023-07-01' = {
  parent: vault
  name: keyName
  properties: {
    kty: 'RSA'
    keySize: 3072
    keyOps: [
      'wrapKey'
      'unwrapKey'
    ]
    attributes: {
      enabled: true
    }
  }
}

output id string = vault.id
output name string = vault.name
output keyName string = kek.name
// Without a version, so that ARCHIVE_KEK follows the key's current version after a rotation.
output keyUri string = kek.properties.keyUri
