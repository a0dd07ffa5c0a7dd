"""The broker's unit of work: :class:`Repos` (the repositories of one transaction)
and :class:`BrokerStore` (the database: its schema and the units of work over it).

A use case runs ``with store(read_only=...) as repos: ...; repos.commit()``;
leaving the block without ``commit()`` rolls back. A duplicate key that
reaches the end of the block becomes :class:`netpay.errors.AlreadyExists` (a
concurrent twin of the request won the unique key); inside a
:meth:`Repos.savepoint` it is an answer instead (:attr:`Savepoint.duplicate`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from broker.storage.books import BooksRepo
from broker.storage.coins import CoinRepo
from broker.storage.ledger import LedgerRepo
from broker.storage.portal import PortalRepo
from broker.storage.purchases import PurchaseRepo
from broker.storage.readers import ReaderRepo
from broker.storage.redemption import RedemptionRepo
from broker.storage.spending import SpendingRepo
from broker.storage.tables import Base
from broker.storage.vendors import VendorRepo
from broker.storage.wallets import WalletRepo
from netpay.errors import AlreadyExists
from netpay.sqlstore import Unit, UnitOfWork

__all__ = ["BrokerStore", "Repos", "Savepoint"]


@dataclass
class Savepoint:
    """The outcome of a :meth:`Repos.savepoint`: ``duplicate`` when a unique key refused
    one of its writes (they are all undone then)."""

    duplicate: bool = False


class Repos(Unit):
    """The repositories of one unit of work; ``commit()`` makes it durable."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.readers = ReaderRepo(session)
        self.vendors = VendorRepo(session)
        self.ledger = LedgerRepo(session)
        self.coins = CoinRepo(session)
        self.purchases = PurchaseRepo(session)
        self.portal = PortalRepo(session)
        self.wallets = WalletRepo(session)
        self.redemption = RedemptionRepo(session)
        self.spending = SpendingRepo(session)
        self.books = BooksRepo(session)

    @contextmanager
    def savepoint(self) -> Iterator[Savepoint]:
        """A nested transaction: an exception leaving it undoes its writes only and goes
        on; a duplicate key inside is answered with ``duplicate`` and goes no further."""
        outcome = Savepoint()
        try:
            with self.session.begin_nested():
                yield outcome
        except IntegrityError:
            outcome.duplicate = True


class BrokerStore:
    """The broker's database: schema and units of work.

    Calling the store (``store()``, ``store(read_only=True)``) opens one unit
    of work; it is the unit-of-work factory the services are built on.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._uow = UnitOfWork(engine, Repos)

    def create_schema(self) -> None:
        Base.metadata.create_all(self.engine)

    @contextmanager
    def begin(self, *, read_only: bool = False) -> Iterator[Repos]:
        """One unit of work. A duplicate key anywhere inside becomes AlreadyExists."""
        with self._uow(read_only=read_only) as repos:
            try:
                yield repos
            except IntegrityError as exc:
                raise AlreadyExists("a record with that key already exists") from exc

    __call__ = begin

    def dispose(self) -> None:
        self.engine.dispose()
