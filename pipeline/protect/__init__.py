"""What may be stored: credentials, detectors, the capture policy, archive records, dead letters."""
