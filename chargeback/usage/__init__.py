"""Function usage: the gateway's signed webhook, event validation, idempotent ingest and rollups."""
