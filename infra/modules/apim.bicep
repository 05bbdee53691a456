// Wiring of an existing API Management instance to the audit Event Hub:
// - the Event Hub logger "aoai-audit-logger" (used by our log-to-eventhub policy), sending with
//   APIM's system-assigned identity;
// - a diagnostic setting that streams GatewayLogs and GatewayLlmLogs to the hub;
// - per-API Azure Monitor diagnostics: body bytes and headers to log, and LLM message logging;
// - optionally our policy fragment and API policy (infra/apim/).
// Deployed into the APIM instance's resource group.

param apimName string
param eventHubNamespaceName string
param eventHubName string
param diagnosticsRuleId string
@description('APIs to configure (their APIM ids, e.g. ["azure-openai"]).')
param apiIds array = []
@description('Bytes of each body to log in GatewayLogs (0-8192). 0 logs no bodies.')
@minValue(0)
@maxValue(8192)
param payloadBytes int = 8192
@description('Headers to log (X-Forwarded-For gives the client behind an Application Gateway).')
param headersToLog array = [
  'X-Forwarded-For'
  'x-ms-region'
  'x-ratelimit-remaining-tokens'
  'x-ratelimit-remaining-requests'
]
@description('Log LLM messages (GatewayLlmLogs prompts and completions).')
param logLlmMessages bool = true
@description('Deploy our log-to-eventhub policy as the APIs\' policy (replaces existing API policies).')
param deployAuditPolicy bool = false

resource apim 'Microsoft.ApiManagement/service@2024-06-01-preview' existing = {
  name: apimName
}

resource logger 'Microsoft.ApiManagement/service/loggers@2024-06-01-preview' = {
  parent: apim
  name: 'aoai-audit-logger'
  properties: {
    loggerType: 'azureEventHub'
    description: 'Audit pipeline: one aoai-audit/1 message per Azure OpenAI call'
    credentials: {
      endpointAddress: '${eventHubNamespaceName}.servicebus.windows.net'
      identityClientId: 'SystemAssigned'
      name: eventHubName
    }
  }
}

resource diagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  scope: apim
  name: 'aoai-audit-to-eventhub'
  properties: {
    eventHubAuthorizationRuleId: diagnosticsRuleId
    eventHubName: eventHubName
    logs: [
      {
        category: 'GatewayLogs'
        enabled: true
      }
      {
        category: 'GatewayLlmLogs'
        enabled: true
      }
    ]
  }
}

// The built-in Azure Monitor logger of the instance (created with its first diagnostic).
resource azureMonitorLogger 'Microsoft.ApiManagement/service/loggers@2024-06-01-preview' existing = {
  parent: apim
  name: 'azuremonitor'
}

var bodySettings = {
  headers: headersToLog
  body: {
    bytes: payloadBytes
  }
}

resource apiDiagnostics 'Microsoft.ApiManagement/service/apis/diagnostics@2024-06-01-preview' = [for apiId in apiIds: {
  name: '${apimName}/${apiId}/azuremonitor'
  properties: {
    loggerId: azureMonitorLogger.id
    alwaysLog: 'allErrors'
    logClientIp: true
    verbosity: 'information'
    sampling: {
      samplingType: 'fixed'
      percentage: 100
    }
    frontend: {
      request: bodySettings
      response: bodySettings
    }
    backend: {
      request: bodySettings
      response: bodySettings
    }
    largeLanguageModel: {
      logs: logLlmMessages ? 'enabled' : 'disabled'
      requests: {
        messages: logLlmMessages ? 'all' : 'none'
        maxSizeInBytes: 262144
      }
      responses: {
        messages: logLlmMessages ? 'all' : 'none'
        maxSizeInBytes: 262144
      }
    }
  }
}]

resource fragment 'Microsoft.ApiManagement/service/policyFragments@2024-06-01-preview' = if (deployAuditPolicy) {
  parent: apim
  name: 'aoai-audit-log'
  properties: {
    description: 'Audit pipeline: log one aoai-audit/1 message per call to aoai-audit-logger'
    format: 'xml'
    value: loadTextContent('../apim/aoai-audit-fragment.xml')
  }
  dependsOn: [
    logger
  ]
}

resource apiPolicies 'Microsoft.ApiManagement/service/apis/policies@2024-06-01-preview' = [for apiId in (deployAuditPolicy ? apiIds : []): {
  name: '${apimName}/${apiId}/policy'
  properties: {
    format: 'xml'
    value: loadTextContent('../apim/aoai-audit-policy.xml')
  }
  dependsOn: [
    fragment
  ]
}]

output principalId string = apim.identity.principalId
