"""An issued document's files as the portal serves them, at bounded cost.

The bytes come from `chargeback.documents.rendered.rerender`: the portal serves
the very bytes the e-mail carried, and rendering is the documents capability's
one job. A finalized document never changes, so what it renders to is kept
here, by document and locale, in a bounded least-recently-used cache
(CACHE_BYTES per process): a second request for a PDF costs a dictionary look-up,
not 120-175 ms of CPU. One document renders once however many ask at the same
time, and one tenant renders one document at a time (limits.py). HEAD answers
from the cache or, cold, from the document's row without rendering.
"""
from __future__ import annotations

import re
import threading
from collections import OrderedDict
from dataclasses import dataclass

from chargeback.core.responses import RequestError, respond
from chargeback.core.settings import Settings
from chargeback.documents import rendered as documents

CACHE_BYTES = 64 * 1024 * 1024
# file suffix -> (index into Rendered.attachments, or "html"; Content-Type)
FILES = {".pdf": (0, "application/pdf"), ".csv": (1, "text/csv; charset=utf-8"),
         ".xml": (2, "application/xml"), ".usage.csv": (3, "text/csv; charset=utf-8"),
         ".html": ("html", "text/html; charset=utf-8")}
NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# the invoice's own HTML carries inline CSS (it is an e-mail part) and loads nothing
DOCUMENT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; " \
               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
API_CSP = "default-src 'none'; frame-ancestors 'none'"


@dataclass(frozen=True)
class Files:
    """What one document renders to: each served file's name and bytes, by suffix."""
    by_suffix: dict[str, tuple[str, bytes]]

    @property
    def size(self) -> int:
        return sum(len(data) for _, data in self.by_suffix.values())


class _Cache:
    def __init__(self, limit_bytes: int):
        self.limit = limit_bytes
        self.used = 0
        self.items: OrderedDict[tuple, Files] = OrderedDict()
        self.lock = threading.Lock()
        self.rendering: dict[tuple, threading.Lock] = {}
        self.renders = 0  # how many times a document was rendered (tests, the bench)

    def get(self, key: tuple) -> Files | None:
        with self.lock:
            found = self.items.get(key)
            if found is not None:
                self.items.move_to_end(key)
            return found

    def put(self, key: tuple, files: Files) -> None:
        with self.lock:
            if key in self.items or files.size > self.limit:
                return
            self.items[key] = files
            self.used += files.size
            while self.used > self.limit:
                _, dropped = self.items.popitem(last=False)
                self.used -= dropped.size

    def key_lock(self, key: tuple) -> threading.Lock:
        with self.lock:
            return self.rendering.setdefault(key, threading.Lock())


CACHE = _Cache(CACHE_BYTES)


def _render(settings: Settings, invoice_id: str) -> Files:
    rendered = documents.rerender(settings, invoice_id)
    by_suffix = {".html": (f"{invoice_id}.html", rendered.html.encode())}
    for suffix, (index, _) in FILES.items():
        if isinstance(index, int) and index < len(rendered.attachments):
            attachment = rendered.attachments[index]
            by_suffix[suffix] = (attachment.filename, attachment.data)
    return Files(by_suffix)


def files(settings: Settings, invoice_id: str, locale: str | None) -> Files:
    """The document's files, rendered at most once per process while cached."""
    key = (invoice_id, locale or settings.default_locale, settings.portal_url)
    found = CACHE.get(key)
    if found is not None:
        return found
    with CACHE.key_lock(key):  # the second asker waits for the first's render
        found = CACHE.get(key)
        if found is None:
            found = _render(settings, invoice_id)
            CACHE.renders += 1
            CACHE.put(key, found)
    return found


def cached(settings: Settings, invoice_id: str, locale: str | None) -> Files | None:
    return CACHE.get((invoice_id, locale or settings.default_locale, settings.portal_url))


def answer(found: Files, number: str, suffix: str, head: bool) -> dict:
    """One file of a document as the template's response dict."""
    if suffix not in found.by_suffix:
        raise RequestError(404, f"invoice {number} has no {suffix} file")
    filename, data = found.by_suffix[suffix]
    content_type = FILES[suffix][1]
    headers = {"Content-Type": content_type, "Content-Length": str(len(data))}
    if suffix == ".html":
        headers["Content-Security-Policy"] = DOCUMENT_CSP
    else:
        headers.update({"Content-Disposition": f'attachment; filename="{filename}"',
                        "Content-Security-Policy": API_CSP})
    return respond(200, b"" if head else data, headers)


def head_cold(number: str, suffix: str) -> dict:
    """HEAD of a document not rendered yet: its type, no body and no length (rendering
    it to learn the length is the cost HEAD is meant to spare)."""
    return respond(200, b"", {"Content-Type": FILES[suffix][1],
                              "Content-Security-Policy": API_CSP})
