"""Invoice arithmetic with plain values: tiers, allowances, discounts, rounding, tax."""
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from chargeback.billing import pricing
from chargeback.billing.invoicing import build, quantities_rows
from chargeback.billing.pricebook import PriceBookError, parse
from chargeback.billing.pricing import Price, Tier, price_sequence

T0 = datetime(1970, 1, 1, tzinfo=timezone.utc)
TIERS = (Tier(D(100), D("1.0")), Tier(D(300), D("0.5")), Tier(None, D("0.1")))


def graduated(q, allowance=0):
    return price_sequence([(D(q), Price(T0, tiers=TIERS, tier_mode="graduated",
                                        allowance=D(allowance)))])[0]


def volume(q, allowance=0):
    return price_sequence([(D(q), Price(T0, tiers=TIERS, tier_mode="volume",
                                        allowance=D(allowance)))])[0]


@pytest.mark.parametrize("quantity, expected", [
    (0, "0"), (99, "99"), (100, "100"), (101, "100.5"), (300, "200"), (301, "200.1"),
    (1000, "270")])
def test_graduated_tiers_price_each_tier_separately_at_below_and_above_boundaries(
        quantity, expected):
    assert graduated(quantity).gross == D(expected)


@pytest.mark.parametrize("quantity, expected", [
    (0, "0"), (99, "99"), (100, "100"), (101, "50.5"), (300, "150"), (301, "30.1"),
    (1000, "100")])
def test_volume_tiers_price_everything_at_the_tier_reached(quantity, expected):
    assert volume(quantity).gross == D(expected)


def test_allowance_comes_off_before_the_tiers():
    priced = graduated(150, allowance=50)
    assert (priced.allowance_used, priced.gross) == (D(50), D(100))


def test_allowance_larger_than_usage_bills_nothing():
    priced = volume(30, allowance=50)
    assert (priced.allowance_used, priced.gross) == (D(30), D(0))


def test_a_split_month_does_not_grant_the_allowance_or_the_first_tier_twice():
    old = Price(T0, tiers=TIERS, tier_mode="graduated", allowance=D(10))
    new = Price(datetime(2026, 9, 16, tzinfo=timezone.utc), tiers=TIERS,
                tier_mode="graduated", allowance=D(10))
    first, second = price_sequence([(D(60), old), (D(60), new)])
    whole = graduated(120, allowance=10)
    assert (first.allowance_used, second.allowance_used) == (D(10), D(0))
    assert first.gross + second.gross == whole.gross == D("105")


def test_volume_tiers_across_a_price_change_take_the_tier_the_months_total_reaches():
    # 120 units: 60 before a price change on the 16th, 60 after (same tiers). The month's
    # 120 units reach the 101-300 tier, so every unit is at 0.5: 60 x 0.5 + 60 x 0.5 = 60.
    # (A tier chosen by each window's running end would bill the first 60 at the first
    # tier's 1.0 and only the rest at 0.5: 60 + 30 = 90.)
    old = Price(T0, tiers=TIERS, tier_mode="volume")
    new = Price(datetime(2026, 9, 16, tzinfo=timezone.utc), tiers=TIERS, tier_mode="volume")
    first, second = price_sequence([(D(60), old), (D(60), new)])
    assert (first.gross, second.gross) == (D(30), D(30))
    assert first.gross + second.gross == volume(120).gross == D(60)


@pytest.mark.parametrize("currency, amount, expected", [
    ("JPY", "2.5", "2"), ("JPY", "3.5", "4"), ("EUR", "0.125", "0.12"),
    ("EUR", "0.135", "0.14"), ("KWD", "1.0005", "1.000"), ("KWD", "1.0015", "1.002")])
def test_amounts_round_half_even_to_the_currencys_minor_unit(currency, amount, expected):
    rounded = pricing.round_money(D(amount), currency)
    assert (rounded, rounded.as_tuple().exponent) == (D(expected), -pricing.minor_units(currency))


def test_unknown_currency_is_refused_not_guessed():
    with pytest.raises(pricing.CurrencyError):
        pricing.minor_units("XYZ")


def test_tax_is_one_rounding_of_the_subtotal():
    # three lines of 10.02 EUR at 19 %: once on the subtotal, 30.06 x 0.19 = 5.7114 -> 5.71;
    # line by line, 10.02 x 0.19 = 1.9038 -> 1.90 three times = 5.70 (a cent short)
    totals = pricing.totals([D("10.02")] * 3, D("0.19"), "EUR")
    assert (totals.subtotal, totals.tax, totals.total) == (D("30.06"), D("5.71"), D("35.77"))


