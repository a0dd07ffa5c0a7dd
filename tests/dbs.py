"""Databases for tests that must hold on SQLite *and* PostgreSQL (issue 4: the race
and ledger tests).

``NETPAY_TEST_PG_URL`` is an admin URL of a PostgreSQL 15 cluster on a
loopback port (``scripts/test`` starts a temporary one when it can), for
example ``postgresql+psycopg://postgres@127.0.0.1:55432/postgres``. Each call
of :func:`fresh_db_url` for ``"postgresql"`` creates a new, empty database in
it. Without the variable the PostgreSQL cases skip, except under CI, where
they fail: CI must run them.

Use::

    @pytest.mark.parametrize("backend", BACKENDS)
    def test_x(backend, tmp_path):
        url = fresh_db_url(backend, tmp_path, "broker")
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import pytest

from netpay.sqlstore import sqlite_url

__all__ = ["BACKENDS", "PG_ENV", "fresh_db_url"]

PG_ENV = "NETPAY_TEST_PG_URL"
BACKENDS = ("sqlite", "postgresql")


def _pg_admin_url() -> str:
    url = os.environ.get(PG_ENV, "")
    if not url:
        message = f"PostgreSQL tests need {PG_ENV} (scripts/test starts a cluster when it can)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return url


def fresh_db_url(backend: str, tmp_path: Path, name: str) -> str:
    """A new, empty database for one party of one test."""
    if backend == "sqlite":
        return sqlite_url(tmp_path / f"{name}.sqlite")
    assert backend == "postgresql", backend
    admin = _pg_admin_url()
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    database = f"t_{name.replace('-', '_')}_{secrets.token_hex(6)}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{database}"'))
    finally:
        engine.dispose()
    return make_url(admin).set(database=database).render_as_string(hide_password=False)
