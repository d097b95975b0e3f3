"""The portal page: plain values in, one HTML document out. Pure.

Money, numbers and dates are formatted with babel for the tenant's locale;
charts are pygal's SVG, embedded as data: images (an image runs no script, so
pygal's own script stays inert). Jinja2 escapes every tenant-controlled string.
The stylesheet and the one script (signin.js: a link's `#token=` to /signin) are
inline and allowed by their hashes, so the Content-Security-Policy forbids every
other script and every other origin.
"""
from __future__ import annotations

import base64
import hashlib
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pygal
from babel.dates import format_date, format_datetime
from babel.numbers import format_currency, format_decimal
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape
from pygal.style import Style

from chargeback.billing.invoicing import METER_NAMES, Line
from chargeback.core.meters import GB_SECONDS, INVOCATIONS, UNITS
from chargeback.documents.presentation import describe
from chargeback.mail.i18n import N_, for_locale, resolve_locale
from chargeback.portal import series
from chargeback.portal.series import SeriesQuery

HERE = Path(__file__).resolve().parent
STYLESHEET = (HERE / "templates" / "portal.css").read_text(encoding="utf-8")
# the one script: a link's #token= (never sent to a server) posted to /signin (signin.py)
SIGNIN_SCRIPT = (HERE / "templates" / "signin.js").read_text(encoding="utf-8")


