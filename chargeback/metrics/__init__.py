"""Meters read from Prometheus (egress, GPU utilisation) and the reconciliation of billed invocations against the gateway's own counter."""
