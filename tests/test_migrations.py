"""Migrations: forward-only, recorded, idempotent, safe with concurrent runners."""
import threading

import psycopg
import pytest

from chargeback.core import migrate


@pytest.fixture
def empty_db(pg_server):
    name = "mig_" + threading.current_thread().name.replace("-", "_").lower()[:20]
    with psycopg.connect(pg_server.url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return pg_server.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def sql_dir(tmp_path):
    d = tmp_path / "sql"
    d.mkdir()
    # Not idempotent on purpose: applying either twice would fail or double-count.
    (d / "001_first.sql").write_text(
        "CREATE TABLE openfaas_metering.applied (n int);"
        "INSERT INTO openfaas_metering.applied VALUES (1);")
    (d / "002_second.sql").write_text(
        "SELECT pg_sleep(0.2); INSERT INTO openfaas_metering.applied VALUES (2);")
    return d


def test_applying_twice_is_a_no_op(empty_db, sql_dir):
    with psycopg.connect(empty_db) as conn:
        assert migrate.apply(conn, sql_dir) == ["001_first.sql", "002_second.sql"]
        assert migrate.apply(conn, sql_dir) == []
        assert conn.execute("SELECT array_agg(n ORDER BY n) FROM openfaas_metering.applied"
                            ).fetchone()[0] == [1, 2]


def test_two_concurrent_runners_apply_each_migration_once(empty_db, sql_dir):
    results, errors = [], []

    def run():
        try:
            with psycopg.connect(empty_db) as conn:
                results.append(migrate.apply(conn, sql_dir))
        except Exception as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results, key=len) == [[], [], [], ["001_first.sql", "002_second.sql"]]
    with psycopg.connect(empty_db) as conn:
        assert conn.execute("SELECT count(*) FROM openfaas_metering.applied").fetchone()[0] == 2
        assert conn.execute("SELECT count(*) FROM openfaas_metering.schema_migrations"
                            ).fetchone()[0] == 2


def test_a_new_file_is_applied_on_the_next_run(empty_db, sql_dir):
    with psycopg.connect(empty_db) as conn:
        migrate.apply(conn, sql_dir)
        (sql_dir / "003_third.sql").write_text("INSERT INTO openfaas_metering.applied VALUES (3);")
        assert migrate.apply(conn, sql_dir) == ["003_third.sql"]


def test_editing_an_applied_migration_is_refused(empty_db, sql_dir):
    with psycopg.connect(empty_db) as conn:
        migrate.apply(conn, sql_dir)
        (sql_dir / "001_first.sql").write_text("SELECT 1;")
        with pytest.raises(migrate.MigrationError, match="001_first.sql: changed after"):
            migrate.apply(conn, sql_dir)


def test_a_failing_migration_leaves_nothing_of_itself(empty_db, sql_dir):
    (sql_dir / "003_broken.sql").write_text(
        "INSERT INTO openfaas_metering.applied VALUES (3); SELECT no_such_function();")
    with psycopg.connect(empty_db) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            migrate.apply(conn, sql_dir)
        assert conn.execute("SELECT array_agg(n ORDER BY n) FROM openfaas_metering.applied"
                            ).fetchone()[0] == [1, 2]
        assert conn.execute("SELECT max(version) FROM openfaas_metering.schema_migrations"
                            ).fetchone()[0] == "002"


def test_misnamed_migration_file_is_refused(tmp_path):
    (tmp_path / "1-init.sql").write_text("SELECT 1;")
    with pytest.raises(migrate.MigrationError, match="named NNN_<what>.sql"):
        migrate.discover(tmp_path)


def test_the_projects_migrations_are_applied_in_order(database_url):
    with psycopg.connect(database_url) as conn:
        versions = [v for (v,) in conn.execute(
            "SELECT version FROM openfaas_metering.schema_migrations ORDER BY applied_at, version")]
    assert versions == [m.version for m in migrate.discover()]


def test_a_document_sealed_with_its_csv_in_its_row_keeps_its_csv_and_seal(empty_db, tmp_path):
    """Before sql/120 a document's usage CSV sat in its own row and its seal hashed it
    there; after the upgrade it reads back the same and its chain is intact."""
    import hashlib
    import shutil

    from chargeback.billing import export
    from chargeback.documents import chain
    before = tmp_path / "before"
    before.mkdir()
    for path in migrate.SQL_DIR.glob("*.sql"):
        if path.name < "120":
            shutil.copy(path, before / path.name)
    text = ("line_no,kind,meter,sku,spot,day,function_name,quantity,unit\r\n"
            "1,line_total,gb_seconds,,false,,,5,GB-s\r\n")  # no stored line gives this back
    with psycopg.connect(empty_db) as conn:
        migrate.apply(conn, before)
        conn.autocommit = False
        conn.execute("INSERT INTO openfaas_metering.tenants (namespace) VALUES ('acme')")
        invoice_id = conn.execute(
            """INSERT INTO openfaas_metering.invoices
                   (namespace, period, period_start, period_end, billing_timezone, status,
                    currency, subtotal, tax, total, number, number_year, number_seq,
                    issued_at, usage_csv, usage_csv_sha256)
               VALUES ('acme', '2026-09', '2026-09-01Z', '2026-10-01Z', 'UTC', 'finalized',
                       'EUR', 0, 0, 0, 'INV-2026-000001', 2026, 1, now(), %s, %s)
               RETURNING invoice_id""",
            (text, hashlib.sha256(text.encode()).hexdigest())).fetchone()[0]
        conn.commit()   # sealed here, its CSV in the hashed row
        sealed = conn.execute("SELECT document_sha256 FROM openfaas_metering.invoices"
                              " WHERE invoice_id = %s", (invoice_id,)).fetchone()[0]
        assert sealed is not None
        conn.commit()
        assert "120_document_usage_csvs.sql" in migrate.apply(conn, migrate.SQL_DIR)
        conn.autocommit = False
        assert export.usage_csv(conn, invoice_id) == text
        assert chain.problems(conn, "INV-2026-000001") == ("INV-2026-", 1, [])
