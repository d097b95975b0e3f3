"""An invoice formatted for the tenant's locale: `present()` turns an Invoice into
strings once (babel formats money, numbers and dates for the invoice's locale, the
labels come from the gettext catalogs), and every rendering reads that one
presentation, so HTML, text and PDF always say the same thing. Pure: the same
Invoice gives the same strings every time (nothing reads the clock, lines are in
line_no order, tiers in their stored order).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_interval, format_skeleton
from babel.numbers import format_currency, format_decimal, format_percent
from babel.units import format_unit

from chargeback.billing import postal
from chargeback.billing.invoicing import METER_NAMES, Line
from chargeback.documents import epc_qr
from chargeback.documents.model import Invoice, Issuer
from chargeback.mail import i18n
from chargeback.mail.i18n import N_, resolve_locale

# Quantities are exact (GB-s to the nanosecond); a document shows them to 3 decimals,
# the lines CSV carries every digit.
SHOWN_QUANTITY = Decimal("0.001")


def _plain(value: Decimal) -> Decimal:
    """NUMERIC as stored may carry trailing zeros (400000.000000): show 400000."""
    value = value.normalize()
    return value.quantize(Decimal(1)) if value.as_tuple().exponent > 0 else value


# CLDR writes bidi marks into Arabic and Hebrew numbers, amounts and dates (U+200F before
# "‏1,469.06 €"); a mail client shows some as boxes. The HTML isolates each amount in a
# <bdi> and the PDF orders text itself, so the formatted strings carry none.
_BIDI_MARKS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _bare(text: str) -> str:
    return _BIDI_MARKS.sub("", text)


def _month(period: str) -> date:
    year, month = period.split("-")
    return date(int(year), int(month), 1)


class _Formats:
    """Money, numbers and dates for one invoice's locale and currency."""

    def __init__(self, locale: Locale, currency: str, timezone: str):
        self.locale, self.currency = locale, currency
        self.tz = ZoneInfo(timezone)

    def money(self, value: Decimal) -> str:
        return _bare(format_currency(value, self.currency, locale=self.locale))

    def price(self, value: Decimal) -> str:
        # unit prices keep every digit they have (0.0000166667 per GB-s)
        return _bare(format_currency(_plain(value), self.currency, locale=self.locale,
                                     decimal_quantization=False))

    def number(self, value: Decimal) -> str:
        if value.as_tuple().exponent < SHOWN_QUANTITY.as_tuple().exponent:
            value = value.quantize(SHOWN_QUANTITY, rounding=ROUND_HALF_EVEN)
        return _bare(format_decimal(_plain(value), locale=self.locale,
                                    decimal_quantization=False))

    def percent(self, fraction: Decimal) -> str:
        return _bare(format_percent(_plain(fraction), locale=self.locale,
                                    decimal_quantization=False))

    def month(self, period: str) -> str:
        return _bare(format_skeleton("yMMMM", _month(period), locale=self.locale))

    def day(self, instant: datetime) -> str:
        return _bare(format_date(instant.astimezone(self.tz).date(), "long",
                                 locale=self.locale))

    def date(self, day: date) -> str:
        return _bare(format_date(day, "long", locale=self.locale))

    def days(self, start: datetime, end_exclusive: datetime) -> str:
        first = start.astimezone(self.tz).date()
        last = (end_exclusive.astimezone(self.tz) - timedelta(microseconds=1)).date()
        return _bare(format_interval(first, last, "yMMMd", locale=self.locale))


_SEGMENT = re.compile(r", (\d{4}-\d\d-\d\d \d\d:\d\d) to (\d{4}-\d\d-\d\d \d\d:\d\d) UTC")
_COMMITMENT = re.compile(r"Minimum commitment (\d+(?:\.\d+)?) ([A-Z]{3})(?:, (\d+) of (\d+) days)?"
                         r": top-up")


