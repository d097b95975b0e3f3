"""The invoice as PDF (fpdf2, pure Python), from the same presentation as the HTML
and text parts (invoice_document.present). Pure: bytes in memory, no files
but the font cache (documents.fonts).

Fonts: Noto, embedded as subsets (documents.fonts), so any script a tenant's
name, a locale's month or a currency sign uses is shown as written: Latin
with its extensions, Cyrillic, Greek, Arabic, Hebrew, Thai, Devanagari, CJK,
emoji. Line breaks and other
control characters a tenant may have typed become spaces. A line holding
Arabic or Hebrew is set as its runs of one direction side by side, in the
order they are written, each right-to-left run shaped and set right to left
in one font with its spaces: a reader of the text layer (pdftotext, pypdf)
gets every word back in its order; digits next to such a run stand where
they are written (after "רחוב הרצל", not before it as the bidi algorithm would
put them). The document date is the invoice's issue instant, so the same
invoice gives the same bytes.
"""
from __future__ import annotations

import io
import re
from datetime import datetime
from typing import Any

from fpdf import FPDF
from fpdf.enums import XPos, YPos

from chargeback.documents import einvoice, epc_qr, fonts

_MARGIN_MM = 18
EPC_QR_MM = 32   # EPC069-12 asks for at least 2 x 2 cm; 32 mm with the quiet zone
_AMOUNT_W = 34
_NO_W = 9
_GREY = (90, 98, 110)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# bidi marks and embeddings (CLDR puts U+200F in Arabic and Hebrew amounts): fpdf2 orders
# the text itself (Unicode bidi algorithm, with shaping); a font has no glyph for them
_BIDI_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


# a right-to-left run: Hebrew or Arabic letters, and the spaces between them
_RTL = "\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc"
_RTL_RUN = re.compile(f"[{_RTL}](?:[{_RTL} ]*[{_RTL}])?")


def pdf_safe(text: str) -> str:
    """`text` on one line: control characters and line breaks become spaces, bidi
    controls go."""
    return _BIDI_CONTROLS.sub("", _CONTROLS.sub(" ", str(text)))


def _all_text(value: Any) -> str:
    """Every string of the view, joined (which scripts the document uses)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "".join(_all_text(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return "".join(_all_text(v) for v in value)
    return str(value)


class _Invoice(FPDF):
    def __init__(self, view: dict[str, Any]):
        # PDF/A-3b: an archivable PDF that may carry the e-invoice XML (documents.einvoice)
        super().__init__(orientation="P", unit="mm", format="A4", enforce_compliance="PDFA_3B")
        self.view = view
        self.text_font = fonts.register(self, _all_text(view))
        self.set_margins(_MARGIN_MM, _MARGIN_MM, _MARGIN_MM)
        self.set_auto_page_break(True, margin=_MARGIN_MM + 6)

    def footer(self):
        self.set_y(-_MARGIN_MM)
        self.set_font(self.text_font, size=8)
        self.set_text_color(*_GREY)
        page = self.view["labels"]["page"].format(page=self.page_no(), pages="{nb}")
        self.cell(0, 5, pdf_safe(f"{self.view['title']} · {page}"), align="C")

    def text_line(self, text: str, *, size: float = 10, style: str = "", grey: bool = False,
                  align: str = "L", width: float = 0, height: float = 5) -> None:
        """`text` from the current x, `width` wide (0: to the right margin), wrapped
        onto as many lines as it needs; the cursor ends at the left margin below it."""
        self.set_font(self.text_font, style=style, size=size)
        self.set_text_color(*(_GREY if grey else (17, 24, 39)))
        left = self.x
        room = width or (self.w - self.r_margin - left)
        for row in self._wrapped(pdf_safe(text), room - 2 * self.c_margin):
            self._font_afresh(style, size)
            self.set_x(left)
            if _RTL_RUN.search(row):
                self._runs(row, style, size, room, height, align)
            else:
                self.cell(room, height, row, align=align, new_x=XPos.LMARGIN,
                          new_y=YPos.NEXT)

    def _runs(self, row: str, style: str, size: float, room: float, height: float,
              align: str) -> None:
        """`row`, which holds Arabic or Hebrew, as its runs of one direction side by side
        in the order they are written, each right-to-left run set (shaped, right to left)
        in one font with its spaces: a reader of the text layer (pdftotext, pypdf) then
        gets the words back in their order, not the visual order a line's bidi gives."""
        plain = (self.text_font, {})
        parts, at = [], 0
        for match in _RTL_RUN.finditer(row):
            if match.start() > at:
                parts.append((row[at:match.start()], *plain))
            parts.append((match.group(), *(fonts.right_to_left(match.group()) or plain)))
            at = match.end()
        if at < len(row):
            parts.append((row[at:], *plain))
        widths = []
        for text, family, features in parts:
            self.set_font(family, style=style, size=size)
            self.set_text_shaping(True, features=features)
            widths.append(self.get_string_width(text))
        free = room - 2 * self.c_margin - sum(widths)
        x = self.x + self.c_margin + {"R": free, "C": free / 2}.get(align, 0)
        top, margin = self.y, self.c_margin
        self.c_margin = 0
        for (text, family, features), width in zip(parts, widths):
            self.set_font(family, style=style, size=size + 1)  # stated afresh (_font_afresh)
            self.set_font(family, style=style, size=size)
            self.set_text_shaping(True, features=features)
            self.set_xy(x, top)
            self.cell(width, height, text)
            x += width
        self.set_text_shaping(True)
        self.c_margin = margin
        self.set_xy(self.l_margin, top + height)

    def fitting_size(self, text: str, style: str, size: float, width: float) -> float:
        """`size`, or the size (in half points) at which `text` fits on one line of `width`:
        a title is one word ("RECHNUNGSKORREKTUR" was cut in two at 20 pt)."""
        self.set_font(self.text_font, style=style, size=size)
        wide = self.get_string_width(pdf_safe(text))
        room = width - 2 * self.c_margin
        return size if wide <= room else int(2 * size * room / wide) / 2

    def _font_afresh(self, style: str, size: float) -> None:
        """Set the text font so that the PDF states it again. A cell that starts in a
        fallback font (Japanese) states its fonts inside its own graphics state; fpdf2
        then takes its font as still stated and states none for the next cell, which a
        reader sets in the font last stated outside (seen: a wrapped line larger than
        the first). Another size first makes fpdf2 state the font."""
        self.set_font(self.text_font, style=style, size=size + 1)
        self.set_font(self.text_font, style=style, size=size)

    def _wrapped(self, text: str, room: float) -> list[str]:
        """`text` as lines no wider than `room` (the current font): broken at spaces,
        and a word wider than a line between its characters (Japanese has no spaces).
        Each line is set as its own cell (fpdf2's multi_cell set a wrapped line with
        fallback-font characters over itself)."""
        def fits(candidate: str) -> bool:
            return self.get_string_width(candidate) <= room

        if fits(text):  # most lines: one measure, not one per word
            return [text]
        rows: list[str] = []
        row: str | None = None  # None: nothing on the line yet (leading spaces are kept)
        for word in text.split(" "):
            candidate = word if row is None else f"{row} {word}"
            if fits(candidate):
                row = candidate
                continue
            if row is not None:
                rows.append(row)
            row = None
            for char in word:  # a word no line holds: cut between characters
                if row and not fits(row + char):
                    rows.append(row)
                    row = None
                row = (row or "") + char
        return rows if row is None else rows + [row]


