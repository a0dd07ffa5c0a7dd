"""The broker's use cases, one module per area, behind one facade.

Servicers (``broker.rpc``) and the portal (``broker.web``) call
:class:`BrokerServices`; each of its methods runs one use case of one area
in one unit of work, raises :class:`netpay.errors.NetPayError` subclasses for
every refusal, leaves the database unchanged when it does, and never touches
a status code.

=====================  ===============================================================
module                 use cases
=====================  ===============================================================
``identity``           register, login, tokens, failed-login limit, change password;
                       vendor enrollment, registration, certificates, the directory
``accounts``           portal sessions, profile, payment instruments, spending limits
``coins``              buy a coin, its status, the reader's list, freeze / unfreeze
``custody``            acquire, hand-off grant, record hand-off, reclaim, checkpoint,
                       recall (and forced close)
``wallets``            server-side wallets: sign-in, codes, grants, draw a window
``redemption``         redeem a batch of claims, refund expired coins
``refunds``            vendor refunds netted in a batch
``history``            a reader's or a vendor's money history
``reconcile``          ``netpay broker reconcile``: the books as of a day's end
``ledger``             the ledger and bank operations the others call
``credits``            window credits kept for the reader (hand-off, redeem)
``epochs``             the custody log's shared steps
``ports``, ``common``  what the areas need from outside; shared helpers
=====================  ===============================================================
"""

from __future__ import annotations

from broker.domain import WalletKind
from broker.services.accounts import InstrumentView, PortalSession, ProfileView
from broker.services.coins import (
    BuyCoinInput,
    CoinStatusView,
    PortalCoinView,
    PurchaseResult,
)
from broker.services.common import (
    MAX_PASSWORD_CHARS,
    MIN_PASSWORD_CHARS,
    PORTAL_SESSION_TTL_S,
    hash_token,
    new_token,
)
from broker.services.custody import (
    CheckpointItem,
    CheckpointOutcome,
    CheckpointStatus,
    HandOffRequiredView,
)
from broker.services.epochs import CustodyGrantView
from broker.services.facade import BrokerServices
from broker.services.history import HistoryItem
from broker.services.identity import (
    CERTIFICATE_TTL_S,
    MAX_FAILED_LOGINS,
    READER_TOKEN_TTL_S,
    DirectoryEntry,
    LoginResult,
    VendorRegistration,
    check_origin,
    enroll_vendor,
)
from broker.services.ports import default_password_hasher
from broker.services.reconcile import Reconciliation, reconcile
from broker.services.wallets import (
    MAX_RETURN_TO_CHARS,
    SigninTarget,
    WalletGrantView,
    WalletSignin,
    WindowDrawView,
)

__all__ = [
    "CERTIFICATE_TTL_S",
    "MAX_FAILED_LOGINS",
    "MAX_PASSWORD_CHARS",
    "MAX_RETURN_TO_CHARS",
    "MIN_PASSWORD_CHARS",
    "PORTAL_SESSION_TTL_S",
    "READER_TOKEN_TTL_S",
    "BrokerServices",
    "BuyCoinInput",
    "CheckpointItem",
    "CheckpointOutcome",
    "CheckpointStatus",
    "CoinStatusView",
    "CustodyGrantView",
    "DirectoryEntry",
    "HandOffRequiredView",
    "HistoryItem",
    "InstrumentView",
    "LoginResult",
    "PortalCoinView",
    "PortalSession",
    "ProfileView",
    "PurchaseResult",
    "Reconciliation",
    "SigninTarget",
    "VendorRegistration",
    "WalletGrantView",
    "WalletKind",
    "WalletSignin",
    "WindowDrawView",
    "check_origin",
    "default_password_hasher",
    "enroll_vendor",
    "hash_token",
    "new_token",
    "reconcile",
]