def _words(_: Callable[[str], str]) -> tuple[dict[str, str], dict[str, str]]:
    """(meter names, units) in the label language (the units written out for the
    catalogs' extraction); GB-s is the same in every language."""
    meters = {meter: _(name) for meter, name in METER_NAMES.items()}
    units = {"invocations": _("invocations"), "month": _("month"),
             "node-hours": _("node-hours"), "core-hours": _("core-hours"),
             "GiB-hours": _("GiB-hours"), "GPU-hours": _("GPU-hours"),
             "LB-hours": _("LB-hours")}
    return meters, units


def describe(line: Line, plan: str | None, locale: Locale,
             _: Callable[[str], str] | None = None, meters: dict[str, str] | None = None
             ) -> str:
    """The line's description in `locale`'s label language (the document's, the portal's),
    rebuilt from its stored fields (kind, meter, SKU, spot, billed_days/period_days, the
    invoice's plan) where the stored English text is exactly what billing.invoicing writes
    for them (a meter's name, its SKU, " (spot)", a price segment); the two figures only
    the text carries (a commitment's minimum, a price segment's bounds) are read from it.
    Anything else is shown as stored: English, never a key; so is every description of an
    English document (byte for byte as before). `_` and `meters`: a document's, once."""
    _ = _ or i18n.labels(locale)[1]
    meters = meters or _words(_)[0]
    stored = line.description
    if _ is i18n.SOURCE_GETTEXT:
        return stored
    prorated = line.billed_days is not None and line.period_days is not None
    days = {"days": line.billed_days, "period_days": line.period_days}
    if line.meter in METER_NAMES:
        english = METER_NAMES[line.meter] + (f" {line.sku}" if line.sku else "")
        name = meters[line.meter] + (f" {line.sku}" if line.sku else "")
        if line.spot:
            english += " (spot)"
            name = _("{description} (spot)").format(description=name)
        if stored == english:
            return name
        segment = _SEGMENT.fullmatch(stored[len(english):]) if stored.startswith(english) else None
        if segment:
            return _("{description}, {start} to {end} UTC").format(
                description=name, start=segment[1], end=segment[2])
        return stored
    if line.kind == "base_fee" and plan:
        note = f", {line.billed_days} of {line.period_days} days" if prorated else ""
        if stored == f"Base fee, plan {plan}{note}":
            return (_("Base fee, plan {plan}, {days} of {period_days} days") if prorated
                    else _("Base fee, plan {plan}")).format(plan=plan, **days)
        return stored
    commitment = _COMMITMENT.fullmatch(stored) if line.kind == "commitment" else None
    if commitment and (commitment[3] is not None) == prorated:
        amount = _bare(format_currency(Decimal(commitment[1]), commitment[2], locale=locale))
        return (_("Minimum commitment {amount}, {days} of {period_days} days: top-up")
                if prorated else _("Minimum commitment {amount}: top-up")).format(
            amount=amount, **days)
    return stored


def _average(amount: Decimal, quantity: Decimal) -> Decimal:
    """`amount` / `quantity` to six significant digits (49.00 / 100,000 = 0.00049)."""
    with localcontext() as context:
        context.prec = 6
        average = amount / quantity
    return average.normalize() if average else Decimal(0)