def render_pdf(view: dict[str, Any], issued_at: datetime, xml: bytes | None = None) -> bytes:
    """The invoice as PDF bytes; identical for identical input. `xml`: the EN 16931
    e-invoice, embedded as the PDF/A-3 associated file factur-x.xml (dated at issue)."""
    pdf = _Invoice(view)
    if xml is not None:
        pdf.embed_file(bytes=xml, basename=einvoice.FILENAME, mime_type="text/xml",
                       creation_date=issued_at, modification_date=issued_at,
                       associated_file_relationship="Data", desc="Factur-X EN 16931 invoice")
    pdf.set_creation_date(issued_at)
    pdf.set_producer("chargeback")
    pdf.set_title(pdf_safe(view["title"]))
    pdf.set_author(pdf_safe(view["issuer"]["name"]))
    pdf.set_subject(pdf_safe(f"{view['bill_to']['name']}, {view['period']}"))
    pdf.set_xmp_metadata(einvoice.xmp(
        pdf_safe(view["title"]), pdf_safe(view["issuer"]["name"]),
        pdf_safe(f"{view['bill_to']['name']}, {view['period']}"), issued_at, xml is not None))
    pdf.add_page()
    full_w = pdf.epw

    # Header: issuer on the left, invoice number and date on the right.
    top = pdf.get_y()
    pdf.set_xy(pdf.l_margin + full_w / 2, top)
    labels = view["labels"]
    pdf.text_line(labels["heading"], size=pdf.fitting_size(labels["heading"], "B", 20, full_w / 2),
                  style="B", align="R", width=full_w / 2, height=9)
    for text in (labels["number"], labels["issued"], *([labels["corrects"]] if labels["corrects"] else []),
                 *([labels["due"]] if labels["due"] else [])):
        pdf.set_x(pdf.l_margin + full_w / 2)
        pdf.text_line(text, align="R", width=full_w / 2, grey=True)
    right_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin, top)
    pdf.text_line(view["issuer"]["name"], size=13, style="B", width=full_w * 0.55, height=7)
    for row in view["issuer"]["address"]:
        pdf.text_line(row, grey=True, width=full_w * 0.55)
    if labels["issuer_tax_id"]:
        pdf.text_line(labels["issuer_tax_id"], grey=True, width=full_w * 0.55)
    pdf.set_y(max(pdf.get_y(), right_bottom) + 8)

    # Bill to and period.
    top = pdf.get_y()
    bill_to = view["bill_to"]
    pdf.text_line(labels["bill_to"].upper(), size=8, grey=True, width=full_w * 0.6)
    pdf.text_line(bill_to["name"], style="B", width=full_w * 0.6)
    for row in bill_to["address"]:
        pdf.text_line(row, grey=True, width=full_w * 0.6)
    if labels["bill_to_tax_id"]:
        pdf.text_line(labels["bill_to_tax_id"], grey=True, width=full_w * 0.6)
    if bill_to["email"]:
        pdf.text_line(bill_to["email"], grey=True, width=full_w * 0.6)
    plan = f" · {labels['plan']}" if labels["plan"] else ""
    pdf.text_line(f"{labels['namespace']}{plan}", grey=True, width=full_w * 0.6)
    left_bottom = pdf.get_y()
    pdf.set_xy(pdf.l_margin + full_w * 0.6, top)
    for text, kwargs in ((labels["period"].upper(), {"size": 8, "grey": True}),
                         (view["period"], {"style": "B"}),
                         (view["period_days"], {"grey": True})):
        pdf.set_x(pdf.l_margin + full_w * 0.6)
        pdf.text_line(text, align="R", width=full_w * 0.4, **kwargs)
    pdf.set_y(max(pdf.get_y(), left_bottom) + 8)

    _lines_table(pdf, view, full_w)
    _totals(pdf, view, full_w)
    pdf.ln(6)
    if view["vat_converted"]:
        pdf.text_line(view["vat_converted"], size=9)
    if view["tax_note"]:
        pdf.text_line(view["tax_note"], size=9)
    if labels["payment_due"]:
        pdf.text_line(labels["payment_due"], size=9)
    for row in view["issuer"]["payment_details"]:
        pdf.text_line(row, size=9)
    if view["epc"]:   # the EPC QR code (documents.epc_qr), 32 mm wide with its quiet zone
        pdf.ln(2)
        if pdf.get_y() + EPC_QR_MM + 6 > pdf.h - pdf.b_margin:
            pdf.add_page()
        pdf.image(io.BytesIO(epc_qr.png(view["epc"])), x=pdf.l_margin, w=EPC_QR_MM,
                  h=EPC_QR_MM)
        pdf.text_line(view["labels"]["epc_qr"], size=8, grey=True)
    if labels["attached"]:
        pdf.ln(2)
        pdf.text_line(labels["attached"], size=8, grey=True)
    return bytes(pdf.output())


