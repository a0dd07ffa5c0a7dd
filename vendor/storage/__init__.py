"""The vendor's storage (SQLAlchemy 2.0): the tables, one repository per
aggregate, and :class:`VendorUnit`, the unit of work they hang off.

- ``tables``: the models (the schema; unchanged across versions);
- ``coins``: coins and the click log (custody compare-and-sets, the paid click);
- ``windows``: windows and their clicks;
- ``sessions``: server-side wallet sessions;
- ``redemption``: stored batches, claims, the batch lock, what can be claimed;
- ``refunds``: refunds for returned goods;
- ``reports``: the operator's read-only queries (dashboard, history);
- ``unit``: :class:`VendorUnit`.

Every state change is a compare-and-set (``UPDATE ... WHERE`` + rowcount)
whose new state comes from a transition function of :mod:`vendor.domain`.
Nothing here is SQLite-only.
"""

from vendor.storage.coins import ClickRecord, CoinRepo, EpochGrant, StoredCoin
from vendor.storage.redemption import ClaimRecord, ClickSpan, NewClaim, RedemptionRepo
from vendor.storage.refunds import PaidClick, PendingRefund, RefundRecord, RefundRepo
from vendor.storage.reports import BatchLine, ReportRepo, Revenue
from vendor.storage.sessions import WalletSession, WalletSessionRepo
from vendor.storage.tables import (
    Base,
    ClaimStateRow,
    ClickRow,
    CoinRefundRow,
    CoinRow,
    RedemptionBatchRow,
    RedemptionLockRow,
    VendorRefundRow,
    WalletSessionRow,
    WindowClickRow,
    WindowRow,
)
from vendor.storage.unit import VendorUnit
from vendor.storage.windows import WindowClickRecord, WindowRecord, WindowRepo

__all__ = [
    "Base",
    "BatchLine",
    "ClaimRecord",
    "ClaimStateRow",
    "ClickRecord",
    "ClickRow",
    "ClickSpan",
    "CoinRefundRow",
    "CoinRepo",
    "CoinRow",
    "EpochGrant",
    "NewClaim",
    "PaidClick",
    "PendingRefund",
    "RedemptionBatchRow",
    "RedemptionLockRow",
    "RedemptionRepo",
    "RefundRecord",
    "RefundRepo",
    "ReportRepo",
    "Revenue",
    "StoredCoin",
    "VendorRefundRow",
    "VendorUnit",
    "WalletSession",
    "WalletSessionRepo",
    "WalletSessionRow",
    "WindowClickRecord",
    "WindowClickRow",
    "WindowRecord",
    "WindowRepo",
    "WindowRow",
]
