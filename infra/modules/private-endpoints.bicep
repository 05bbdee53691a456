// Private endpoints of the audit storage (blob, table), the Function's host storage (blob,
// queue, table), the Event Hubs namespace and the archive's key vault (when
// ARCHIVE_ENCRYPTION is on), each registered in its private DNS zone.

param location string
param token string
param tags object = {}
param subnetId string
param auditStorageId string
param hostStorageId string
param eventHubsId string
param blobZoneId string
param tableZoneId string
param queueZoneId string
param serviceBusZoneId string
@description('The archive\'s key vault; empty when the archive is not encrypted.')
param keyVaultId string = ''
param keyVaultZoneId string = ''

var endpoints = concat([
  { name: 'pe-audit-blob', id: auditStorageId, group: 'blob', zone: blobZoneId }
  { name: 'pe-audit-table', id: auditStorageId, group: 'table', zone: tableZoneId }
  { name: 'pe-host-blob', id: hostStorageId, group: 'blob', zone: blobZoneId }
  { name: 'pe-host-queue', id: hostStorageId, group: 'queue', zone: queueZoneId }
  { name: 'pe-host-table', id: hostStorageId, group: 'table', zone: tableZoneId }
  { name: 'pe-eventhubs', id: eventHubsId, group: 'namespace', zone: serviceBusZoneId }
], empty(keyVaultId) ? [] : [
  { name: 'pe-keyvault', id: keyVaultId, group: 'vault', zone: keyVaultZoneId }
])

resource endpoint 'Microsoft.Network/privateEndpoints@2024-01-01' = [for e in endpoints: {
  name: '${e.name}-${token}'
  location: location
  tags: tags
  properties: {
    subnet: {
      id: subnetId
    }
    privateLinkServiceConnections: [
      {
        name: e.name
        properties: {
          privateLinkServiceId: e.id
          groupIds: [
            e.group
          ]
        }
      }
    ]
  }
}]

resource zoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-01-01' = [for (e, i) in endpoints: {
  parent: endpoint[i]
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: e.group
        properties: {
          privateDnsZoneId: e.zone
        }
      }
    ]
  }
}]
