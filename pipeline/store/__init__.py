"""Azure Storage adapters: retries, audit rows with their keys and limits, blobs, dead letters."""
