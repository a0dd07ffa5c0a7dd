"""The wallet's store: one SQLite file ``<wallet_dir>/wallet.sqlite``.

It holds the broker settings (address, pinned broker id and key, reader id,
token — never the password), the coins with their seeds and pebbles, the
receipts, the headers issued but not yet seen accepted, the vendor
certificates seen, the windows, the bridge's approved origins, the spending
limits and the auto-load agreements.

* :mod:`~ewallet_client.store.tables`: the schema (unchanged: old wallet
  files keep working);
* one repository module per aggregate: ``settings``, ``coins`` (and
  pebbles), ``receipts`` (and outstanding headers), ``windows``,
  ``certificates``, ``bridge`` (origins and their spending), ``spending``
  (limits and the day's spending), ``autoload``;
* :mod:`~ewallet_client.store.unit`: :class:`WalletUnit`, the repositories
  of one unit of work;
* :mod:`~ewallet_client.store.ranges`: the index-range allocation (a
  compare-and-set, so two wallet processes never hand out overlapping
  ranges) and the other writes that span aggregates;
* :mod:`~ewallet_client.store.wallet_store`: :class:`WalletStore`, the file
  and its unit-of-work factory ``store.begin``.
"""

from ewallet_client.store.autoload import MAX_AUTOLOAD_BELOW_MINOR
from ewallet_client.store.bridge import MAX_APPROVED_ORIGINS
from ewallet_client.store.coins import PEBBLE_EVERY
from ewallet_client.store.ranges import RangeRequest
from ewallet_client.store.records import (
    KEEP,
    Allocation,
    ApprovedOrigin,
    AutoloadAgreement,
    BridgeCharge,
    Keep,
    NewCoin,
    PendingCoin,
    Settings,
    WindowRequest,
    WindowView,
    effective_caps,
)
from ewallet_client.store.tables import (
    AutoloadRow,
    Base,
    BridgeOriginRow,
    BridgeSpendingRow,
    CertificateRow,
    CoinRow,
    OutstandingRow,
    PebbleRow,
    ReceiptRow,
    SettingsRow,
    SpendingLimitRow,
    SpendingRow,
    WindowRow,
)
from ewallet_client.store.unit import WalletUnit, WalletUow
from ewallet_client.store.wallet_store import DB_NAME, WalletStore

__all__ = [
    "DB_NAME",
    "KEEP",
    "MAX_APPROVED_ORIGINS",
    "MAX_AUTOLOAD_BELOW_MINOR",
    "PEBBLE_EVERY",
    "Allocation",
    "ApprovedOrigin",
    "AutoloadAgreement",
    "AutoloadRow",
    "Base",
    "BridgeCharge",
    "BridgeOriginRow",
    "BridgeSpendingRow",
    "CertificateRow",
    "CoinRow",
    "Keep",
    "NewCoin",
    "OutstandingRow",
    "PebbleRow",
    "PendingCoin",
    "RangeRequest",
    "ReceiptRow",
    "Settings",
    "SettingsRow",
    "SpendingLimitRow",
    "SpendingRow",
    "WalletStore",
    "WalletUnit",
    "WalletUow",
    "WindowRequest",
    "WindowRow",
    "WindowView",
    "effective_caps",
]
