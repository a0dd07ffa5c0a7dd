"""The vendor's use cases, one module per area, behind :class:`VendorServices`.

==================  ===========================================================
``ports``           what the services need from outside: the broker, peer and
                    redemption clients, the unit of work, the vendor's identity
``certificates``    other vendors' certificates (verified, cached)
``paying``          pay for a click; replays; the one Receipt-sealing helper
``custody``         acquire a coin, both sides of a hand-off, leases,
                    checkpoints, answering a recall, reclaim
``credits``         what closes a window and issues its WindowCredit
``windows``         cookie-cache windows: open, pay from a window, close
``wallet_sessions`` server-side wallets: sign-in, clicks, drawing windows
``redeem``          daily redemption batches (``Redeemer``)
``refunds``         refunds for returned goods
``reports``         dashboard, a coin's clicks, redemption history and its CSV
``facade``          :class:`VendorServices`, one object for views and servicers
==================  ===========================================================

Each use case runs its database work in one unit of work
(:class:`vendor.storage.VendorUnit`); broker and peer calls happen outside
any transaction.
"""

from vendor.services.certificates import CertificateBook
from vendor.services.custody import CheckpointSummary
from vendor.services.facade import VendorServices
from vendor.services.paying import PaymentResult
from vendor.services.ports import (
    BrokerClient,
    HandOffResult,
    PeerClient,
    RedeemClient,
    UnitOfWorkFactory,
    VendorIdentity,
    VendorPorts,
    WalletBrokerClient,
)
from vendor.services.reports import Dashboard
from vendor.services.wallet_sessions import WalletSignedIn
from vendor.services.windows import WindowClosed, WindowOpened

__all__ = [
    "BrokerClient",
    "CertificateBook",
    "CheckpointSummary",
    "Dashboard",
    "HandOffResult",
    "PaymentResult",
    "PeerClient",
    "RedeemClient",
    "UnitOfWorkFactory",
    "VendorIdentity",
    "VendorPorts",
    "VendorServices",
    "WalletBrokerClient",
    "WalletSignedIn",
    "WindowClosed",
    "WindowOpened",
]
