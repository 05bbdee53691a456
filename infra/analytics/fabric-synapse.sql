-- Fabric Data Warehouse / Lakehouse SQL endpoint, or Synapse serverless SQL, over the `calls`
-- export (OPENROWSET over the Parquet files; filepath(1) is the day of the folder).
-- Not run here (no workspace): checked offline against the documented OPENROWSET syntax.
-- Replace <account>, <container> and <prefix>. The WITH clause pins the types (OPENROWSET
-- otherwise infers them from the first file). Timestamps are written as microseconds in UTC,
-- which both read. In Synapse, create the view in a user database (not master); in Fabric,
-- check that your item allows CREATE VIEW over OPENROWSET, else run the SELECT directly.

CREATE VIEW dbo.aoai_calls AS
SELECT
    CAST(r.filepath(1) AS DATE) AS day,
    r.*
FROM OPENROWSET(
    BULK 'https://<account>.dfs.core.windows.net/<container>/<prefix>/calls/day=*/*.parquet',
    FORMAT = 'PARQUET'
) WITH (
        CorrelationId NVARCHAR(4000),
        CallTime DATETIME2(6),
        ApimService NVARCHAR(4000),
        Region NVARCHAR(4000),
        ApiId NVARCHAR(4000),
        OperationId NVARCHAR(4000),
        ProductId NVARCHAR(4000),
        SubscriptionId NVARCHAR(4000),
        UserId NVARCHAR(4000),
        CallerIp NVARCHAR(4000),
        CallerAppId NVARCHAR(4000),
        CallerUserId NVARCHAR(4000),
        CallerTenantId NVARCHAR(4000),
        Method NVARCHAR(4000),
        Url NVARCHAR(4000),
        Deployment NVARCHAR(4000),
        ApiVersion NVARCHAR(4000),
        Operation NVARCHAR(4000),
        BackendId NVARCHAR(4000),
        Status BIGINT,
        BackendStatus BIGINT,
        DurationMs BIGINT,
        BackendMs BIGINT,
        Model NVARCHAR(4000),
        ResponseId NVARCHAR(4000),
        BackendRequestId NVARCHAR(4000),
        JobId NVARCHAR(4000),
        PromptTokens BIGINT,
        CompletionTokens BIGINT,
        TotalTokens BIGINT,
        CachedTokens BIGINT,
        ReasoningTokens BIGINT,
        TokensSource NVARCHAR(4000),
        Streamed BIT,
        PromptPreview NVARCHAR(4000),
        CompletionPreview NVARCHAR(4000),
        Redactions NVARCHAR(4000),
        FinishReason NVARCHAR(4000),
        ContentFiltered BIT,
        ErrorCode NVARCHAR(4000),
        ErrorSource NVARCHAR(4000),
        ErrorMessage NVARCHAR(4000),
        BodyTruncated BIT,
        Clipped NVARCHAR(4000),
        RawBlob NVARCHAR(4000),
        RawOffset BIGINT,
        RawLength BIGINT,
        RawSha256 NVARCHAR(4000),
        Sources NVARCHAR(4000),
        KeyedBy NVARCHAR(4000),
        PipelineVersion NVARCHAR(4000)
) AS r;
GO

-- Tokens and calls by subscription and model per day.
SELECT day, SubscriptionId, Model, COUNT(*) AS calls, SUM(TotalTokens) AS total_tokens
FROM dbo.aoai_calls
WHERE day BETWEEN '2025-11-01' AND '2025-11-30'
GROUP BY day, SubscriptionId, Model
ORDER BY day, total_tokens DESC;

-- Errors and throttling by backend per day.
SELECT day, BackendId,
       COUNT(*) AS calls,
       SUM(CASE WHEN Status = 429 THEN 1 ELSE 0 END) AS throttled,
       SUM(CASE WHEN Status >= 500 THEN 1 ELSE 0 END) AS server_errors
FROM dbo.aoai_calls
WHERE day BETWEEN '2025-11-01' AND '2025-11-30'
GROUP BY day, BackendId
ORDER BY day, throttled DESC;
