// Private endpoints of the audit storage (blob, table), the Function's host storage (blob,
// queue, table) and the Event Hubs namespace, each registered in its private DNS zone.

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

var endpoints = [
  { name: 'pe-audit-blob', id: auditStorageId, group: 'blob', zone: blobZoneId }
  { name: 'pe-audit-table', id: auditStorageId, group: 'table', zone: tableZoneId }
  { name: 'pe-host-blob', id: hostStorageId, group: 'blob', zone: blobZoneId }
  { name: 'pe-host-queue', id: hostStorageId, group: 'queue', zone: queueZoneId }
  { name: 'pe-host-table', id: hostStorageId, group: 'table', zone: tableZoneId }
  { name: 'pe-eventhubs', id: eventHubsId, group: 'namespace', zone: serviceBusZoneId }
]

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
