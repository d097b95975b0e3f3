"""The named mutations scripts/mutate applies: one small, realistic wrong change to a
critical invariant each, and the tests that must fail with it applied.

Each `original` must occur exactly once in its file (tests/test_mutate.py checks it
without running anything); when code moves, update the text here, never drop the
mutation. Covering tests are node ids, as narrow as will catch the change: scripts/mutate
runs only them.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    name: str
    invariant: str
    file: str              # relative to the checkout
    original: str          # exact text, found exactly once
    replacement: str
    tests: tuple[str, ...]  # pytest node ids (relative to the checkout)


MUTATIONS: tuple[Mutation, ...] = (
    # -- the four that passed the whole suite (issue 29) ------------------------------
    Mutation(
        "volume-tier-by-window-end",
        "volume tiers across a price change: the tier the month's total reaches",
        "chargeback/billing/pricing.py",
        "lower, tier = _volume_tier(price.tiers, max(month_total - price.allowance, ZERO))",
        "lower, tier = _volume_tier(price.tiers, billable_to)",
        ("tests/test_pricing.py::test_volume_tiers_across_a_price_change_take_the_tier_the_"
         "months_total_reaches",)),
    Mutation(
        "immutability-tests-new-seal",
        "finalized documents are immutable: the trigger asks whether the row was sealed",
        "sql/110_immutability_compares_once.sql",
        "IF OLD.status = 'draft' OR OLD.document_sha256 IS NULL THEN",
        "IF OLD.status = 'draft' OR NEW.document_sha256 IS NULL THEN",
        ("tests/test_document_immutability.py::test_a_finalized_total_cannot_be_changed_by_"
         "clearing_its_seal_in_the_same_update",)),
    Mutation(
        "chain-starts-at-first-row",
        "the hash chain: a series starts at 1, so a missing first document is reported",
        "chargeback/documents/chain.py",
        "expected_seq = before[1] + 1 if before else 1",
        "expected_seq = before[1] + 1 if before else seq",
        ("tests/test_document_immutability.py::test_the_first_document_of_a_series_removed_"
         "behind_the_triggers_breaks_the_chain",)),
    Mutation(
        "webhook-signed-at-creation",
        "outbound webhooks are signed at the attempt, so a late retry verifies",
        "chargeback/webhooks/delivery.py",
        "signing.headers(signer, claimed.event_id, datetime.now(timezone.utc), body)",
        "signing.headers(signer, claimed.event_id, claimed.created_at, body)",
        ("tests/test_webhooks.py::test_a_retry_more_than_five_minutes_after_the_event_is_"
         "signed_at_the_attempt_and_verifies",)),
    # -- the five caught only by a fuzz, a property, the demo or an end-to-end test -----
    Mutation(
        "dedupe-key-without-memory",
        "an invocation's identity includes its memory: two that differ only there count twice",
        "sql/002_usage.sql",
        "PRIMARY KEY (started_ns, namespace, function_name, duration_ns, memory_bytes, started)",
        "PRIMARY KEY (started_ns, namespace, function_name, duration_ns, started)",
        ("tests/test_usage_rollups.py::test_two_invocations_differing_only_in_memory_are_"
         "both_counted_and_replays_are_not",)),
    Mutation(
        "daily-rollup-replaces",
        "each delivery adds to the day's rollup",
        "chargeback/usage/ingest.py",
        "   SET invocations = d.invocations + excluded.invocations,\n"
        "       duration_ns = d.duration_ns + excluded.duration_ns,\n"
        "       gb_seconds  = d.gb_seconds + excluded.gb_seconds,",
        "   SET invocations = excluded.invocations,\n"
        "       duration_ns = excluded.duration_ns,\n"
        "       gb_seconds  = excluded.gb_seconds,",
        ("tests/test_usage_rollups.py::test_each_delivery_adds_to_the_days_rollup_never_"
         "replaces_it",)),
    Mutation(
        "tax-rounded-per-line",
        "tax is one rounding of the subtotal",
        "chargeback/billing/pricing.py",
        "tax = round_money(subtotal * tax_rate, currency, ROUNDINGS[tax_rounding])",
        "tax = sum((round_money(a * tax_rate, currency, ROUNDINGS[tax_rounding])"
        " for a in line_amounts), ZERO)",
        ("tests/test_pricing.py::test_tax_is_one_rounding_of_the_subtotal",)),
    Mutation(
        "correction-tax-assigned",
        "a correction owes the month's tax less the tax of every document billed for it",
        "chargeback/billing/corrections.py",
        "                b.tax += d.tax\n",
        "                b.tax = d.tax\n",
        ("tests/test_corrections.py::test_a_second_correction_owes_the_tax_left_after_every_"
         "earlier_document",)),
    Mutation(
        "forecast-rearmed",
        "the forecast fires at most once a month and is never re-armed",
        "chargeback/budgets/thresholds.py",
        "rearm = [f for f in fired if f.kind == THRESHOLD and budget > f.budget",
        "rearm = [f for f in fired if budget > f.budget",
        ("tests/test_budgets.py::test_a_raised_budget_never_rearms_the_months_forecast",)),
    # -- three the suite caught already ---------------------------------------------------
    Mutation(
        "volume-bound-exclusive",
        "a volume tier's up_to is inclusive",
        "chargeback/billing/pricing.py",
        "if tier.up_to is None or billable_total <= tier.up_to:",
        "if tier.up_to is None or billable_total < tier.up_to:",
        ("tests/test_pricing.py::test_volume_tiers_price_everything_at_the_tier_reached",)),
    Mutation(
        "allowance-per-window",
        "a month split by a price change grants the allowance and the first tier once",
        "chargeback/billing/pricing.py",
        "            start, end = used, used + quantity\n            used = end\n",
        "            start, end = ZERO, quantity\n",
        ("tests/test_pricing.py::test_a_split_month_does_not_grant_the_allowance_or_the_"
         "first_tier_twice",)),
    Mutation(
        "line-amount-rounded-apart",
        "a line's amount is its shown gross less its shown discount, exactly",
        "chargeback/billing/pricing.py",
        "return LineMoney(g, d, g - d)",
        "return LineMoney(g, d, round_money(gross - discount, currency))",
        ("tests/test_pricing.py::test_a_discounted_line_shows_gross_less_discount_equal_to_"
         "its_amount",)),
    # -- HMAC, exactly-once mail, gap-free numbers, tenant isolation ----------------------
    Mutation(
        "hmac-prefix-compare",
        "the usage webhook's HMAC is compared whole, in constant time",
        "chargeback/usage/webhook.py",
        "valid |= hmac.compare_digest(expected, given)",
        "valid |= expected[:16] == given[:16]",
        ("tests/test_usage.py::test_a_signature_right_but_for_one_digit_is_refused_wherever_"
         "that_digit_is",)),
    Mutation(
        "mail-claim-unchecked",
        "exactly-once mail: a mail another request holds (its lease running) is not claimed again",
        "chargeback/mail/outbox.py",
        "        WHERE kind = %(kind)s AND status = 'pending' AND next_attempt_at <= clock_timestamp()\n",
        "        WHERE kind = %(kind)s AND status = 'pending'\n",
        ("tests/test_email_invoice.py::test_concurrent_requests_send_one_mail",)),
    Mutation(
        "numbers-taken-for-drafts",
        "gap-free numbering: numbers are taken for final documents only",
        "chargeback/billing/finalize.py",
        "n = sum(1 for d in documents if not d.draft.reasons\n"
        "                and (d.kind == \"credit_note\") == (series == \"credit_note\"))",
        "n = sum(1 for d in documents\n"
        "                if (d.kind == \"credit_note\") == (series == \"credit_note\"))",
        ("tests/test_month_close.py::test_a_draft_takes_no_number_so_the_next_final_"
         "document_takes_the_next_one",)),
    Mutation(
        "portal-document-any-tenant",
        "tenant isolation: the portal finds a document by number within the caller's tenant",
        "chargeback/portal/store.py",
        " WHERE namespace = %s AND number = %s AND status <> 'draft'\"\"\"",
        " WHERE %s IS NOT NULL AND number = %s AND status <> 'draft'\"\"\"",
        ("tests/test_portal.py::test_a_tenant_reads_its_own_month_series_documents_and_"
         "rejected_events",)),
    Mutation(
        "portal-tenant-from-query",
        "tenant isolation: a tenant token reads its own tenant, whatever ?tenant= says",
        "chargeback/portal/access.py",
        "    if asked and asked != who.tenant:  # another tenant's data: nothing says it"
        " exists\n"
        "        raise RequestError(404, f\"tenant: no tenant {asked!r} for this token\")\n"
        "    return who\n",
        "    return Access(asked or who.tenant, who.invoice, token=token,"
        " expires_at=who.expires_at)\n",
        ("tests/test_portal.py::test_a_tenant_reads_its_own_month_series_documents_and_"
         "rejected_events",)),
    Mutation(
        "drift-announced-every-run",
        "a drifting hour is recorded and announced once, however often it is reconciled",
        "chargeback/metrics/drift.py",
        "ON CONFLICT DO NOTHING RETURNING first_seen_at",
        "ON CONFLICT (namespace, function_name, hour_start) DO UPDATE SET last_seen_at = now()"
        " RETURNING first_seen_at",
        ("tests/test_prometheus_meters.py::test_a_lost_webhook_delivery_shows_up_as_drift_"
         "against_the_gateways_counter",)),
)
