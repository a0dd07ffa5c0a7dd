"""The wallet's unit of work: one transaction, with the repositories hanging off it.

``UnitOfWork(engine, WalletUnit)`` (:class:`~ewallet_client.store.wallet_store.WalletStore`
builds it) yields a :class:`WalletUnit` per block; nothing is durable until
``unit.commit()``, and leaving the block without it rolls back.
"""

from __future__ import annotations

from typing import TypeAlias

from sqlalchemy.orm import Session

from ewallet_client.store.autoload import AutoloadRepo
from ewallet_client.store.bridge import BridgeRepo
from ewallet_client.store.certificates import CertificateRepo
from ewallet_client.store.coins import CoinRepo
from ewallet_client.store.receipts import ReceiptRepo
from ewallet_client.store.settings import SettingsRepo
from ewallet_client.store.spending import SpendingRepo
from ewallet_client.store.windows import WindowRepo
from netpay.sqlstore import Unit, UnitOfWork

__all__ = ["WalletUnit", "WalletUow"]


class WalletUnit(Unit):
    """The repositories of one unit of work; ``commit()`` makes it durable."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.settings = SettingsRepo(session)
        self.coins = CoinRepo(session)
        self.receipts = ReceiptRepo(session)
        self.windows = WindowRepo(session)
        self.certificates = CertificateRepo(session)
        self.bridge = BridgeRepo(session)
        self.spending = SpendingRepo(session)
        self.autoload = AutoloadRepo(session, self.coins)


WalletUow: TypeAlias = UnitOfWork[WalletUnit]
