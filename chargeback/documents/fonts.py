"""The PDF's fonts: Noto from pip-installed font packages, so every script renders.

Noto Sans (Latin with its extensions, Cyrillic, Greek, currency signs) is the
text font; Noto Sans Arabic, Heebo (Hebrew), Noto Sans Thai, Noto Sans
Devanagari, Noto Sans CJK JP and Noto Emoji (monochrome) are fallbacks fpdf2
switches to for the characters Noto Sans lacks. fpdf2 embeds only the glyphs
a document uses (subsetting), so a Latin invoice stays small.

Noto Sans ships as one variable font; the regular and bold weights are cut
from it once (fontTools' instancer, about two seconds each) and kept in a
cache directory, written atomically, with no timestamp recalculated, so every
process and every machine embeds the same bytes. A document that needs no
shaping (every script but Devanagari) is set from copies without the layout
tables (GSUB, GPOS, GDEF), cut the same way: fpdf2 drops those tables from
the subset it embeds anyway, but it parses them for every document first,
which was most of a PDF's time. A document whose every character is in
LATIN (Latin script, punctuation, currency and math signs) is set from a
copy cut to its own characters and ASCII (about 100 glyphs of 4,515; cut
from a LATIN cut of 952, so a new set of characters costs milliseconds):
parsing the font for each document was then most of a PDF's time, and
documents in one language share the copy. The fallbacks of a document that
needs no shaping (CJK, emoji) are cut the same way, to the document's
characters they have, straight from the font file (lazily read: about 0.3 s
for a CJK face, once per set of characters; a tenant's documents share it).
The copies' glyph boxes are
right, so fpdf2 is told not to recompute them (which decodes and re-encodes
every embedded glyph). Nothing parsed is shared between documents (fpdf2
subsets the font object in place); within a process the prepared files'
paths and the fonts' character sets are kept.
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path

import fontpkg
import manimgx_fonts
import noto_cjk_sans_jp_bold
import noto_cjk_sans_jp_regular
from fontTools.subset import Options, Subsetter
from fontTools.ttLib import TTFont
from fontTools.varLib.instancer import instantiateVariableFont
from fpdf import FPDF

TEXT = "noto"
_DEVANAGARI = "noto-devanagari"
_CJK = "noto-cjk"
_REGULAR_AXES = {"wght": 400, "wdth": 100}
_BOLD_AXES = {"wght": 700, "wdth": 100}
_LAYOUT_TABLES = ("GSUB", "GPOS", "GDEF")


def _cache_dir() -> Path:
    return Path(os.environ.get("FONT_CACHE_DIR") or tempfile.gettempdir()) / "chargeback-fonts"


# The characters of a document in Latin script (every catalog language but ja and ru,
# names in Latin letters): Basic Latin to Latin Extended-B, combining marks, general
# punctuation, superscripts, currency signs, letterlike symbols, number forms,
# arrows and mathematical operators (× −).
LATIN = frozenset(c for lo, hi in ((0x20, 0x250), (0x300, 0x370), (0x2000, 0x20D0),
                                   (0x2100, 0x2300)) for c in range(lo, hi))


@lru_cache(maxsize=256)
def _prepared(source: Path, axes: tuple[tuple[str, float], ...] = (),
              layout: bool = True, characters: frozenset[int] | None = None) -> Path | None:
    """`source` as a static instance at `axes` (a variable font; none: as it is),
    without the layout tables unless `layout`, cut to `characters` when given,
    cached on disk; None when no cache directory can be written (the caller then
    uses `source`)."""
    stat = source.stat()
    cut = "" if characters is None else ",".join(map(str, sorted(characters)))
    key = hashlib.sha256(f"{source.name}|{stat.st_size}|{axes}|{layout}|{cut}".encode()
                         ).hexdigest()[:16]
    target = _cache_dir() / f"{source.stem}-{key}{source.suffix}"
    if target.exists():
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        # a static font about to be cut is read lazily: only the kept glyphs are parsed
        font = TTFont(source, recalcTimestamp=False,
                      lazy=True if characters is not None and not axes else None)
        static = (instantiateVariableFont(font, dict(axes), updateFontNames=False)
                  if axes else font)
        for tag in () if layout else _LAYOUT_TABLES:
            if tag in static:
                del static[tag]
        if characters is not None:
            _cut(static, characters)
        partial = target.with_suffix(f".{os.getpid()}.part")
        static.save(partial)
        os.replace(partial, target)  # another process may have won: same bytes
    except OSError:
        return None
    return target


def _cut(font: TTFont, characters: frozenset[int]) -> None:
    """Keep only the glyphs of `characters` in `font` (all its names and metrics)."""
    options = Options()
    options.name_IDs, options.name_languages = ["*"], ["*"]
    options.notdef_outline = True
    options.layout_features = []
    subsetter = Subsetter(options)
    subsetter.populate(unicodes=characters)
    subsetter.subset(font)


# ASCII and what the PDF adds to the view's text (the footer's " · ", page numbers)
_ALWAYS = frozenset(range(0x20, 0x7F)) | {ord("·")}


# Fallbacks in the order fpdf2 tries them, each with its regular and bold faces (a
# variable font cut at both weights) and whether its script needs shaping (HarfBuzz:
# Arabic letters joined, Hebrew and Arabic right to left, Thai and Devanagari marks
# placed). Hebrew: Heebo (Noto Sans Hebrew is not packaged for PyPI).
_ARABIC, _HEBREW, _THAI, _EMOJI = "noto-arabic", "heebo", "noto-thai", "noto-emoji"
_SHAPED = (_ARABIC, _HEBREW, _THAI, _DEVANAGARI)


def _fallbacks() -> list[tuple[str, dict[str, Path]]]:
    variable = [(_ARABIC, "Noto Sans Arabic"), (_HEBREW, "Heebo"), (_THAI, "Noto Sans Thai"),
                (_DEVANAGARI, "Noto Sans Devanagari")]
    out = []
    for name, family in variable:
        path = fontpkg.path(family)
        out.append((name, {"": path, "B": path}))
    out.append((_CJK, {"": Path(str(noto_cjk_sans_jp_regular.FONT_PATH)),
                       "B": Path(str(noto_cjk_sans_jp_bold.FONT_PATH))}))
    # last: Noto Emoji, monochrome outlines a PDF/A font can carry (a colour emoji font's
    # bitmaps fpdf2 drops), so "Café 🚀" prints its rocket
    emoji = Path(manimgx_fonts.__file__).parent / "NotoEmoji[wght].ttf"
    out.append((_EMOJI, {"": emoji, "B": emoji}))
    return out


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
    missing = {ord(c) for c in text} - _characters(sans)
    needed = [(name, faces) for name, faces in _fallbacks()
              if missing & _characters(faces[""])]
    # Arabic, Hebrew, Thai and Devanagari need shaping and bidi: HarfBuzz reads the layout
    # tables; every other script is set glyph by glyph without them
    shaped = any(name in _SHAPED for name, _ in needed)
    # a Latin document: a font of its own characters only (and ASCII, so that documents
    # of one language share it), cut from the LATIN cut, a tenth of its glyphs to parse
    used = {ord(c) for c in text + text.upper()} | _ALWAYS
    latin = not shaped and used <= LATIN
    for style, axes in (("", _REGULAR_AXES), ("B", _BOLD_AXES)):
        axes_key = tuple(sorted(axes.items()))
        font = _prepared(sans, axes_key, shaped, LATIN) if latin else None
        pdf.add_font(TEXT, style, (font and _prepared(font, (), False, frozenset(used)))
                     or _prepared(sans, axes_key, shaped) or sans)
    for name, faces in needed:
        for style, axes in (("", _REGULAR_AXES), ("B", _BOLD_AXES)):
            path = faces[style]
            # a variable font is cut at the weight; a static one (CJK) taken as it is;
            # unshaped, cut to the document's characters it has: fpdf2 parsed all 65,535
            # glyphs of a CJK face for each document (1.3 s of a Japanese PDF)
            weights = tuple(sorted((k, v) for k, v in axes.items()
                                   if k in _axes(path))) if path.suffix == ".ttf" else ()
            own = None if shaped else frozenset(used & _characters(path))
            pdf.add_font(name, style, _prepared(path, weights, shaped, own) or path)
    for font in pdf.fonts.values():
        # (fpdf2's font objects and their fontTools TTFont are public attributes) the
        # prepared files' glyph boxes are right: recomputing them decodes and re-encodes
        # every glyph fpdf2 embeds, a third of a Latin PDF's time
        font.ttfont.recalcBBoxes = False
    if needed:
        # bold text is set in each fallback's bold face
        pdf.set_fallback_fonts([name for name, _ in needed], exact_match=True)
    if shaped:
        pdf.set_text_shaping(True)
    return TEXT


@lru_cache(maxsize=None)
def _axes(path: Path) -> frozenset[str]:
    """The variation axes of a font file (none for a static font)."""
    with TTFont(path, lazy=True) as font:
        return frozenset(a.axisTag for a in font["fvar"].axes) if "fvar" in font else frozenset()


# Noto Sans Arabic's ccmp draws a letter's dots (and a hamza) as marks of their own, its
# curs lifts letters to join them: each is a glyph the PDF places apart, which a reader
# of the text layer (pdftotext) takes for a word of its own. Without them the letters
# are its precomposed glyphs, joined on one baseline.
_RIGHT_TO_LEFT_FEATURES = {_ARABIC: {"ccmp": False, "curs": False}, _HEBREW: {}}


def right_to_left(run: str) -> tuple[str, dict[str, bool]] | None:
    """The family a run of Arabic or Hebrew text (with its spaces) is set in as a whole,
    and the OpenType features it is shaped with; None when no right-to-left fallback has
    a glyph for every character of `run`. register adds that family to a PDF whose
    text has such a run."""
    used = {ord(c) for c in run}
    return next(((name, _RIGHT_TO_LEFT_FEATURES[name]) for name, faces in _fallbacks()
                 if name in _RIGHT_TO_LEFT_FEATURES and used <= _characters(faces[""])),
                None)
