"""Forward-only schema migrations from sql/NNN_<what>.sql.

`apply()` is safe when many replicas start at once: it holds a Postgres
advisory lock while it looks at and applies what is missing, each file in its
own transaction, and records the file's checksum. Waiting for that lock is
bounded by the connection's lock_timeout (`db` sets DB_LOCK_TIMEOUT): a
replica that cannot get it in time gives up with LockNotAvailable (503) and
tries again on its next request. Re-running is a no-op. An
applied file whose text has since changed is an error: add a new file instead.
"""
from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

# In the repository sql/ sits beside chargeback/; in a function image stack.yml
# copies both into function/, so the relative position is the same.
SQL_DIR = Path(__file__).resolve().parents[2] / "sql"
LOCK_KEY = 0x63686172676562  # "chargeb": one key for every chargeback replica
_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
# Beside the migrations, not one of them: what they build, as pg_dump prints it (scripts/schema).
SCHEMA_FILE = "schema.sql"


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(sql_dir: Path = SQL_DIR) -> list[Migration]:
    """Every migration file in version order (not SCHEMA_FILE); a misnamed or duplicate
    file is an error."""
    found: dict[str, Migration] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        if path.name == SCHEMA_FILE:
            continue
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path}: migration files are named NNN_<what>.sql")
        version = match.group(1)
        if version in found:
            raise MigrationError(f"{path}: version {version} is used twice")
        found[version] = Migration(version, path.name, path.read_text(encoding="utf-8"))
    return list(found.values())


def apply(conn: psycopg.Connection, sql_dir: Path = SQL_DIR) -> list[str]:
    """Apply what is missing; return the names applied by this call."""
    migrations = discover(sql_dir)
    conn.autocommit = True
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        conn.execute("CREATE SCHEMA IF NOT EXISTS openfaas_metering")
        conn.execute(
            """CREATE TABLE IF NOT EXISTS openfaas_metering.schema_migrations (
                   version    text PRIMARY KEY,
                   name       text NOT NULL,
                   checksum   text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        applied = {
            version: (name, checksum)
            for version, name, checksum in conn.execute(
                "SELECT version, name, checksum FROM openfaas_metering.schema_migrations"
            )
        }
        done: list[str] = []
        for migration in migrations:
            if migration.version in applied:
                name, checksum = applied[migration.version]
                if checksum != migration.checksum:
                    raise MigrationError(
                        f"{migration.name}: changed after it was applied (as {name}); "
                        "add a new migration instead"
                    )
                continue
            with conn.transaction():
                conn.execute(migration.sql)
                conn.execute(
                    "INSERT INTO openfaas_metering.schema_migrations (version, name, checksum)"
                    " VALUES (%s, %s, %s)",
                    (migration.version, migration.name, migration.checksum),
                )
            done.append(migration.name)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
