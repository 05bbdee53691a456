"""Bottom helpers with no knowledge of the pipeline: bounded JSON, times, tables, memory."""
