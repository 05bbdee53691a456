"""Analytics export: audit rows, KPIs and FOCUS cost rows as Parquet, day by day (Hive layout),
for the engines users already run (DuckDB, Fabric, Synapse, Azure Data Explorer, Databricks).
pyarrow is imported only here, and only when exporting: never on the Function's cold start."""