BOOK = parse("""
default_plan: pro
plans:
  pro: {currency: USD, price_list: usd, base_fee: "10", minimum_commitment: "50",
        tax_rate: "0.1"}
  cheap: {currency: USD, price_list: usd, spot_discount_percent: 25, tax_category: Z}
  spot: {currency: USD, price_list: spot, spot_discount_percent: 60, tax_category: Z}
price_lists:
  spot:
    currency: USD
    meters:
      node_hours: {"*": {unit_price: "1.25"}}
  usd:
    currency: USD
    meters:
      node_hours: {"*": {unit_price: "2.00"}}
      gb_seconds:
        "*":
          - {unit_price: "0.01"}
          - {effective_from: "2026-09-16T00:00:00Z", unit_price: "0.02"}
""")
BOOK = type(BOOK)(BOOK.default_plan, BOOK.plans, BOOK.prices, BOOK.content_sha256, 1)
WINDOWS = [["2026-09-01T00:00:00+00:00", "2026-09-16T00:00:00+00:00"],
           ["2026-09-16T00:00:00+00:00", "2026-10-01T00:00:00+00:00"]]


def inputs(quantities, plan=None, **extra):
    return {"namespace": "acme", "period": "2026-09", "timezone": "UTC",
            "price_book_version": 1, "plan": plan, "tenant_currency": None,
            "tax_rate_override": None, "windows": WINDOWS,
            "quantities": quantities_rows(quantities), "late": [], **extra}


def test_a_mid_month_price_change_splits_the_line_at_that_instant():
    draft = build(inputs({("gb_seconds", "", False, 0): D(100),
                          ("gb_seconds", "", False, 1): D(100)}, plan="cheap"), {1: BOOK})
    usage = [(l.quantity, l.amount, l.price_from.day) for l in draft.lines]
    assert usage == [(D(100), D("1.00"), 1), (D(100), D("2.00"), 16)]


def test_spot_capacity_is_discounted_by_the_plan_percentage():
    draft = build(inputs({("node_hours", "m5", True, 0): D(10),
                          ("node_hours", "m5", False, 0): D(10)}, plan="cheap"), {1: BOOK})
    assert [(l.spot, l.discount, l.amount) for l in draft.lines] == [
        (False, D("0.00"), D("20.00")), (True, D("5.00"), D("15.00"))]


def test_base_fee_minimum_commitment_top_up_and_tax():
    draft = build(inputs({("node_hours", "", False, 0): D(10)}), {1: BOOK})
    assert [(l.kind, l.amount) for l in draft.lines] == [
        ("capacity", D("20.00")), ("base_fee", D("10.00")), ("commitment", D("30.00"))]
    assert (draft.subtotal, draft.tax, draft.total) == (D("60.00"), D("6.00"), D("66.00"))


def test_tenant_tax_override_wins_over_the_plan():
    draft = build(inputs({("node_hours", "", False, 0): D(50)}, tax_rate_override="0.25"),
                  {1: BOOK})
    assert (draft.subtotal, draft.tax) == (D("110.00"), D("27.50"))


def test_usage_without_a_price_keeps_the_invoice_in_draft_with_the_reason():
    draft = build(inputs({("gpu_hours", "NVIDIA-B200", False, 0): D(1)}), {1: BOOK})
    assert draft.reasons == ["no price for gpu_hours NVIDIA-B200 in plan 'pro'"]
    assert draft.total is None


def test_unknown_plan_or_other_currency_is_a_draft_never_another_plan():
    assert build(inputs({}, plan="gold"), {1: BOOK}).reasons == [
        "plan 'gold' is not in price book version 1"]
    assert build(inputs({}, tenant_currency="EUR"), {1: BOOK}).reasons == [
        "tenant currency EUR differs from plan 'pro' currency USD"]


