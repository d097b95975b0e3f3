"""Capacity: what each tenant holds in the cluster, read through the Kubernetes API and stored as intervals."""
