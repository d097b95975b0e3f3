"""The invoice as PDF (fpdf2, pure Python), from the same presentation as the HTML
and text parts (invoice_document.present). Pure: bytes in memory, no files.

Fonts: the PDF core font Helvetica in WinAnsi (Windows-1252) encoding, so
nothing is embedded and no font file ships. It covers Western European text
(ä, é, ß, ø, €, –, “”); any other character is reduced to its base letter
(ő → o, Ł → L) or else shown as '?', never an error: the HTML and text parts
carry the exact name. The document date is the invoice's issue instant, so
the same invoice gives the same bytes.
"""
from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

FONT = "helvetica"
_ENCODING = "windows-1252"
_MARGIN_MM = 18
_AMOUNT_W = 34
_NO_W = 9
_GREY = (90, 98, 110)


# Letters and signs NFKD does not reduce, and their nearest WinAnsi spelling.
_NEAREST = str.maketrans({"\u2212": "-", "\u2010": "-", "\u2011": "-", "\u221e": "inf",
                          "\u0141": "L", "\u0142": "l", "\u0110": "D", "\u0111": "d",
                          "\u0131": "i", "\u0126": "H", "\u0127": "h", "\u0166": "T",
                          "\u0167": "t", "\u014a": "N", "\u014b": "n"})


_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def pdf_safe(text: str) -> str:
    """`text` as the core font can show it: WinAnsi characters kept, others reduced."""
    text = str(text)
    try:  # the common case: nothing to do
        text.encode(_ENCODING)
        if not _CONTROLS.search(text):
            return text
    except UnicodeEncodeError:
        pass
    out = []
    for char in text.translate(_NEAREST):
        if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(" ")  # line breaks and controls a tenant may have typed
            continue
        try:
            char.encode(_ENCODING)
            out.append(char)
            continue
        except UnicodeEncodeError:
            pass
        reduced = "".join(c for c in unicodedata.normalize("NFKD", char)
                          if not unicodedata.combining(c))
        try:
            reduced.encode(_ENCODING)
            out.append(reduced or "?")
        except UnicodeEncodeError:
            out.append("?")
    return "".join(out)


class _Invoice(FPDF):
    def __init__(self, view: dict[str, Any]):
        super().__init__(orientation="P", unit="mm", format="A4")
        self.view = view
        self.core_fonts_encoding = _ENCODING
        self.set_margins(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM)
        self.set_auto_page_break(True, margin=_MARGIN_MM + 6)

    def footer(self):
        self.set_y(-_MARGIN_MM)
        self.set_font(FONT, size=8)
        self.set_text_color(*_GREY)
        self.cell(0, 5, pdf_safe(f"{self.view['title']} · page {self.page_no()}/{{nb}}"),
                  align="C")

    def text_line(self, text: str, *, size: float = 10, style: str = "", grey: bool = False,
                  align: str = "L", width: float = 0, height: float = 5) -> None:
        self.set_font(FONT, style=style, size=size)
        self.set_text_color(*(_GREY if grey else (17, 24, 39)))
        text = pdf_safe(text)
        room = width or (self.w - self.r_margin - self.x)
        if self.get_string_width(text) < room - 2 * self.c_margin:  # one line: no wrapping
            self.cell(room, height, text, align=align, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        else:
            self.multi_cell(width, height, text, align=align,
                            new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def render_pdf(view: dict[str, Any], issued_at: datetime) -> bytes:
    """The invoice as PDF bytes; identical for identical input."""
    pdf = _Invoice(view)
    pdf.set_creation_date(issued_at)
    pdf.set_producer("chargeback")
    pdf.set_title(pdf_safe(view["title"]))
    pdf.set_author(pdf_safe(view["issuer"]["name"]))
    pdf.set_subject(pdf_safe(f"{view['bill_to']['name']}, {view['period']}"))
    pdf.add_page()
    full_w = pdf.epw

    # Header: issuer on the left, invoice number and date on the right.
    top = pdf.get_y()
    pdf.set_xy(pdf.l_margin + full_w / 2, top)
    pdf.text_line(view["heading"].upper(), size=20, style="B", align="R",
                  width=full_w / 2, height=9)
    corrects = [view["corrects"]] if view["corrects"] else []
    for text in (f"No. {view['number']}", *corrects, f"Issued {view['issued']}"):
        pdf.set_x(pdf.l_margin + full_w / 2)
        pdf.text_line(text, align="R", width=full_w / 2, grey=True)
    right_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin, top)
    pdf.text_line(view["issuer"]["name"], size=13, style="B", width=full_w * 0.55, height=7)
    for row in view["issuer"]["address"]:
        pdf.text_line(row, grey=True, width=full_w * 0.55)
    if view["issuer"]["tax_id"]:
        pdf.text_line(f"Tax ID: {view['issuer']['tax_id']}", grey=True, width=full_w * 0.55)
    pdf.set_y(max(pdf.get_y(), right_bottom) + 8)

    # Bill to and period.
    top = pdf.get_y()
    bill_to = view["bill_to"]
    pdf.text_line("BILL TO", size=8, grey=True, width=full_w * 0.6)
    pdf.text_line(bill_to["name"], style="B", width=full_w * 0.6)
    if bill_to["email"]:
        pdf.text_line(bill_to["email"], grey=True, width=full_w * 0.6)
    plan = f" · plan {bill_to['plan']}" if bill_to["plan"] else ""
    pdf.text_line(f"Namespace {bill_to['namespace']}{plan}", grey=True, width=full_w * 0.6)
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + full_w * 0.6, top)
    for text, kwargs in (("PERIOD", {"size": 8, "grey": True}), (view["period"], {"style": "B"}),
                         (view["period_days"], {"grey": True})):
        pdf.set_x(pdf.l_margin + full_w * 0.6)
        pdf.text_line(text, align="R", width=full_w * 0.4, **kwargs)
    pdf.set_y(max(pdf.get_y(), left_bottom) + 8)

    _lines_table(pdf, view, full_w)
    _totals(pdf, view, full_w)
    if view["attachments"]:
        pdf.ln(8)
        pdf.text_line(f"Sent with: {', '.join(view['attachments'])}.", size=8, grey=True)
    return bytes(pdf.output())