def _sha256(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


CSP = (f"default-src 'none'; script-src 'sha256-{_sha256(SIGNIN_SCRIPT)}'; "
       f"style-src 'sha256-{_sha256(STYLESHEET)}'; img-src 'self' data:; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
TOP_FUNCTIONS = 10
_env = Environment(loader=FileSystemLoader(HERE / "templates"), undefined=StrictUndefined,
                   autoescape=select_autoescape(default=True))
_env.globals["signin_script"] = SIGNIN_SCRIPT
_env.globals["Markup"] = Markup  # a tag put into a translated sentence (its text escaped)
# text sizes for a 480-unit-wide image that a 390 px phone shows about 350 px wide
_CHART_STYLE = Style(background="white", plot_background="white", font_family="sans-serif",
                     label_font_size=14, major_label_font_size=14, title_font_size=15,
                     value_font_size=13, tooltip_font_size=13,
                     colors=("#2563eb", "#16a34a", "#ea580c", "#9333ea", "#0891b2",
                             "#dc2626", "#ca8a04", "#4b5563"))


class _Formats:
    def __init__(self, locale_name: str, currency: str | None):
        self.locale = resolve_locale(locale_name)
        self.currency = currency
        self.language, self._translations = for_locale(self.locale)

    def t(self, label: str, **values) -> Markup:
        """`label` (words.py) in the tenant's language, `values` escaped into it."""
        return escape(self._translations.gettext(label)).format(**values)

    def money(self, value: Decimal | str | None) -> str:
        if value is None or self.currency is None:
            return "—" if value is None else str(value)
        return format_currency(Decimal(value), self.currency, locale=self.locale)

    def unit_price(self, value: Decimal | str | None) -> str:
        """A unit price with all its digits (0.0000002 stays that, not 0.00); none (tiers,
        a fee): a dash."""
        if value is None or self.currency is None:
            return "—"
        return format_currency(Decimal(value), self.currency, locale=self.locale,
                               decimal_quantization=False)

    def number(self, value: Decimal | int) -> str:
        return format_decimal(Decimal(value).quantize(Decimal("0.001")).normalize(),
                              locale=self.locale, decimal_quantization=False)

    def day(self, instant: datetime) -> str:
        return format_date(instant.date(), "medium", locale=self.locale)

    def day_of(self, day) -> str:
        return format_date(day, "medium", locale=self.locale)

    def instant(self, instant: datetime) -> str:
        return format_datetime(instant, "medium", tzinfo=instant.tzinfo, locale=self.locale)


SERIES_SHOWN = 8  # the largest series of a chart; the colours of _CHART_STYLE, in order


def _chart(title: str, q: SeriesQuery, values: dict[str, list], unit: str,
           f: _Formats) -> dict[str, Any]:
    """A stacked daily bar chart (pygal SVG as a data: URI), its legend and its numbers
    for the page: the legend is HTML under the image (it wraps at any width, where
    pygal's is drawn at a fixed size and shrinks with the image), the y axis in the
    tenant's locale, and the same figures as a table."""
    shown = sorted(values.items(), key=lambda kv: (-sum(kv[1]), kv[0]))[:SERIES_SHOWN]
    chart = pygal.StackedBar(style=_CHART_STYLE, width=480, height=300, js=[],
                             disable_xml_declaration=False, show_legend=False,
                             show_minor_x_labels=False, x_labels_major_every=5,
                             truncate_label=-1, value_formatter=lambda v: format_decimal(v, locale=f.locale),
                             y_title=str(f.t(unit)), no_data_text=str(f.t("No usage yet")), margin=6)
    days = list(q.starts())
    chart.x_labels = [str(start.day) for start in days]
    for label, points in shown:
        chart.add(label or "—", [float(v) for v in points])
    uri = "data:image/svg+xml;base64," + base64.b64encode(chart.render()).decode()
    return {"title": title, "uri": uri, "unit": unit,
            "legend": [label or "—" for label, _ in shown],
            "rows": [(f.day_of(day.date()), [f.number(points[i]) for _, points in shown])
                     for i, day in enumerate(days)] if shown else []}


def _capacity_series(q: SeriesQuery, by_sku: list[tuple], f: _Formats) -> dict[str, list]:
    """Capacity by meter and SKU, every meter in its own unit-hours, on one chart; each
    series named as the invoice names its meter, in the tenant's language."""
    out: dict[str, list] = {}
    for meter in sorted({row[1] for row in by_sku} - {GB_SECONDS, INVOCATIONS}):
        name = f.t(METER_NAMES[meter]) if meter in METER_NAMES else meter
        for label, points in series.dense(q, by_sku, meter).items():
            out[f"{name} {label}".strip()] = points
    return out


def _top(by_function: list[tuple]) -> list[tuple[str, Decimal, int]]:
    gb: dict[str, Decimal] = {}
    calls: dict[str, int] = {}
    for _, meter, function, _, quantity in by_function:
        if meter == GB_SECONDS:
            gb[function] = gb.get(function, 0) + quantity
        elif meter == INVOCATIONS:
            calls[function] = calls.get(function, 0) + quantity
    names = sorted(set(gb) | set(calls), key=lambda n: (-gb.get(n, 0), -calls.get(n, 0), n))
    return [(n, gb.get(n, Decimal(0)), calls.get(n, 0)) for n in names[:TOP_FUNCTIONS]]


PAYMENT_STATUS = {"open": N_("Open"), "partially_paid": N_("Partly paid"), "paid": N_("Paid"),
                  "overdue": N_("Overdue"), "voided": N_("Voided")}


def _documents(f: _Formats, docs: list[dict]) -> list[dict[str, Any]]:
    out = []
    for d in docs:
        money = _Formats(str(f.locale), d["currency"])
        status = d.get("payment_status")
        out.append({**d, "issued": f.day(d["issued_at"]), "total_text": money.money(d["total"]),
                    "status_text": f.t(PAYMENT_STATUS[status]) if status in PAYMENT_STATUS
                    else "",
                    "open_text": money.money(d["open"]) if status in (
                        "partially_paid", "overdue") else "",
                    "reminded": f.day(d["reminded_at"]) if d.get("reminded_at") else ""})
    return out


def _amounts(f: _Formats, by_currency: dict) -> list[str]:
    return [_Formats(str(f.locale), c).money(a) for c, a in by_currency.items() if a]


def _budget(f: _Formats, budget: dict) -> dict[str, Any]:
    money = _Formats(str(f.locale), budget["currency"])
    share = budget["share_used_percent"]
    return {**budget, "amount_text": money.money(budget["budget"]),
            "share_text": None if share is None else
            format_decimal(share, "#,##0.00", locale=f.locale) + " %",
            "crossings": [{**c, "when": f.instant(c["crossed_at"]),
                           "what": (f"{c['threshold_percent']} %" if c["kind"] == "threshold"
                                    else f.t("projected month total")),
                           "budget_text": money.money(c["budget"]),
                           "month_to_date_text": money.money(c["month_to_date"])}
                          for c in budget["crossings"]]}


def _lang(f: _Formats) -> str:
    """The language of the page's words (its catalog's; English without one), which a
    screen reader reads them in; numbers and dates follow the full locale."""
    return f.language


def render_page(name: str, locale: str, month: dict, q: SeriesQuery, by_function: list[tuple],
                by_sku: list[tuple], docs: list[dict], rejected: list[dict],
                budget: dict, periods: list[str] = (), accounts: dict | None = None) -> str:
    f = _Formats(locale, month["currency"])
    charts = [_chart(str(f.t(title)), q, values, unit, f) for title, values, unit in (
        ("GB-seconds by function", series.dense(q, by_function, GB_SECONDS), UNITS[GB_SECONDS]),
        ("Invocations by function", series.dense(q, by_function, INVOCATIONS),
         UNITS[INVOCATIONS]),
        ("Capacity by meter and SKU (unit-hours)", _capacity_series(q, by_sku, f), "unit-hours"))]
    # a line's description as its invoice words it (documents.presentation: a meter's
    # name with its SKU and spot flag, a base fee...), else a catalog label; its unit too
    lines = [{**line, "description": f.t(describe(Line(
                  line["kind"], line["description"], line["quantity"], line["unit"],
                  line["amount"], meter=line["meter"], sku=line["sku"], spot=line["spot"]),
                  month.get("plan"), f.locale)),
              "quantity_text": f"{f.number(line['quantity'])} {f.t(line['unit'])}",
              "allowance_text": (f"{f.number(line['allowance'])} {f.t(line['unit'])}"
                                 if line.get("allowance") else "—"),
              "unit_price_text": f.unit_price(line.get("unit_price")),
              "amount_text": f.money(line["amount"])} for line in month["lines"]]
    return _env.get_template("page.html").render(
        stylesheet=STYLESHEET, name=name, tenant=month["tenant"], lang=_lang(f), t=f.t,
        periods=list(periods),
        period=month["period"], as_of=f.instant(month["as_of"]), month=month, lines=lines,
        total=f.money(month["total"]), projected=f.money(month["projected_total"]),
        subtotal=f.money(month["subtotal"]), tax=f.money(month["tax"]), charts=charts,
        top=[(n, f.number(gb), f.number(calls)) for n, gb, calls in _top(by_function)],
        documents=_documents(f, docs), budget=_budget(f, budget),
        # billing.payment_store, billing.grant_store (portal.month.balances)
        balance=_amounts(f, (accounts or {}).get("balance", {})),
        credit=_amounts(f, (accounts or {}).get("credit", {}).get("balance", {})),
        rejected=[{**r, "received": f.instant(r["received_at"])} for r in rejected])


def render_invoice_page(name: str, locale: str, docs: list[dict], full: bool = False) -> str:
    """The hosted invoice page: the one document a limited token opens (`full`: a full
    session's view of one invoice, with a way back to the page)."""
    f = _Formats(locale, None)
    return _env.get_template("invoice_page.html").render(
        stylesheet=STYLESHEET, name=name, lang=_lang(f), t=f.t, full=full,
        documents=[{**d, "due": f.day_of(d["due_date"]) if d.get("due_date") else None}
                   for d in _documents(f, docs)])


def render_refusal(locale: str, kind: str, title: str, **values) -> str:
    """A refusal's page (refusals.py)."""
    f = _Formats(locale, None)
    return _env.get_template("refusal.html").render(stylesheet=STYLESHEET, lang=_lang(f), t=f.t,
                                                    kind=kind, title=f.t(title), **values)
