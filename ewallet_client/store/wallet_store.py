"""The wallet file ``<wallet_dir>/wallet.sqlite`` and its unit-of-work factory.

The directory is mode 0700, the database and its ``-wal``/``-shm`` files are
0600 (:meth:`WalletStore.make_files_private`, also after a chain's seed and
pebbles are written). ``store.begin`` is ``UnitOfWork(engine, WalletUnit)``:
the wallet's use cases (:mod:`ewallet_client.wallet`) open one unit per step
and call the repositories and :mod:`ewallet_client.store.ranges`. The store
holds no calls of its own over the repositories; the one-unit shortcuts the
tests look at a wallet file with are tests/fakes/wallet_store.py.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.exc import OperationalError

from ewallet_client.store.tables import Base
from ewallet_client.store.unit import WalletUnit
from netpay.files import ensure_private_dir
from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url

__all__ = ["DB_NAME", "WalletStore"]

DB_NAME = "wallet.sqlite"


class WalletStore:
    """The wallet's persistent state: one SQLite file, units of work over it."""

    def __init__(self, wallet_dir: Path) -> None:
        ensure_private_dir(wallet_dir)
        self.path = wallet_dir / DB_NAME
        self._engine = make_engine(sqlite_url(self.path), private=True)
        self.begin = UnitOfWork(self._engine, WalletUnit)
        try:
            self.begin.create_all(Base)
        except OperationalError:  # another process created the tables meanwhile
            self.begin.create_all(Base)
        with self.begin() as unit:
            if unit.settings.ensure():
                unit.commit()
        self.make_files_private()

    def make_files_private(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            p = self.path.with_name(self.path.name + suffix)
            if p.exists() and p.stat().st_mode & 0o077:
                p.chmod(0o600)

    def close(self) -> None:
        self._engine.dispose()
