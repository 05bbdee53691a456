"""Event bytes to records to per-source facts.

The Event Hub edge, the envelope, each log source, and the replay inputs.
"""