def _line_view(line: Line, plan: str | None, f: _Formats, _: Callable[[str], str],
               words: tuple[dict[str, str], dict[str, str]], credited: bool = False
               ) -> dict[str, Any]:
    meters, units = words
    unit = units.get(line.unit, line.unit)
    notes = []
    if line.sku and line.sku not in line.description:
        notes.append(line.sku)
    if line.spot and "spot" not in line.description.lower():
        notes.append(_("spot"))
    if line.adjustment_period:
        notes.append(_("adjustment for {month}").format(month=f.month(line.adjustment_period)))
    quantity = f"{f.number(line.quantity)} {unit}"
    if credited:
        # an operator's credit takes money off a line: its quantity is only the credited
        # share of the line's (a fictitious -93,964.103 GB-s for 100 yen), so none is shown
        pricing = _("amount credited: {amount}").format(amount=f.money(line.amount))
    elif line.tiers or (line.unit_price is None and line.tier_mode):
        # an adjustment of a tiered price stores no tiers: it is the difference
        # between the tiers applied to the whole month and what was billed earlier
        tiered = (_("{quantity}, volume tiers") if line.tier_mode == "volume"
                  else _("{quantity}, graduated tiers"))
        pricing = tiered.format(quantity=quantity)
        if line.quantity and not line.tiers:  # no tier rows: a unit's price on average
            pricing += ": " + _("{price} on average").format(
                price=f.price(_average(line.amount + line.discount, line.quantity)))
    elif line.unit_price is not None:
        pricing = f"{quantity} × {f.price(line.unit_price)}"
        if line.discount:  # gross and discount are rounded apart: gross - discount = amount
            pricing += f" = {f.money(line.amount + line.discount)}"
    else:
        pricing = quantity
    tiers = []
    for tier in line.billed_tiers:
        if tier.to_quantity is None:
            span = _("above {quantity} {unit}").format(quantity=f.number(tier.from_quantity),
                                                      unit=unit)
        else:
            span = f"{f.number(tier.from_quantity)} – {f.number(tier.to_quantity)} {unit}"
        tiers.append({"range": span,
                      "pricing": f"{f.number(tier.quantity)} × {f.price(tier.unit_price)}",
                      "amount": f.money(tier.amount)})
    details = []
    if line.allowance:
        details.append(_("included allowance used: {quantity} {unit}").format(
            quantity=f.number(line.allowance), unit=unit))
    if line.discount or line.discount_percent:
        details.append(_("discount {percent}: −{amount}").format(
            percent=f.percent(line.discount_percent / 100), amount=f.money(line.discount)))
    return {"no": line.line_no, "kind": line.kind,
            "description": describe(line, plan, f.locale, _, meters),
            "notes": ", ".join(notes), "quantity": quantity, "pricing": pricing,
            "tiers": tiers, "details": details, "amount": f.money(line.amount)}


