"""Postal addresses as EN 16931 wants them (street lines, postcode, city, ISO 3166
country code), from a namespace's structured annotations or from free text. Pure.

Free text (the `<prefix>address` annotation, `tenants.address_override`,
ISSUER_ADDRESS) parses when its last line names a country ("Germany",
"Deutschland", "DE", any CLDR name in the catalog languages) and the line
before it holds the city, with the postcode before it ("80331 München",
"00-950 Warszawa") or after it ("London SW1A 1AA", "Springfield, IL 62701").
Everything above is street lines. Nothing else is guessed: an address that
does not parse holds the invoice (billing.legal) with the reason.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

from babel import Locale

# the languages of our catalogs, plus those whose customers we address in their script
_LANGUAGES = ("en", "de", "fr", "es", "pl", "ja", "ru", "it", "nl", "el", "ar", "he", "th",
              "hi", "ko", "zh")
# a postcode: digits, with a dash, a space or letters (75001, 00-950, 1015 BS, SW1A 1AA)
_LEADING_POSTCODE = re.compile(
    r"^(\d{4} ?[A-Z]{2}(?= )|(?:[A-Z]{1,2}-)?\d[\d\- ]{1,9}\d|\d{3,})\s+(.+)$")
_TRAILING_POSTCODE = re.compile(
    r"^(.+?)[,\s]+((?:[A-Z]{2}\s+)?\d{4,5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]?\s*\d[A-Z]{2})$")


@dataclass(frozen=True)
class Address:
    street: tuple[str, ...]
    postcode: str | None
    city: str | None
    country: str          # ISO 3166-1 alpha-2

    def as_json(self) -> dict:
        return {"street": list(self.street), "postcode": self.postcode, "city": self.city,
                "country": self.country}

    def lines(self) -> tuple[str, ...]:
        """As printed: street lines, "postcode city", the country's code."""
        place = " ".join(part for part in (self.postcode, self.city) if part)
        return tuple(line for line in (*self.street, place, self.country) if line)


def from_json(value: Mapping | None) -> Address | None:
    if not value or not value.get("country"):
        return None
    return Address(tuple(value.get("street") or ()), value.get("postcode"), value.get("city"),
                   value["country"])


@lru_cache(maxsize=1)
def _country_names() -> dict[str, str]:
    """Every country's name in _LANGUAGES (and its code), lower-cased -> ISO code."""
    names: dict[str, str] = {}
    for language in _LANGUAGES:
        for code, name in Locale.parse(language).territories.items():
            if len(code) == 2 and code.isalpha():
                names[name.lower()] = code
                names[code.lower()] = code
    names["el"] = "GR"   # Greece's VAT prefix, as people write it
    names["uk"] = "GB"
    return names


def country_code(text: str | None) -> str | None:
    """ISO 3166-1 alpha-2 code of a country's name or code; None when it is neither."""
    return _country_names().get((text or "").strip().lower()) if text else None


def vat_country(tax_id: str | None) -> str | None:
    """The country of an EU VAT ID's prefix (EL is Greece: GR); None for anything else."""
    prefix = (tax_id or "").strip()[:2].upper()
    if prefix == "EL":
        return "GR"
    return prefix if prefix in EU_VAT_PREFIXES else None


EU_VAT_PREFIXES = frozenset(
    "AT BE BG CY CZ DE DK EE EL ES FI FR HR HU IE IT LT LU LV MT NL PL PT RO SE SI SK XI"
    .split())


def parse(text: str | None) -> Address | None:
    """The address in free text (lines), or None when it does not parse (see module)."""
    lines = [line.strip() for line in (text or "").replace("\\n", "\n").splitlines()
             if line.strip()]
    if len(lines) < 2:
        return None
    country = country_code(lines[-1])
    if country is None:
        return None
    place = lines[-2]
    postcode = city = None
    if m := _LEADING_POSTCODE.match(place):
        postcode, city = m.group(1).strip(), m.group(2).strip()
    elif m := _TRAILING_POSTCODE.match(place):
        city, postcode = m.group(1).strip(" ,"), m.group(2).strip()
    else:
        city = place
    return Address(tuple(lines[:-2]), postcode, city, country)


def from_parts(parts: Mapping[str, str | None] | None) -> Address | None:
    """The address of the structured annotations ({street, postcode, city, country}; street
    lines separated by newlines or the two characters \\n); None without a known country."""
    if not parts:
        return None
    country = country_code(parts.get("country"))
    if country is None:
        return None
    street = tuple(line.strip() for line in (parts.get("street") or "").replace(
        "\\n", "\n").splitlines() if line.strip())
    return Address(street, (parts.get("postcode") or "").strip() or None,
                   (parts.get("city") or "").strip() or None, country)


# Peppol electronic address schemes (EAS) of the registrations we hold: an EU VAT ID by
# its country, a Japanese qualified-invoice registration (T + 13 digits) 0221
_VAT_SCHEMES = {"AT": "9914", "BE": "9925", "BG": "9926", "CY": "9928", "CZ": "9929",
                "DE": "9930", "EE": "9931", "EL": "9933", "ES": "9920", "FI": "0213",
                "FR": "9957", "HR": "9934", "HU": "9910", "IE": "9935", "IT": "0211",
                "LT": "9937", "LU": "9938", "LV": "9939", "MT": "9943", "NL": "9944",
                "PL": "9945", "PT": "9946", "RO": "9947", "SI": "9949", "SK": "9950"}
_JAPAN = re.compile(r"T[0-9]{13}")


def endpoint(tax_id: str | None) -> tuple[str, str] | None:
    """(EAS scheme, identifier) of a party's Peppol address (BT-34/BT-49) derived from its
    tax registration; None when it has none Peppol knows."""
    tax_id = (tax_id or "").replace(" ", "").upper()
    if scheme := _VAT_SCHEMES.get(tax_id[:2]):
        return scheme, tax_id
    return ("0221", tax_id) if _JAPAN.fullmatch(tax_id) else None
