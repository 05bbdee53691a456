// Private networking (privateNetworking=true): a VNet with a subnet for the Function App's
// VNet integration (delegated to Microsoft.App/environments, as Flex Consumption requires) and
// one for private endpoints, and the private DNS zones those endpoints register in.

param location string
param name string
param tags object = {}
param addressPrefix string = '10.60.0.0/24'
param functionsSubnetPrefix string = '10.60.0.0/26'
param endpointsSubnetPrefix string = '10.60.0.64/26'

var zones = [
  'privatelink.blob.${environment().suffixes.storage}'
  'privatelink.table.${environment().suffixes.storage}'
  'privatelink.queue.${environment().suffixes.storage}'
  'privatelink.servicebus.windows.net'
  'privatelink.vaultcore.azure.net'
]

resource vnet 'Microsoft.Network/virtualNetworks@2024-01-01' = {
  name: 'vnet-${name}'
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: 'functions'
        properties: {
          addressPrefix: functionsSubnetPrefix
          delegations: [
            {
              name: 'flex'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: endpointsSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource dnsZones 'Microsoft.Network/privateDnsZones@2020-06-01' = [for zone in zones: {
  name: zone
  location: 'global'
  tags: tags
}]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [for (zone, i) in zones: {
  parent: dnsZones[i]
  name: 'link-${name}'
  location: 'global'
  properties: {
    registrationEnabled: false
    virtualNetwork: {
      id: vnet.id
    }
  }
}]

output functionsSubnetId string = vnet.properties.subnets[0].id
output endpointsSubnetId string = vnet.properties.subnets[1].id
output blobZoneId string = dnsZones[0].id
output tableZoneId string = dnsZones[1].id
output queueZoneId string = dnsZones[2].id
output serviceBusZoneId string = dnsZones[3].id
output keyVaultZoneId string = dnsZones[4].id