def _rule(pdf: FPDF, width: float, thick: bool = False) -> None:
    pdf.set_draw_color(17, 24, 39) if thick else pdf.set_draw_color(220, 223, 228)
    pdf.set_line_width(0.5 if thick else 0.2)
    pdf.line(pdf.l_margin, pdf.get_y(), pdf.l_margin + width, pdf.get_y())


def _lines_table(pdf: _Invoice, view: dict[str, Any], full_w: float) -> None:
    desc_w = full_w - _NO_W - _AMOUNT_W
    pdf.set_font(pdf.text_font, style="B", size=8)
    pdf.set_text_color(*_GREY)
    pdf.cell(_NO_W, 6, "#")
    pdf.cell(desc_w, 6, view["labels"]["description"].upper())
    pdf.cell(_AMOUNT_W, 6, view["labels"]["amount"].upper(), align="R",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
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
        pdf.set_font(pdf.text_font, size=9)
        pdf.set_text_color(*_GREY)
        pdf.cell(_NO_W, 5, str(line["no"]))
        pdf.set_font(pdf.text_font, size=10)
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
    for label, value in ((view["labels"]["subtotal"], view["subtotal"]),
                         (view["tax_label"], view["tax"])):
        pdf.set_font(pdf.text_font, size=10)
        pdf.set_text_color(*_GREY)
        pdf.cell(label_w, 6, pdf_safe(label), align="R")
        pdf.set_text_color(17, 24, 39)
        pdf._font_afresh("", 10)  # the label may have ended in a fallback font (合計)
        pdf.cell(_AMOUNT_W, 6, pdf_safe(value), align="R", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    pdf.set_draw_color(17, 24, 39)
    pdf.set_line_width(0.5)
    pdf.line(pdf.l_margin + full_w / 2, pdf.get_y(), pdf.l_margin + full_w, pdf.get_y())
    pdf.ln(1)
    pdf.set_font(pdf.text_font, style="B", size=11)
    pdf.cell(label_w, 7, pdf_safe(view["labels"]["total"]), align="R")
    pdf._font_afresh("B", 11)
    pdf.cell(_AMOUNT_W, 7, pdf_safe(view["total"]), align="R",
             new_x=XPos.LMARGIN, new_y=YPos.NEXT)
