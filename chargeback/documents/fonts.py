"""The PDF's fonts: Noto from pip-installed font packages, so every script renders.

Noto Sans (Latin with its extensions, Cyrillic, Greek, currency signs) is the
text font; Noto Sans Devanagari and Noto Sans CJK JP are fallbacks fpdf2
switches to for the characters Noto Sans lacks. fpdf2 embeds only the glyphs
a document uses (subsetting), so a Latin invoice stays small.

Noto Sans ships as one variable font: its default instance is the regular
weight; the bold weight is cut from it once (fontTools' instancer, about two
seconds) and kept in a cache directory, written atomically, with no
timestamp recalculated, so every process and every machine embeds the same
bytes.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import fontpkg
import noto_cjk_sans_jp_regular
from fontTools.ttLib import TTFont
from fontTools.varLib.instancer import instantiateVariableFont
from fpdf import FPDF

TEXT = "noto"
_DEVANAGARI = "noto-devanagari"
_CJK = "noto-cjk"
_BOLD_AXES = {"wght": 700, "wdth": 100}


def _cache_dir() -> Path:
    return Path(os.environ.get("FONT_CACHE_DIR") or tempfile.gettempdir()) / "chargeback-fonts"


@lru_cache(maxsize=None)
def _instance(source: Path, axes: tuple[tuple[str, float], ...]) -> Path | None:
    """A static instance of the variable font `source` at `axes`, cached on disk;
    None when no cache directory can be written (bold then falls back to regular)."""
    stat = source.stat()
    key = hashlib.sha256(f"{source.name}|{stat.st_size}|{axes}".encode()).hexdigest()[:16]
    target = _cache_dir() / f"{source.stem}-{key}.ttf"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        font = TTFont(source, recalcTimestamp=False)
        static = instantiateVariableFont(font, dict(axes), updateFontNames=False)
        partial = target.with_suffix(f".{os.getpid()}.part")
        static.save(partial)
        os.replace(partial, target)  # another process may have won: same bytes
    except OSError:
        return None
    return target


def _fallbacks() -> list[tuple[str, Path]]:
    return [(_DEVANAGARI, fontpkg.path("Noto Sans Devanagari")),
            (_CJK, Path(str(noto_cjk_sans_jp_regular.FONT_PATH)))]


@lru_cache(maxsize=None)
def _characters(path: Path) -> frozenset[int]:
    """The code points a font file has glyphs for (read once per process)."""
    with TTFont(path, lazy=True) as font:
        return frozenset(font.getBestCmap())


def register(pdf: FPDF, text: str) -> str:
    """Add the fonts `text` needs to `pdf`; the text font's family name.

    A fallback font is added only when `text` has a character Noto Sans lacks
    and the fallback has: parsing and subsetting a font costs time, and the
    same text always picks the same fonts."""
    sans = fontpkg.path("Noto Sans")
    pdf.add_font(TEXT, "", sans)
    bold = _instance(sans, tuple(sorted(_BOLD_AXES.items())))
    pdf.add_font(TEXT, "B", bold or sans)
    missing = {ord(c) for c in text} - _characters(sans)
    needed = [(name, path) for name, path in _fallbacks() if missing & _characters(path)]
    for name, path in needed:
        pdf.add_font(name, "", path)
    if needed:
        # exact_match=False: bold text in a script without a bold face is set regular
        pdf.set_fallback_fonts([name for name, _ in needed], exact_match=False)
        # Devanagari needs shaping (vowel signs before their consonant, conjuncts)
        pdf.set_text_shaping(True)
    return TEXT
