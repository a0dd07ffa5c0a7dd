"""The broker's storage: SQLAlchemy 2.0 tables, one repository module per aggregate,
and the unit of work they hang off (:mod:`broker.storage.unit`).

Portable SQL only (SQLite by default, PostgreSQL at scale): every custody
change is a compare-and-set ``UPDATE ... WHERE`` whose row count is checked
(the repository answers False when the row moved), rows that a use case will
change are read ``FOR UPDATE`` (ignored by SQLite, where ``BEGIN IMMEDIATE``
already serialises writers), and uniqueness is enforced by constraints.
Engines are built by the server at start, never at import time.
"""

from __future__ import annotations

from broker.storage.books import (
    BooksRepo,
)
from broker.storage.coins import (
    CoinRepo,
    StoredCoin,
)
from broker.storage.ledger import (
    LedgerRepo,
)
from broker.storage.portal import (
    PortalRepo,
)
from broker.storage.purchases import (
    PurchaseRepo,
)
from broker.storage.readers import (
    ReaderRepo,
)
from broker.storage.redemption import (
    RedemptionRepo,
    StoredClaim,
    StoredCredit,
    StoredRange,
)
from broker.storage.spending import (
    SpendingRepo,
)
from broker.storage.tables import (
    AccountRow,
    Base,
    ClaimRangeRow,
    ClaimRow,
    CoinRow,
    CorrectionRow,
    CustodyEpochRow,
    DisputeRow,
    EntryRow,
    ExpiryRefundRow,
    FlaggedReaderRow,
    LoginFailureRow,
    PaymentInstrumentRow,
    PortalSessionRow,
    PurchaseRow,
    ReaderProfileRow,
    ReaderRow,
    ReaderSpendingRow,
    ReaderTokenRow,
    RedemptionBatchRow,
    ServerWalletRow,
    SpendingLimitRow,
    TransactionRow,
    VendorRefundRow,
    VendorRow,
    WalletCodeRow,
    WalletGrantRow,
    WalletSessionRow,
    WalletSigninFailureRow,
    WindowCreditRow,
    table_names,
)
from broker.storage.unit import (
    BrokerStore,
    Repos,
    Savepoint,
)
from broker.storage.vendors import (
    VendorRepo,
)
from broker.storage.wallets import (
    WalletRepo,
)

__all__ = [
    "AccountRow",
    "Base",
    "BooksRepo",
    "BrokerStore",
    "ClaimRangeRow",
    "ClaimRow",
    "CoinRepo",
    "CoinRow",
    "CorrectionRow",
    "CustodyEpochRow",
    "DisputeRow",
    "EntryRow",
    "ExpiryRefundRow",
    "FlaggedReaderRow",
    "LedgerRepo",
    "LoginFailureRow",
    "PaymentInstrumentRow",
    "PortalRepo",
    "PortalSessionRow",
    "PurchaseRepo",
    "PurchaseRow",
    "ReaderProfileRow",
    "ReaderRepo",
    "ReaderRow",
    "ReaderSpendingRow",
    "ReaderTokenRow",
    "RedemptionBatchRow",
    "RedemptionRepo",
    "Repos",
    "Savepoint",
    "ServerWalletRow",
    "SpendingLimitRow",
    "SpendingRepo",
    "StoredClaim",
    "StoredCoin",
    "StoredCredit",
    "StoredRange",
    "TransactionRow",
    "VendorRefundRow",
    "VendorRepo",
    "VendorRow",
    "WalletCodeRow",
    "WalletGrantRow",
    "WalletRepo",
    "WalletSessionRow",
    "WalletSigninFailureRow",
    "WindowCreditRow",
    "table_names",
]
