"""sql/schema.sql is the schema the migrations build, as pg_dump prints it: current, and
never taken for a migration."""
import difflib

from devstack import schema

from chargeback.core import migrate


def test_schema_file_is_what_the_migrations_build(pg_server, database_url):
    # database_url is a copy of the session's template, which every migration built
    dumped = schema.dump(pg_server, database_url)
    committed = (schema.SCHEMA_PATH.read_text(encoding="utf-8")
                 if schema.SCHEMA_PATH.exists() else "")
    if dumped != committed:
        diff = "".join(list(difflib.unified_diff(
            committed.splitlines(keepends=True), dumped.splitlines(keepends=True),
            "sql/schema.sql (committed)", "what the migrations build", n=2))[:60])
        raise AssertionError(f"sql/schema.sql is out of date: run scripts/schema\n{diff}")


def test_the_schema_file_is_not_a_migration():
    names = [m.name for m in migrate.discover()]
    assert migrate.SCHEMA_FILE not in names
    assert names and all(name[:3].isdigit() for name in names)
