"""SQLAlchemy 2.0 plumbing shared by the broker, the vendor and the wallet.

Engines are built by :func:`make_engine` at process start (never at import
time). SQLite runs in WAL mode with ``synchronous=FULL`` (a committed spend
survives a crash of the process and of the machine) and every transaction
starts with ``BEGIN IMMEDIATE``, so a compare-and-set never meets a lock
upgrade failure. Nothing here is SQLite-only: on PostgreSQL the same code
runs with row-level compare-and-set (``UPDATE ... WHERE``) and row locks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

__all__ = ["Unit", "UnitOfWork", "make_engine", "sqlite_url"]

_BUSY_TIMEOUT_MS = 30_000
_READ_ONLY = "netpay_read_only"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def make_engine(url: str, *, private: bool = False) -> Engine:
    """An engine for ``url``; for SQLite files, ``private`` makes them mode 0600."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            if private and not Path(path).exists():
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                os.close(fd)
        engine = create_engine(
            url,
            connect_args={"timeout": _BUSY_TIMEOUT_MS / 1000, "check_same_thread": False},
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_connection.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            # Readers take no write lock: in WAL mode they run beside the writer.
            if conn.get_execution_options().get(_READ_ONLY):
                conn.exec_driver_sql("BEGIN DEFERRED")
            else:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        if private and path and path != ":memory:":
            for suffix in ("", "-wal", "-shm"):
                p = Path(path + suffix)
                if p.exists():
                    p.chmod(0o600)
        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


class Unit:
    """One transaction of one party; the party's repositories hang off it.

    A party subclasses this (``broker.storage.Repos``, ...) and builds its
    repositories from :attr:`session` in ``__init__``. Nothing is durable
    until :meth:`commit`; the :class:`UnitOfWork` that made the unit rolls
    back whatever is left when the block ends. Repositories answer duplicate
    keys and lost compare-and-sets with results (a bool, a typed outcome),
    never with a database exception.
    """

    def __init__(self, session: Session) -> None:
        self.session = session

    def commit(self) -> None:
        self.session.commit()


U = TypeVar("U", bound=Unit)


class UnitOfWork(Generic[U]):
    """One use case, one transaction: leaving the block without commit() rolls back.

    ``UnitOfWork(engine, Repos)`` yields a ``Repos`` (a :class:`Unit`) per
    block. ``read_only=True`` is for units that only read: on SQLite they
    start a deferred transaction, so they neither wait for nor block the
    writer.
    """

    def __init__(self, engine: Engine, unit: Callable[[Session], U]) -> None:
        self.engine = engine
        self._unit = unit
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._read_sessions = sessionmaker(
            engine.execution_options(**{_READ_ONLY: True}), expire_on_commit=False
        )

    @contextmanager
    def __call__(self, *, read_only: bool = False) -> Iterator[U]:
        session = (self._read_sessions if read_only else self._sessions)()
        try:
            yield self._unit(session)
        finally:
            session.rollback()
            session.close()

    def create_all(self, base: type[DeclarativeBase]) -> None:
        base.metadata.create_all(self.engine)
