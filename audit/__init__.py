"""Audit: the append-only, hash-chained log of every FHIR API request and its exports (audit issue)."""
