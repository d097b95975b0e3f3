"""The price book in Postgres: versions, the one activated last in force.

The operator's last act wins. `scripts/pricebook load FILE` stores FILE as a
new version (or, when that text is stored already, activates that version
again). The deployed pricebook.yml (`ensure_file_loaded`, on a function's
first use) is stored only when no version exists yet (a fresh install), or
when PRICEBOOK_FILE_WINS=true (then deploying is the operator's act: the
file's version is activated whenever a function starts). So a price book
loaded with the command is never replaced by the file shipped in the image.
Old versions are kept; a month is priced with the version in force when it
was first closed, and every document and close answer names its version.

    scripts/pricebook load [FILE]    # default: the repository's pricebook.yml
    scripts/pricebook list           # versions, newest first
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import threading
from pathlib import Path

import psycopg
from psycopg.types.json import Jsonb

from chargeback.billing.pricebook import (
    DEFAULT_FILE,
    PriceBook,
    PriceBookError,
    document,
    parse,
    sha256_text,
)
from chargeback.core import db
from chargeback.core.settings import ConfigError, Settings, load

_parsed: dict[tuple[int, str], PriceBook] = {}   # (version, sha256) -> book; versions never change
_file_loaded: set[tuple[str, str, bool]] = set()  # (database url, sha256, wins) done here
_lock = threading.Lock()


def store(conn: psycopg.Connection, text: str, activate: bool = True
          ) -> tuple[PriceBook, bool]:
    """Check `text` and store it as a new version unless it is stored; (book, stored_now).
    An already stored text is activated again when `activate`."""
    book = parse(text)
    row = conn.execute(
        """INSERT INTO openfaas_metering.price_book_versions (content_sha256, source_text, document)
           VALUES (%s, %s, %s) ON CONFLICT (content_sha256) DO NOTHING RETURNING version""",
        (book.content_sha256, text, Jsonb(document(text)))).fetchone()
    if row:
        return _with_version(book, row[0]), True
    version = conn.execute(
        """UPDATE openfaas_metering.price_book_versions
              SET activated_at = CASE WHEN %s THEN clock_timestamp() ELSE activated_at END
            WHERE content_sha256 = %s RETURNING version""",
        (activate, book.content_sha256)).fetchone()[0]
    return _with_version(book, version), False


def _with_version(book: PriceBook, version: int) -> PriceBook:
    with _lock:
        return _parsed.setdefault((version, book.content_sha256),
                                  dataclasses.replace(book, version=version))


def version(conn: psycopg.Connection, number: int) -> PriceBook:
    """Price book version `number` (parsed once per process; a version never changes)."""
    sha = conn.execute("SELECT content_sha256 FROM openfaas_metering.price_book_versions"
                       " WHERE version = %s", (number,)).fetchone()[0]
    cached = _parsed.get((number, sha))
    if cached is not None:
        return cached
    text = conn.execute("SELECT source_text FROM openfaas_metering.price_book_versions"
                        " WHERE version = %s", (number,)).fetchone()[0]
    return _with_version(parse(text, strict=False), number)


def latest(conn: psycopg.Connection) -> PriceBook | None:
    """The version in force: the one activated last."""
    row = conn.execute("SELECT version FROM openfaas_metering.price_book_versions"
                       " ORDER BY activated_at DESC, version DESC LIMIT 1").fetchone()
    return version(conn, row[0]) if row is not None else None


def file_text(settings: Settings) -> str:
    path = Path(settings.pricebook_file) if settings.pricebook_file else DEFAULT_FILE
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"PRICEBOOK_FILE {path}: {exc.strerror}") from None


def ensure_file_loaded(settings: Settings) -> None:
    """Store the deployed pricebook.yml when no version exists yet, or activate it when
    PRICEBOOK_FILE_WINS (once per process); see the module."""
    text = file_text(settings)
    key = (settings.database_url or "", sha256_text(text), settings.pricebook_file_wins)
    if key in _file_loaded:
        return
    try:
        with db.transaction(settings) as conn:
            # one starting replica at a time decides "no version yet"
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                         ("chargeback price book",))
            if settings.pricebook_file_wins or latest(conn) is None:
                store(conn, text)
    except PriceBookError as exc:
        raise ConfigError(f"pricebook.yml: {exc}") from None
    _file_loaded.add(key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/pricebook", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    load_cmd = sub.add_parser("load", help="store FILE as a new version (or activate its "
                                           "stored version): the version in force")
    load_cmd.add_argument("file", nargs="?", default=str(DEFAULT_FILE))
    sub.add_parser("list", help="the stored versions, newest first")
    args = parser.parse_args(argv)
    try:
        settings = load()
        with db.transaction(settings) as conn:
            if args.command == "load":
                book, stored = store(conn, Path(args.file).read_text(encoding="utf-8"))
                print(f"price book version {book.version} "
                      f"({'stored now' if stored else 'already stored, activated'}; "
                      f"sha256 {book.content_sha256[:12]}); "
                      f"latest is {latest(conn).version}")
            else:
                current = latest(conn)
                for number, sha, loaded_at in conn.execute(
                        "SELECT version, content_sha256, loaded_at"
                        " FROM openfaas_metering.price_book_versions ORDER BY version DESC"):
                    mark = "  in force" if current and number == current.version else ""
                    print(f"{number:>5}  {loaded_at:%Y-%m-%d %H:%M:%S}  {sha[:12]}{mark}")
    except (PriceBookError, ConfigError, OSError, db.DatabaseUnavailable) as exc:
        print(f"scripts/pricebook: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
