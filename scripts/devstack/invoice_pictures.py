"""Pictures of an invoice in three languages for docs/ (shown in
docs/functions/email-invoice.md): the HTML part at desktop width and at 320 CSS px in
headless Chromium, and the PDF's first page through pdftoppm. Needs `chromium` and
`poppler-utils` (Debian packages).

    .venv/bin/python -m devstack.invoice_pictures [OUT_DIR]   (from scripts/, default ../docs)
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from html import escape as html_escape
from datetime import date, datetime, timezone
from decimal import Decimal as D
from pathlib import Path

from chargeback.billing.invoicing import Line
from chargeback.documents.model import Invoice, Issuer
from chargeback.documents.presentation import present
from chargeback.documents.rendering import render_html
from chargeback.documents.message import attachment_names
from chargeback.documents.pdf import render_pdf

ISSUER = Issuer("Example Functions Ltd", ("1 Cloud Street", "10115 Berlin", "Germany"),
                "DE123456789", "accounts@example.com",
                ("IBAN DE89 3704 0044 0532 0130 00", "BIC COBADEFFXXX"))
LINES = (
    # descriptions as billing.invoicing stores them (English); documents show them localized
    Line("base_fee", "Base fee, plan functions", D("1"), "month", D("49.00"),
         unit_price=D("49.00"), line_no=1),
    Line("usage", "Function compute", D("1234567.89"), "GB-s", D("12.35"),
         meter="gb_seconds", tier_mode="graduated", allowance=D(400000),
         tiers=({"from": "0", "to": "400000", "unit_price": "0", "quantity": "400000",
                 "amount": "0"},
                {"from": "400000", "to": None, "unit_price": "0.0000148",
                 "quantity": "834567.89", "amount": "12.35"}), line_no=2),
    Line("capacity", "GPUs NVIDIA-A10G-resize-images-batch-worker (spot)",
         D("720"), "GPU-hours", D("172.80"), meter="gpu_hours",
         sku="NVIDIA-A10G-resize-images-batch-worker",
         spot=True, unit_price=D("0.60"), discount_percent=D(60),
         discount=D("259.20"), line_no=3),
    Line("usage", "Function invocations", D("2500000"), "invocations",
         D("0.50"), meter="invocations", unit_price=D("0.0000002"),
         adjustment_period="2026-08", line_no=4),
)
TENANTS = {
    "de": ("de_DE", "EUR", "Müller & Söhne Cloud GmbH", ("Hauptstraße 5", "80331 München"),
           "DE999999999"),
    "ja": ("ja_JP", "JPY", "株式会社テスト東京クラウド", ("東京都千代田区丸の内1-1-1",),
           "T1234567890123"),
    "ru": ("ru_RU", "RUB", "ООО «Ромашка Облако»", ("ул. Тверская, 7", "Москва 125009"),
           "7701234567"),
}


def invoice(locale: str, currency: str, name: str, address: tuple[str, ...],
            tax_id: str) -> Invoice:
    return Invoice(
        invoice_id="0b6c2d1e-7a4f-4c3e-9d2b-5f6a7b8c9d0e", number="INV-2026-000042",
        namespace="acme-shop", period="2026-09",
        period_start=datetime(2026, 9, 1, tzinfo=timezone.utc),
        period_end=datetime(2026, 10, 1, tzinfo=timezone.utc), billing_timezone="UTC",
        issued_at=datetime(2026, 10, 1, 1, 0, 5, tzinfo=timezone.utc), currency=currency,
        bill_to_name=name, bill_to_email="billing@acme.example", locale=locale,
        subtotal=D("234.65"), tax_rate=D("0.19"), tax=D("44.58"), total=D("279.23"),
        lines=LINES, plan="functions", bill_to_address=address, bill_to_tax_id=tax_id,
        due_date=date(2026, 10, 15), payment_terms_days=14)


def main(out: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium or not shutil.which("pdftoppm"):
        sys.exit("invoice_pictures: needs chromium and pdftoppm (apt-get install chromium "
                 "poppler-utils)")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for key, fields in TENANTS.items():
            doc = invoice(*fields)
            view = present(doc, ISSUER, attachments=attachment_names(doc, ISSUER.name, True))
            page = Path(tmp) / f"{key}.html"
            page.write_text(render_html(view), encoding="utf-8")
            for label, width in (("desktop", 800), ("320px", 320)):
                subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                "--hide-scrollbars", f"--window-size={width},1500",
                                f"--screenshot={out / f'invoice-{key}-html-{label}.png'}",
                                page.as_uri()], check=True, capture_output=True, timeout=120)
            # what a phone sees: the mail's width in a 320 px frame (headless Chromium's
            # window is at least 500 px wide, a frame can be narrower)
            probe = Path(tmp) / f"{key}-probe.html"
            probe.write_text(
                '<iframe id="f" style="width:320px;height:1500px;border:0" srcdoc="'
                + html_escape(render_html(view)) + '"></iframe><script>'
                "document.getElementById('f').onload = function () { document.title = "
                "'scrollWidth=' + this.contentDocument.documentElement.scrollWidth + ' of ' + "
                "this.contentDocument.documentElement.clientWidth; };"
                "</script>", encoding="utf-8")
            dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                                  "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
                                 check=True, capture_output=True, text=True, timeout=120).stdout
            width, _, room = dom.split("scrollWidth=", 1)[1].split("<", 1)[0].partition(" of ")
            print(f"{key}: the HTML part is {width} CSS px wide in a 320 px frame "
                  f"({room} px inside its scroll bar): "
                  + ("fits" if int(width) <= int(room) else "SCROLLS SIDEWAYS"))
            pdf = Path(tmp) / f"{key}.pdf"
            pdf.write_bytes(render_pdf(view, doc.issued_at))
            subprocess.run(["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1",
                            "-singlefile", str(pdf), str(out / f"invoice-{key}-pdf")],
                           check=True, timeout=120)
            print(f"{key}: {out}/invoice-{key}-html-desktop.png, -html-320px.png, -pdf.png")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else
         Path(__file__).resolve().parents[2] / "docs")