@pytest.mark.parametrize("text, field", [
    ("default_plan: x\nplans: {}\nprice_lists: {}", "default_plan"),
    ("plans: {a: {currency: ABC, price_list: l}}\nprice_lists: {l: {currency: ABC, meters: {}}}",
     "plans.a.currency"),
    ("plans: {}\nprice_lists: {l: {currency: USD, meters: {bogus: {}}}}",
     "price_lists.l.meters.bogus"),
    ("plans: {}\nprice_lists: {l: {currency: USD, meters: {gb_seconds: "
     "{'*': {tiers: {mode: volume, steps: [{unit_price: 1}, {unit_price: 2}]}}}}}}",
     "steps[0].up_to"),
])
def test_a_bad_price_book_is_refused_naming_the_key(text, field):
    with pytest.raises(PriceBookError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse(text)


_PLAN = ("plans: {{a: {{currency: USD, price_list: l, {}}}}}\n"
         "price_lists: {{l: {{currency: USD, meters: {{}}}}}}\ndefault_plan: a")


@pytest.mark.parametrize("terms, reason", [
    ('tax_rate: "0"', "plans.a.tax_category: a plan with tax_rate 0 needs the reason"),
    ('tax_rate: "0", tax_category: AE', "plans.a.tax_note: a plan with tax_rate 0 and "
                                        "tax_category AE needs its legal basis"),
    ('tax_rate: "0.19", tax_category: E', "plans.a.tax_category: a plan with tax_rate 0.19 "
                                          "is category S"),
    ('tax_rate: "0", tax_category: S, tax_note: x', "plans.a.tax_category: a plan with "
                                                    "tax_rate 0 needs"),
])
def test_a_zero_rate_plan_without_its_category_and_legal_basis_is_refused_at_load(terms,
                                                                                 reason):
    with pytest.raises(PriceBookError, match=reason):
        parse(_PLAN.format(terms))


def test_a_stored_version_from_before_tax_categories_still_reads():
    # the month it priced is corrected at its own terms; billing.legal holds what lacks one
    book = parse(_PLAN.format('tax_rate: "0"'), strict=False)
    assert book.plans["a"].tax_category == ""
    assert parse(_PLAN.format('tax_rate: "0", tax_category: O, tax_note: "Art. 44"')
                 ).plans["a"].tax_category == "O"


def test_the_shipped_price_book_prices_every_meter_of_the_fixture_cluster():
    from chargeback.billing.pricebook import DEFAULT_FILE
    book = parse(DEFAULT_FILE.read_text())
    for plan in book.plans.values():
        for meter, sku in [("gb_seconds", ""), ("invocations", ""), ("node_hours", "x"),
                           ("gpu_hours", "NVIDIA-H100-80GB-HBM3"),
                           ("gpu_hours", "NVIDIA-A100-SXM4-80GB/mig-1g.10gb"),
                           ("storage_gib_hours", "premium-rwo"), ("loadbalancer_hours", ""),
                           ("cpu_core_hours", ""), ("memory_gib_hours", "")]:
            assert book.prices_for(plan, meter, sku), (plan.name, meter, sku)
        assert book.prices_for(plan, "gpu_hours", "NVIDIA-B200") is None


def test_a_kolkata_month_is_whole_utc_days_whole_hours_and_raw_half_hours():
    from chargeback.billing.periods import period, split_window
    p = period("2026-09", "Asia/Kolkata")
    split = split_window(p.start, p.end)
    assert [t.isoformat() for t in (split.start, split.hours_from, split.days_from,
                                    split.days_to, split.hours_to, split.end)] == [
        "2026-08-31T18:30:00+00:00", "2026-08-31T19:00:00+00:00",
        "2026-09-01T00:00:00+00:00", "2026-09-30T00:00:00+00:00",
        "2026-09-30T18:00:00+00:00", "2026-09-30T18:30:00+00:00"]


def test_a_window_inside_one_hour_is_all_raw_events():
    from chargeback.billing.periods import split_window
    start = datetime(2026, 9, 1, 10, 15, tzinfo=timezone.utc)
    split = split_window(start, start.replace(minute=45))
    assert split.hours_from == split.days_from == split.days_to == split.hours_to == split.end


@pytest.mark.parametrize("currency, digits", [
    ("JPY", 0), ("EUR", 2), ("KWD", 3), ("IQD", 3), ("RSD", 2)])
def test_minor_units_are_iso_4217s_not_cldrs(currency, digits):
    # ISO 4217 (the list maintained by SIX): IQD has 3 decimals, RSD 2 (CLDR rounds both to 0)
    assert pricing.minor_units(currency) == digits


def test_tax_is_rounded_half_up_unless_the_operator_asks_for_half_even():
    # EUR 11.50 at 19 % = 2.185: an accountant writes 2.19
    assert pricing.totals([D("11.50")], D("0.19"), "EUR").tax == D("2.19")
    assert pricing.totals([D("11.50")], D("0.19"), "EUR", "half_even").tax == D("2.18")


def test_a_discounted_line_shows_gross_less_discount_equal_to_its_amount():
    # 720 node-hours x 1.25 = 900.00 gross, 60 % spot discount 540.00, amount 360.00
    book = BOOK
    [line] = build(inputs({("node_hours", "", True, 0): D(720)}, plan="spot"), {1: book}).lines
    assert (line.gross, line.discount, line.amount) == (D("900.00"), D("540.00"), D("360.00"))
    # and for every quantity, the three shown figures add up (rounding each apart):
    # 0.003 node-hours x 1.25 = 0.00375 -> 0.00 gross, 0.00225 -> 0.00 discount, 0.00
    for thousandths in range(1, 400, 7):
        quantity = D(thousandths) / 1000
        [line] = build(inputs({("node_hours", "", True, 0): quantity}, plan="spot"),
                       {1: book}).lines
        assert line.gross - line.discount == line.amount, quantity
        assert line.gross == pricing.round_money(quantity * D("1.25"), "USD")


def test_the_tier_rows_shown_sum_to_their_line():
    # three tiers of one unit at 0.005: exact 0.005 each, 0.015 in all; rounded one by
    # one they would show 0.00 + 0.00 + 0.00 (half-even) against a line of 0.02
    tiers = (Tier(D(1), D("0.005")), Tier(D(2), D("0.005")), Tier(None, D("0.005")))
    [priced] = price_sequence([(D(3), Price(T0, tiers=tiers, tier_mode="graduated"))])
    shown = pricing.shown_tiers(priced.tiers, "USD")
    assert sum(t.amount for t in shown) == pricing.round_money(priced.gross, "USD") == D("0.02")
