"""The record pipeline: parse, facts, protect, fragment; then one batch written in order."""
