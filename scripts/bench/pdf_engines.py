"""scripts/bench/pdf_engines: the invoice PDF by our fpdf2 pipeline against Typst.

For each locale (ar, he, th, ja, de) one invoice, devstack.sample_documents' (the one
the document tests render) with the tenant's name and address in that script, is
rendered once by chargeback.documents.rendered.render, which builds the view and the
Factur-X XML. Then, from that view and XML:
- fpdf2: chargeback.documents.pdf.render_pdf (fpdf2, uharfbuzz shaping, our own
  right-to-left runs), PDF/A-3b with the XML embedded, as the product sends it;
- Typst: scripts/bench/invoice.typ (the same fields laid out the same way) compiled by
  the `typst` package with the product's own font files (the static Noto Sans
  instances documents.fonts cuts, and its fallbacks), nothing else (no system or
  Typst-embedded fonts), PDF/A-3b, the XML attached, the document date fixed;
- Typst+fx: Typst without the XML, then the factur-x package adding it and the
  Factur-X XMP (Typst writes no custom XMP), the way to a Factur-X from Typst.
Each engine renders each document once, then --runs documents of their own (every
string followed by the run's number: Typst memoizes, so the same document again is
mostly its cache), then the first again; the median wall and CPU milliseconds per PDF
are printed, whether the first document gave the same bytes again and in a second
process (--digests), and whether the tenant's name, address
lines, month and every amount read back from the text layer with pypdf and poppler's
pdftotext exactly (devstack.sample_documents.misread, the check tests/test_pdf_scripts.py
applies, with its one allowance: poppler may move a space inside a right-to-left run).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from io import BytesIO
from pathlib import Path

import facturx
import pypdf
import typst

from chargeback.core.settings import load
from chargeback.documents import fonts
from chargeback.documents import rendered as documents
from chargeback.documents.pdf import pdf_safe, render_pdf

from devstack.sample_documents import INVOICE, ISSUER, TENANTS, misread

HERE = Path(__file__).resolve().parent
TEMPLATE = HERE / "invoice.typ"

# the bench's five scripts of devstack.sample_documents' tenants
LOCALES = ("ar", "he", "th", "ja", "de")


def _safe(value):
    """The view's strings as the fpdf2 renderer draws them (documents.pdf.pdf_safe)."""
    if isinstance(value, str):
        return pdf_safe(value)
    if isinstance(value, dict):
        return {k: _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    return value if value is None or isinstance(value, (bool, int, float)) else str(value)


def font_dir() -> Path:
    """The product's font files, as documents.fonts hands them to fpdf2 for a shaped
    document (static regular and bold instances with their layout tables), linked into
    one folder for Typst."""
    folder = Path(tempfile.mkdtemp(prefix="pdf-engines-fonts-"))
    sans = fonts.fontpkg.path("Noto Sans")
    files = []
    for axes in (fonts._REGULAR_AXES, fonts._BOLD_AXES):
        files.append(fonts._prepared(sans, tuple(sorted(axes.items())), True) or sans)
    for _, faces in fonts._fallbacks():
        for style, axes in (("", fonts._REGULAR_AXES), ("B", fonts._BOLD_AXES)):
            path = faces[style]
            weights = tuple(sorted((k, v) for k, v in axes.items()
                                   if k in fonts._axes(path))) if path.suffix == ".ttf" else ()
            files.append(fonts._prepared(path, weights, True) or path)
    for i, path in enumerate(dict.fromkeys(files)):
        (folder / f"{i:02d}-{path.name}").symlink_to(path)
    return folder


def varied(value, run: int):
    """`value` with the run's number after every non-empty string: each timed render is a
    document of its own, as 1,000 invoices are (Typst memoizes: the same document
    compiled again is mostly answered from its cache)."""
    if isinstance(value, str):
        return f"{value} {run}" if value else value
    if isinstance(value, dict):
        return {k: varied(v, run) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [varied(v, run) for v in value]
    return value


def timed(render, view: dict, runs: int) -> dict:
    """The first render's ms; median wall and CPU ms over `runs` documents of their own
    (varied); whether `view` rendered again after them gives the same bytes."""
    w = time.perf_counter()
    first = render(view)
    first_ms = (time.perf_counter() - w) * 1000
    walls, cpus = [], []
    for run in range(1, runs + 1):
        other = varied(view, run)
        w, c = time.perf_counter(), time.process_time()
        render(other)
        cpus.append((time.process_time() - c) * 1000)
        walls.append((time.perf_counter() - w) * 1000)
    w = time.perf_counter()
    again = render(view)
    again_ms = (time.perf_counter() - w) * 1000
    return {"first": first_ms, "wall": statistics.median(walls), "cpu": statistics.median(cpus),
            "again": again_ms, "same": again == first, "pdf": first}


def documents_of(settings):
    """(locale, view, issue instant, Factur-X XML) of each tenant's invoice."""
    for locale in LOCALES:
        name, street, place, country, _ = TENANTS[locale]
        invoice = dataclasses.replace(INVOICE, locale=locale, bill_to_name=name,
                                      bill_to_address=(street, place, country))
        rendered = documents.render(invoice, ISSUER, settings)
        xml = next(a.data for a in rendered.attachments if a.content_type == "application/xml")
        yield locale, rendered.view, invoice.issued_at, xml


def engines(locale: str, issued, xml: bytes):
    """fpdf2 as the product renders; Typst with the XML attached; Typst without it, the
    Factur-X XML and XMP then added by the factur-x package (pypdf rewrites the file),
    the way to a Factur-X Typst cannot write alone (it has no custom XMP)."""
    compiler = _compiler()

    def typst_pdf(view, attach=True):
        inputs = {"view": json.dumps(_safe(view)), "lang": locale,
                  "date": issued.strftime("%Y-%m-%d-%H-%M-%S")}
        if attach:
            inputs["xml"] = xml.decode()
        return compiler.compile(input=str(TEMPLATE), format="pdf", pdf_standards="a-3b",
                                timestamp=issued, sys_inputs=inputs)

    return {
        "fpdf2": lambda view: render_pdf(view, issued, xml),
        "typst": typst_pdf,
        "typst+fx": lambda view: facturx.generate_from_binary(
            typst_pdf(view, attach=False), xml, flavor="factur-x", level="en16931",
            check_xsd=False),
    }


_COMPILER = []


def _compiler():
    """One Typst compiler per process, with the product's fonts and no others."""
    if not _COMPILER:
        _COMPILER.append(typst.Compiler(root=str(HERE), font_paths=typst.Fonts(
            include_system_fonts=False, include_embedded_fonts=False,
            font_paths=[str(font_dir())])))
    return _COMPILER[0]


def digests(settings) -> dict[str, str]:
    """Each engine's PDF of each document, rendered once in this process: its SHA-256."""
    out = {}
    for locale, view, issued, xml in documents_of(settings):
        for engine, render in engines(locale, issued, xml).items():
            out[f"{engine} {locale}"] = hashlib.sha256(render(view)).hexdigest()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed renders per engine and locale")
    parser.add_argument("--digests", action="store_true",
                        help="print each engine's PDFs' SHA-256 (rendered once) and stop")
    parser.add_argument("--out", type=Path, help="write each PDF here (<engine>-<locale>.pdf)")
    args = parser.parse_args()
    settings = load({"SECRETS_DIR": tempfile.mkdtemp()})
    if args.digests:
        print(json.dumps(digests(settings)))
        return 0
    load_before = os.getloadavg()[0]
    rows, notes = [], []
    for locale, view, issued, xml in documents_of(settings):
        for engine, render in engines(locale, issued, xml).items():
            row = timed(render, view, args.runs)
            missing = misread(locale, view, row["pdf"])
            reader = pypdf.PdfReader(BytesIO(row["pdf"]))
            attached = list(reader.attachments)
            # Factur-X asks for its XMP extension schema (fx:) beside the attached XML
            xmp = reader.trailer["/Root"]["/Metadata"].get_object().get_data()
            attached += ["fx: XMP" if b"fx:ConformanceLevel" in xmp else "no fx: XMP"]
            rows.append((engine, locale, row, not missing, attached))
            notes += [f"{engine} {locale}: not read back by {m}" for m in missing]
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                (args.out / f"{engine}-{locale}.pdf").write_bytes(row["pdf"])
    # the same bytes from a process of their own (no font, layout or memo cache shared)
    other = json.loads(subprocess.run(
        [sys.executable, __file__, "--digests"], capture_output=True, text=True,
        check=True).stdout)
    load_after = os.getloadavg()[0]
    print(f"typst package {version('typst')}, fpdf2 {version('fpdf2')}, {args.runs} timed "
          "renders (each a document of its own) per engine and locale after the first; "
          f"load average {load_before:.1f} before, {load_after:.1f} after")
    print(f"{'engine':8} {'locale':6} {'first':>7} {'wall ms':>8} {'CPU ms':>7} "
          f"{'same again':>10} {'identical':>9} {'read back':>9} {'bytes':>6}  attached")
    for engine, locale, row, exact, attached in rows:
        identical = other[f"{engine} {locale}"] == hashlib.sha256(row["pdf"]).hexdigest()
        print(f"{engine:8} {locale:6} {row['first']:7.1f} {row['wall']:8.1f} {row['cpu']:7.1f} "
              f"{row['again']:10.1f} {'yes' if row['same'] and identical else 'NO':>9} "
              f"{'yes' if exact else 'NO':>9} {len(row['pdf']):6d}  {', '.join(attached)}")
    print("first: the first render of the locale in the process (ms); wall, CPU: medians over "
          "the varied documents; same again: the first document rendered again after them (ms);"
          " identical: the same bytes then and from a second process")
    for engine in ("fpdf2", "typst", "typst+fx"):
        walls = [r[2]["wall"] for r in rows if r[0] == engine]
        cpus = [r[2]["cpu"] for r in rows if r[0] == engine]
        print(f"{engine}: median of the locales' medians {statistics.median(walls):.1f} ms wall, "
              f"{statistics.median(cpus):.1f} ms CPU")
    for note in notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
