"""Outbound webhooks: an outbox written with each fact, signed (Standard Webhooks) and
delivered at least once to the operator's endpoints by deliver-webhooks."""
