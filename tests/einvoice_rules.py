"""The EN 16931 business rules (the Commission's Schematron for CII, tests/data/en16931)
run over an e-invoice with Saxon: what factur-x's XSD check cannot see (totals that add
up, tax categories, references, codes)."""
from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from saxonche import PySaxonProcessor

RULES = Path(__file__).parent / "data" / "en16931" / "EN16931-CII-validation.xslt"
_FAILED = re.compile(r"<svrl:failed-assert\b(.*?)</svrl:failed-assert>", re.S)
_ID = re.compile(r'\bid="([^"]+)"')
_TEXT = re.compile(r"<svrl:text>(.*?)</svrl:text>", re.S)


# what EN 16931 asks of both parties (BR-08 to BR-11, BR-S-02, BR-CO-26): an address
# with its country and a VAT ID; the database tests give them so every rule is checked
SELLER = {"ISSUER_NAME": "Example Functions Ltd", "ISSUER_TAX_ID": "DE123456789",
          "ISSUER_ADDRESS": "Friedrichstraße 1\\n10117 Berlin\\nDeutschland"}


def give_buyer_address(conn, namespace: str) -> None:
    conn.execute("UPDATE openfaas_metering.tenants SET address_override = %s,"
                 " tax_id_override = 'FR40303265045' WHERE namespace = %s",
                 ("12 Rue de Rivoli\n75001 Paris\nFrance", namespace))


def broken_rules(xml: bytes) -> list[str]:
    """'BR-CO-15: <the rule's text>' for each fatal rule the XML breaks (warnings aside)."""
    return broken_rules_of(xml, RULES)


def assert_en16931(xml: bytes) -> None:
    """Valid against factur-x's EN 16931 schema and breaking none of the business rules."""
    import facturx
    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    broken = broken_rules(xml)
    assert not broken, broken


# UBL: the Commission's EN 16931 UBL rules (compiled XSLT), and Peppol BIS Billing 3.0 and
# XRechnung 3.0 Schematron (.sch) compiled here with SchXslt (tests/data/*/README.md)
DATA = Path(__file__).parent / "data"
UBL_RULES = DATA / "en16931-ubl" / "EN16931-UBL-validation.xslt"
PEPPOL_RULES = DATA / "peppol" / "PEPPOL-EN16931-UBL.sch"
XRECHNUNG_RULES = DATA / "xrechnung" / "ubl" / "XRechnung-UBL-validation.sch"
_SCHXSLT = DATA / "schxslt" / "xslt" / "2.0" / "pipeline-for-svrl.xsl"


@lru_cache(maxsize=1)
def _processor() -> PySaxonProcessor:
    return PySaxonProcessor(license=False)


@lru_cache(maxsize=None)
def _compiled(path: Path):
    """The rule set at `path`, compiled once a session (the Commission's EN 16931 XSLT
    alone takes seconds)."""
    processor = _processor()
    xslt = processor.new_xslt30_processor()
    if path.suffix == ".sch":   # Schematron -> XSLT with SchXslt's pipeline, then compiled
        text = xslt.compile_stylesheet(stylesheet_file=str(_SCHXSLT)).transform_to_string(
            xdm_node=processor.parse_xml(xml_file_name=str(path)))
        return xslt.compile_stylesheet(stylesheet_text=text)
    return xslt.compile_stylesheet(stylesheet_file=str(path))


def broken_rules_of(xml: bytes, path: Path) -> list[str]:
    """'<rule id>: <text>' for each fatal rule of the rule set at `path` the XML breaks
    (warnings and information aside)."""
    report = _compiled(path).transform_to_string(
        xdm_node=_processor().parse_xml(xml_text=xml.decode()))
    broken = []
    for failure in _FAILED.findall(report):
        head = failure.split(">", 1)[0]
        if 'flag="warning"' in head or 'flag="information"' in head:
            continue
        rule = _ID.search(head)
        text = _TEXT.search(failure)
        broken.append(f"{rule.group(1) if rule else '?'}: "
                      f"{' '.join(text.group(1).split()) if text else failure[:200]}")
    return broken
