"""Daily KPIs: rollup, latency sketch, prices, the daily job, reports."""
