"""The vendor's unit of work: one transaction, the repositories hanging off it.

``UnitOfWork(engine, VendorUnit)`` (``netpay.sqlstore``) yields a
:class:`VendorUnit` per block; a use case does ``with uow() as unit: ...;
unit.commit()``, and leaving the block without commit rolls back. A
repository answers a duplicate key or a lost compare-and-set with a result
(a bool, ``None``), never with a database exception; after such an answer
the use case leaves the block.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from netpay.sqlstore import Unit
from vendor.storage.coins import CoinRepo
from vendor.storage.redemption import RedemptionRepo
from vendor.storage.refunds import RefundRepo
from vendor.storage.reports import ReportRepo
from vendor.storage.sessions import WalletSessionRepo
from vendor.storage.windows import WindowRepo

__all__ = ["VendorUnit"]


class VendorUnit(Unit):
    """The repositories of one unit of work; ``commit()`` makes it durable."""

    def __init__(self, session: Session) -> None:
        super().__init__(session)
        self.coins = CoinRepo(session)
        self.windows = WindowRepo(session)
        self.sessions = WalletSessionRepo(session)
        self.redemption = RedemptionRepo(session)
        self.refunds = RefundRepo(session)
        self.reports = ReportRepo(session)
