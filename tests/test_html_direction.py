"""A right-to-left customer's mail reads right to left without reordering an amount: the
HTML states its direction, each tenant-controlled name and address and each amount is
isolated in a <bdi>, and neither the HTML nor the text part carries a bidi control
character (CLDR puts U+200F into Hebrew and Arabic amounts; some clients show a box)."""
from __future__ import annotations

import dataclasses
import re
import tempfile

import lxml.html
import pytest

from chargeback.core.settings import load
from chargeback.documents import rendered as documents

from .documents_helpers import INVOICE, ISSUER

SETTINGS = load({"SECRETS_DIR": tempfile.mkdtemp()})
_CONTROLS = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
HEBREW = dataclasses.replace(INVOICE, locale="he_IL", bill_to_name="חברת אור בע״מ",
                             bill_to_address=("רחוב הרצל 10", "6100001 תל אביב", "IL"))


def _isolated(html: str) -> set[str]:
    return {" ".join(b.text_content().split()) for b in lxml.html.fromstring(html).iter("bdi")}


@pytest.mark.parametrize("locale, direction", [("he_IL", "rtl"), ("ar_SA", "rtl"),
                                               ("de_DE", "ltr"), ("en", "ltr")])
def test_the_html_states_the_direction_of_the_customers_script(locale, direction):
    html = documents.render(dataclasses.replace(HEBREW, locale=locale), ISSUER, SETTINGS).html
    root = lxml.html.fromstring(html)
    assert root.get("dir") == direction and root.find("body").get("dir") == direction


@pytest.mark.parametrize("locale", ["he_IL", "ar_SA"])
def test_names_addresses_and_amounts_are_isolated_and_no_bidi_control_is_left(locale):
    rendered = documents.render(dataclasses.replace(HEBREW, locale=locale), ISSUER, SETTINGS)
    view = rendered.view
    isolated = _isolated(rendered.html)
    shown = [HEBREW.bill_to_name, *HEBREW.bill_to_address, ISSUER.name, *ISSUER.address,
             view["subtotal"], view["tax"], view["total"],
             *(line["amount"] for line in view["lines"]),
             *(tier["amount"] for line in view["lines"] for tier in line["tiers"])]
    for text in shown:
        assert " ".join(text.split()) in isolated, text
    # 1469.06 € as CLDR writes it for Hebrew and Arabic carries U+200F / U+061C: not here
    for part in (rendered.html, rendered.text, rendered.view["subject"]):
        assert not _CONTROLS.search(part)
    assert "1,469.06" in view["total"] or "1.469,06" in view["total"] or \
        "١٬٤٦٩٫٠٦" in view["total"]
