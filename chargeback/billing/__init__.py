"""Billing: periods, the price book, pricing, invoice arithmetic and the month close."""