def _rule(pdf: FPDF, width: float, thick: bool = False) -> None:
    pdf.set_draw_color(17, 24, 39) if thick else pdf.set_draw_color(220, 223, 228)
    pdf.set_line_width(0.5 if thick else 0.2)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())


def _lines_table(pdf: _Invoice, view: dict[str, Any], full_w: float) -> None:
    desc_w = full_w - _NO_W - _AMOUNT_W
    pdf.set_font(FONT, style="B", size=8)
    pdf.set_text_color(*_GREY)
    pdf.cell(_NO_W, 6, "#")
    pdf.cell(desc_w, 6, "DESCRIPTION")
    pdf.cell(_AMOUNT_W, 6, "AMOUNT", align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _rule(pdf, full_w, thick=True)
    pdf.ln(1.5)
    for line in view["lines"]:
        rows = [(line["description"], "B", 10)]
        if line["notes"]:
            rows.append((line["notes"], "", 8.5))
        rows.append((line["pricing"], "", 9))
        rows += [(f"    {t['range']}: {t['pricing']} = {t['amount']}", "", 8.5)
                 for t in line["tiers"]]
        rows += [(detail, "", 8.5) for detail in line["details"]]
        if pdf.will_page_break(5 * len(rows) + 3):
            pdf.add_page()
        top = pdf.get_y()
        pdf.set_font(FONT, size=9)
        pdf.set_text_color(*_GREY)
        pdf.cell(_NO_W, 5, str(line["no"]))
        pdf.set_font(FONT, size=10)
        pdf.set_text_color(17, 24, 39)
        pdf.cell(desc_w, 5, "")
        pdf.cell(_AMOUNT_W, 5, pdf_safe(line["amount"]), align="R")
        pdf.set_xy(pdf.l_margin + _NO_W, top)
        for text, style, size in rows:
            pdf.set_x(pdf.l_margin + _NO_W)
            pdf.text_line(text, style=style, size=size, width=desc_w - 2, height=4.6,
                          grey=style != "B")
        pdf.ln(1.5)
        _rule(pdf, full_w)
        pdf.ln(1.5)


def _totals(pdf: _Invoice, view: dict[str, Any], full_w: float) -> None:
    label_w = full_w - _AMOUNT_W
    if pdf.will_page_break(24):
        pdf.add_page()
    pdf.ln(1)
    for label, value in (("Subtotal", view["subtotal"]), (view["tax_label"], view["tax"])):
        pdf.set_font(FONT, size=10)
        pdf.set_text_color(*_GREY)
        pdf.cell(label_w, 6, pdf_safe(label), align="R")
        pdf.set_text_color(17, 24, 39)
        pdf.cell(_AMOUNT_W, 6, pdf_safe(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    pdf.set_draw_color(17, 24, 39)
    pdf.set_line_width(0.5)
    pdf.line(pdf.l_margin + full_w / 2, pdf.get_y(), pdf.l_margin + full_w, pdf.get_y())
    pdf.ln(1)
    pdf.set_font(FONT, style="B", size=11)
    pdf.cell(label_w, 7, pdf_safe(f"Total ({view['currency']})"), align="R")
    pdf.cell(_AMOUNT_W, 7, pdf_safe(view["total"]), align="R",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
