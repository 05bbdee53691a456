"""The columns of the exported files: names and Arrow types (a contract: users query them).

`calls` has every property of the audit row (docs/audit-row.md) under the same name, with
proper types, plus `CorrelationId` (the RowKey unescaped); not the keys, not the join state.
The partition column `day` is in the path (`calls/day=YYYY-MM-DD/`), not in the files.
"""

from __future__ import annotations

from typing import Any

from pipeline.kpi.rollup import COUNTS, TOKENS

SCHEMA_VERSION = "1"

STRING, INT64, BOOL, FLOAT64, TIMESTAMP, DATE = (
    "string",
    "int64",
    "bool",
    "float64",
    "timestamp",
    "date",
)

CALLS: tuple[tuple[str, str], ...] = (
    ("CorrelationId", STRING),
    ("CallTime", TIMESTAMP),
    ("ApimService", STRING),
    ("Region", STRING),
    ("ApiId", STRING),
    ("OperationId", STRING),
    ("ProductId", STRING),
    ("SubscriptionId", STRING),
    ("UserId", STRING),
    ("CallerIp", STRING),
    ("CallerAppId", STRING),
    ("CallerUserId", STRING),
    ("CallerTenantId", STRING),
    ("Method", STRING),
    ("Url", STRING),
    ("Deployment", STRING),
    ("ApiVersion", STRING),
    ("Operation", STRING),
    ("BackendId", STRING),
    ("Status", INT64),
    ("BackendStatus", INT64),
    ("DurationMs", INT64),
    ("BackendMs", INT64),
    ("Model", STRING),
    ("ResponseId", STRING),
    ("BackendRequestId", STRING),
    ("JobId", STRING),
    ("PromptTokens", INT64),
    ("CompletionTokens", INT64),
    ("TotalTokens", INT64),
    ("CachedTokens", INT64),
    ("ReasoningTokens", INT64),
    ("TokensSource", STRING),
    ("Streamed", BOOL),
    ("PromptPreview", STRING),
    ("CompletionPreview", STRING),
    ("Redactions", STRING),
    ("FinishReason", STRING),
    ("ContentFiltered", BOOL),
    ("ErrorCode", STRING),
    ("ErrorSource", STRING),
    ("ErrorMessage", STRING),
    ("BodyTruncated", BOOL),
    ("Clipped", STRING),
    ("RawBlob", STRING),
    ("RawOffset", INT64),
    ("RawLength", INT64),
    ("RawSha256", STRING),
    ("Sources", STRING),
    ("KeyedBy", STRING),
    ("PipelineVersion", STRING),
)
# What is read of the audit table to write them (the RowKey gives CorrelationId).
CALLS_READ = ["RowKey", *(name for name, _ in CALLS if name != "CorrelationId")]

KPI: tuple[tuple[str, str], ...] = (
    ("Day", DATE),
    ("IsTotal", BOOL),
    ("Deployment", STRING),
    ("Model", STRING),
    ("SubscriptionId", STRING),
    ("ProductId", STRING),
    ("BackendId", STRING),
    *((name, INT64) for name in (*COUNTS, *TOKENS)),
    ("DurationP50Ms", FLOAT64),
    ("DurationP95Ms", FLOAT64),
    ("DurationP99Ms", FLOAT64),
    ("BackendP95Ms", FLOAT64),
    ("CostUsd", FLOAT64),
    ("PriceTableVersion", STRING),
    ("DurationSketch", STRING),
    ("BackendSketch", STRING),
    ("PipelineVersion", STRING),
)

# FOCUS 1.2 (FinOps Open Cost and Usage Specification): the columns, in the spec's names.
# Costs in USD as doubles; periods as UTC timestamps (start inclusive, end exclusive).
FOCUS: tuple[tuple[str, str], ...] = (
    ("BilledCost", FLOAT64),
    ("EffectiveCost", FLOAT64),
    ("ListCost", FLOAT64),
    ("ContractedCost", FLOAT64),
    ("BillingCurrency", STRING),
    ("BillingPeriodStart", TIMESTAMP),
    ("BillingPeriodEnd", TIMESTAMP),
    ("ChargePeriodStart", TIMESTAMP),
    ("ChargePeriodEnd", TIMESTAMP),
    ("ChargeCategory", STRING),
    ("ChargeClass", STRING),
    ("ChargeDescription", STRING),
    ("ChargeFrequency", STRING),
    ("ConsumedQuantity", FLOAT64),
    ("ConsumedUnit", STRING),
    ("PricingQuantity", FLOAT64),
    ("PricingUnit", STRING),
    ("PricingCategory", STRING),
    ("ListUnitPrice", FLOAT64),
    ("ContractedUnitPrice", FLOAT64),
    ("ServiceName", STRING),
    ("ServiceCategory", STRING),
    ("ServiceSubcategory", STRING),
    ("ProviderName", STRING),
    ("PublisherName", STRING),
    ("InvoiceIssuerName", STRING),
    ("BillingAccountId", STRING),
    ("BillingAccountName", STRING),
    ("SubAccountId", STRING),
    ("SubAccountName", STRING),
    ("RegionId", STRING),
    ("RegionName", STRING),
    ("ResourceId", STRING),
    ("ResourceName", STRING),
    ("ResourceType", STRING),
    ("SkuId", STRING),
    ("SkuPriceId", STRING),
    ("Tags", STRING),
    ("x_TokenType", STRING),
    ("x_Priced", BOOL),
)

DATASETS = ("calls", "kpi", "focus")


def arrow_schema(columns: tuple[tuple[str, str], ...], dataset: str) -> Any:
    import pyarrow as pa

    types = {
        STRING: pa.string(),
        INT64: pa.int64(),
        BOOL: pa.bool_(),
        FLOAT64: pa.float64(),
        # Microseconds in UTC: what Fabric and Synapse read (not nanoseconds).
        TIMESTAMP: pa.timestamp("us", tz="UTC"),
        DATE: pa.date32(),
    }
    fields = [pa.field(name, types[kind]) for name, kind in columns]
    return pa.schema(
        fields,
        metadata={"aoai-audit.dataset": dataset, "aoai-audit.schema": SCHEMA_VERSION},
    )
