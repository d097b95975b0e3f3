"""The customer's language: the babel Locale a tenant's setting names, and the labels in
that language from Babel's gettext catalogs (documents, mails, the portal).

The catalogs are `.po` files in locales/<language>/LC_MESSAGES/messages.po,
read and compiled by Babel the first time a language is used (no build step,
nothing compiled is committed). English is the source language: a language
without a catalog, or a label its catalog lacks or leaves empty, is shown in
English, never as a key.
"""
from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).resolve().parent / "locales"
SOURCE_LANGUAGE = "en"
SOURCE_GETTEXT = str  # the source language's "translation": the label itself


def N_(label: str) -> str:
    """Marks `label` for the catalogs where it is defined; it is translated where shown."""
    return label


def resolve_locale(wanted: str | None, default: str = "en") -> Locale:
    """The babel Locale for `wanted` (en, de_DE, pt-BR, ...); unknown or empty gives `default`."""
    for candidate in (wanted, default, "en"):
        if candidate:
            try:
                return Locale.parse(candidate.strip().replace("-", "_"))
            except (UnknownLocaleError, ValueError, TypeError):
                continue
    raise AssertionError("babel always knows en")


def catalog_path(language: str) -> Path:
    return LOCALES / language / "LC_MESSAGES" / "messages.po"


@lru_cache(maxsize=None)
def _translations(language: str) -> gettext.NullTranslations:
    path = catalog_path(language)
    if not path.is_file():
        return gettext.NullTranslations()
    with path.open("rb") as po:
        catalog = read_po(po, locale=language)
    compiled = io.BytesIO()
    write_mo(compiled, catalog)  # fuzzy entries are left out: English instead
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def languages() -> list[str]:
    """The languages with a catalog."""
    return sorted(p.parent.parent.name for p in LOCALES.glob("*/LC_MESSAGES/messages.po"))


def for_locale(locale: Locale) -> tuple[str, gettext.NullTranslations]:
    """(the label language, its translations) for a formatting locale: de_CH -> de."""
    for language in (str(locale), locale.language):
        if catalog_path(language).is_file():
            return language.replace("_", "-"), _translations(language)
    return SOURCE_LANGUAGE, _translations(SOURCE_LANGUAGE)


def labels(locale: Locale) -> tuple[str, Callable[[str], str]]:
    """(the label language, its label function) for a formatting locale: in the source
    language the label itself (SOURCE_GETTEXT), else its catalog's gettext."""
    language, translations = for_locale(locale)
    return language, SOURCE_GETTEXT if language == SOURCE_LANGUAGE else translations.gettext