def present(invoice: Invoice, issuer: Issuer, default_locale: str = "en",
            attachments: tuple[str, ...] = (), usage_withheld_bytes: int | None = None
            ) -> dict[str, Any]:
    """Every string a rendering shows, formatted once for the invoice's locale and its
    labels translated (i18n: English where no translation exists); `attachments` are
    the file names the mail carries (listed at the end); `usage_withheld_bytes`: the
    usage CSV was too large to attach (the mail says so and how to get it)."""
    locale = resolve_locale(invoice.locale, default_locale)
    language, _ = i18n.labels(locale)
    f = _Formats(locale, invoice.currency, invoice.billing_timezone)
    lines = sorted(invoice.lines, key=lambda line: line.line_no)
    words = _words(_)  # meter names and units in the label language, once per document
    # an operator's credit note (billing.credits) takes amounts off lines, not quantities
    operator_credit = invoice.document_kind == "credit_note" and invoice.credit_reason is not None
    issued = f.day(invoice.issued_at)
    credit = invoice.document_kind == "credit_note"  # owes nothing: no due date
    due = f.date(invoice.due_date) if invoice.due_date and not credit else ""
    period = f.month(invoice.period)
    total = f.money(invoice.total)
    if credit:
        payment_due = _("Nothing to pay: this amount is credited to your account.")
    elif due and invoice.payment_terms_days is not None:
        payment_due = _("Payment due {date} ({days} days).").format(
            date=due, days=invoice.payment_terms_days)
    else:
        payment_due = _("Payment due {date}.").format(date=due) if due else ""
    title = {"supplementary": _("Supplementary invoice {number}"),
             "credit_note": _("Credit note {number}")}.get(
        invoice.document_kind, _("Invoice {number}")).format(number=invoice.number)
    labels = {
        "heading": {"supplementary": _("SUPPLEMENTARY INVOICE"),
                    "credit_note": _("CREDIT NOTE")}.get(invoice.document_kind, _("INVOICE")),
        "corrects": _corrects(invoice, period, f, _),
        "number": _("No. {number}").format(number=invoice.number),
        "issued": _("Issued {date}").format(date=issued),
        "due": _("Due {date}").format(date=due) if due else "",
        "issuer_tax_id": _tax_id_label(issuer.tax_id, _),
        "bill_to": _("Bill to"),
        "bill_to_tax_id": _tax_id_label(invoice.bill_to_tax_id, _),
        "namespace": _("Namespace {namespace}").format(namespace=invoice.namespace),
        "plan": _("plan {plan}").format(plan=invoice.plan) if invoice.plan else "",
        "period": _("Period"),
        "description": _("Description"),
        "amount": _("Amount"),
        "subtotal": _("Subtotal"),
        "total": _("Total ({currency})").format(currency=invoice.currency),
        "payment_due": payment_due,
        "attached": (_("Attached: {files}.").format(files=", ".join(attachments))
                     if attachments else ""),
        "questions": (_("Questions: reply to this message or write to {email}.").format(
            email=issuer.email) if issuer.email else ""),
        "page": _("page {page}/{pages}"),  # formatted by the PDF for each page
        "hosted": _("View and download this invoice online"),
        "epc_qr": _("Scan to pay with your banking app"),
    }
    epc = epc_qr.payment(invoice, issuer)   # EUR with an IBAN: the EPC QR code
    vat_converted = ""
    if invoice.vat_currency and invoice.vat_tax_converted is not None:
        vat_converted = _("VAT in {currency}: {amount} (exchange rate 1 {invoice_currency} = "
                          "{rate} {currency}, {source})").format(
            currency=invoice.vat_currency, invoice_currency=invoice.currency,
            amount=_bare(format_currency(invoice.vat_tax_converted, invoice.vat_currency,
                                         locale=locale)),
            rate=_bare(format_decimal(_plain(invoice.vat_exchange_rate), locale=locale,
                                      decimal_quantization=False)),
            source=invoice.vat_exchange_source)
    preview = (_("{title} for {period}: {total}, due {date}.") if due
               else _("{title} for {period}: {total}.")).format(
        title=title, period=period, total=total, date=due)
    mail_note = ""
    if usage_withheld_bytes is not None:
        mail_note = _("The usage detail ({size}) is too large to attach; ask us for it by "
                      "replying to this message.").format(
            size=_size(usage_withheld_bytes, locale))
    return {
        "title": title,
        "subject": _("{title} from {issuer} for {period}: {total}").format(
            title=title, issuer=issuer.name, period=period, total=total),
        "labels": labels,
        "lang": language,
        # the direction of the customer's script, for the HTML (Arabic, Hebrew: rtl)
        "dir": "rtl" if locale.character_order == "right-to-left" else "ltr",
        "preview": preview,
        "mail_note": mail_note,
        "number": invoice.number,
        "issuer": {"name": issuer.name, "address": list(issuer.address),
                   "tax_id": issuer.tax_id, "email": issuer.email,
                   "payment_details": list(issuer.payment_details)},
        "bill_to": {"name": invoice.bill_to_name, "email": invoice.bill_to_email or "",
                    "namespace": invoice.namespace, "plan": invoice.plan or "",
                    "address": list(invoice.bill_to_address),
                    "tax_id": invoice.bill_to_tax_id or ""},
        "issued": issued,
        "due": due,
        "terms_days": invoice.payment_terms_days,
        # why a 0% invoice carries no tax (reverse charge, exemption)
        "tax_note": (_tax_note(invoice.tax_note, _)
                     if invoice.tax_note and not invoice.tax_rate else ""),
        # the VAT in ISSUER_VAT_CURRENCY, its rate and the rate's source (art. 230)
        "vat_converted": vat_converted,
        "period": period,
        "period_days": f.days(invoice.period_start, invoice.period_end),
        "currency": invoice.currency,
        "locale": str(locale),
        "lines": [_line_view(line, invoice.plan, f, _, words, operator_credit)
                  for line in lines],
        "subtotal": f.money(invoice.subtotal),
        "tax_label": _("Tax {rate}").format(rate=f.percent(invoice.tax_rate)),
        "tax": f.money(invoice.tax),
        "total": total,
        "attachments": list(attachments),
        "epc": epc,
        "epc_qr_uri": epc_qr.data_uri(epc) if epc else "",
    }


