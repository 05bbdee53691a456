// The Function's identity may wrap and unwrap with the archive KEK, and nothing else in the
// vault. Separate from keyvault.bicep because the Function's settings need the key URI (vault
// first) while this needs the Function's identity (Function first).

param principalId string
param vaultName string
param keyName string

var keyVaultCryptoUser = '12338af0-0e69-4776-bea7-57ae8d297424'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource kek 'Microsoft.KeyVault/vaults/keys@2023-07-01' existing = {
  parent: vault
  name: keyName
}

// Scoped to the key, not the vault: a key added to the vault later is not the Function's.
resource cryptoUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  scope: kek
  name: guid(kek.id, principalId, keyVaultCryptoUser)
  properties: {
    principalId: principalId
    principalType: 'ServicePrincipal'
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultCryptoUser)
  }
}
