"""Adapters that run foreign task code inside a supervisor (private)."""