def _corrects(invoice: Invoice, period: str, f: _Formats, _: Callable[[str], str]) -> str:
    """The line naming the document this one corrects, credits or replaces: its number and
    its issue date (art. 219 and national rules such as art. 106j of Poland's VAT act)."""
    if invoice.replaces:
        return _("Replaces invoice {number} of {date} ({period})").format(
            number=invoice.replaces, date=_issued(invoice.replaces_issued, f), period=period)
    if not invoice.corrects:
        return ""
    text = _("Corrects invoice {number} of {date} ({period})").format(
        number=invoice.corrects, date=_issued(invoice.corrects_issued, f), period=period)
    reasons = {"duplicated_charge": _("duplicated charge"),
               "product_unsatisfactory": _("product unsatisfactory"),
               "order_change": _("order change"), "order_cancellation": _("order cancellation"),
               "fraudulent_charge": _("fraudulent charge"), "other": _("other")}
    if invoice.credit_reason in reasons:
        text += "; " + _("reason: {reason}").format(reason=reasons[invoice.credit_reason])
    return text


def _issued(day: date | None, f: _Formats) -> str:
    return f.date(day) if day else "?"  # a stored document always has it; "?" never guesses


# The legal bases the shipped price book (pricebook.yml) and docs/einvoicing.md give, in
# English as a plan or tax_note_override states them; shown in the document's language.
# Any other note is the operator's own wording and is shown as written.
STANDARD_TAX_NOTES = (
    N_("Reverse charge: VAT to be accounted for by the recipient, art. 196 Directive "
       "2006/112/EC"),
    N_("Not subject to EU VAT: place of supply outside the EU, art. 44 Directive 2006/112/EC"),
    N_("Exempt from VAT, art. 135(1) Directive 2006/112/EC"),
)


def _tax_note(note: str, _: Callable[[str], str]) -> str:
    return _(note) if note in STANDARD_TAX_NOTES else note


# the national name of a VAT ID, by the ID's own country (not the document's language)
_NATIONAL_VAT_LABELS = {"DE": "USt-IdNr.: {tax_id}", "PL": "NIP: {tax_id}"}


def _tax_id_label(tax_id: str | None, _: Callable[[str], str]) -> str:
    """"USt-IdNr.: DE…" for a German VAT ID and "NIP: PL…" for a Polish one in every
    language; another EU VAT ID is a "VAT ID" in the document's language; anything else
    (a Japanese T… registration, a US EIN) a "Tax ID"."""
    if not tax_id:
        return ""
    country = postal.vat_country(tax_id)
    if country in _NATIONAL_VAT_LABELS:
        return _NATIONAL_VAT_LABELS[country].format(tax_id=tax_id)
    if country:
        return _("VAT ID: {tax_id}").format(tax_id=tax_id)
    return _("Tax ID: {tax_id}").format(tax_id=tax_id)


def _size(size_bytes: int, locale: Locale) -> str:
    """2,7 kB, 9.2 MB: a file size in the locale's words (decimal units, one decimal)."""
    unit, scale = (("digital-megabyte", 1_000_000) if size_bytes >= 1_000_000
                   else ("digital-kilobyte", 1_000))
    value = (Decimal(size_bytes) / scale).quantize(Decimal("0.1"))
    return _bare(format_unit(value, unit, length="short", locale=locale))
