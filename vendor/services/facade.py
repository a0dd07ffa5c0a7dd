"""``VendorServices``: one object for the views, the gRPC servicer and the
server, composed of the use-case areas; every method is a one-line
delegation to the area that holds the use case.

The areas and what each may import (no cycles; an arrow points at what is
imported)::

    credits          -> ports
    custody          -> credits, certificates, ports
    paying           -> custody, ports
    windows          -> paying, custody, credits, ports
    wallet_sessions  -> windows, paying, custody, ports
    reports, refunds -> ports
    redeem           -> refunds, reports, ports

Every area receives :class:`vendor.services.ports.VendorPorts` (or the part
of it it needs) and the areas it calls, in ``__init__``; only this facade
knows them all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from netpay.clock import Clock
from netpay.limits import Limits
from netpay.money import Money
from netpay.v1 import statements_pb2 as pb
from vendor.domain import Item, WindowView
from vendor.services.certificates import CertificateBook
from vendor.services.credits import WindowCredits
from vendor.services.custody import CheckpointSummary, Custody
from vendor.services.paying import Paying, PaymentResult
from vendor.services.ports import (
    BrokerClient,
    HandOffResult,
    PeerClient,
    UnitOfWorkFactory,
    VendorIdentity,
    VendorPorts,
)
from vendor.services.reports import Dashboard, Reports
from vendor.services.wallet_sessions import WalletSessions, WalletSignedIn
from vendor.services.windows import WindowClosed, WindowOpened, Windows
from vendor.storage import ClickRecord, StoredCoin, WalletSession, WindowClickRecord

__all__ = ["VendorServices"]


class VendorServices:
    """The vendor's use cases over one database and one broker."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        identity: VendorIdentity,
        broker: BrokerClient,
        peers: PeerClient,
        limits: Limits,
        clock: Clock,
        certificates: CertificateBook | None = None,
    ) -> None:
        self._ports = VendorPorts(uow, identity, broker, peers, limits, clock)
        self.limits = limits
        self.certificates = certificates or CertificateBook(broker, identity, clock)
        credits = WindowCredits(identity)
        self._custody = Custody(self._ports, self.certificates, credits)
        self._paying = Paying(self._ports, self._custody)
        self._windows = Windows(self._ports, self._paying, self._custody, credits)
        self._wallets = WalletSessions(self._ports, self._custody, self._windows)
        self._reports = Reports(uow, clock)

    @property
    def vendor_id(self) -> str:
        return self._ports.identity.vendor_id

    @property
    def broker_id(self) -> str:
        return self._ports.identity.broker_id

    # -- reads (reports.py, custody.py, windows.py) ------------------------------

    def coin(self, ecoin_id: str) -> StoredCoin | None:
        return self._custody.coin(ecoin_id)

    def refund_pending(self, ecoin_id: str) -> Money | None:
        return self._reports.refund_pending(ecoin_id)

    def clicks(self, ecoin_id: str) -> Sequence[ClickRecord]:
        return self._reports.clicks(ecoin_id)

    def dashboard(self, *, clicks_limit: int = 20, coins_limit: int = 100) -> Dashboard:
        return self._reports.dashboard(clicks_limit=clicks_limit, coins_limit=coins_limit)

    def redemption_history(self, *, limit: int = 100) -> list[dict[str, Any]]:
        return self._reports.history(limit=limit)

    def windows(self, ecoin_id: str) -> Sequence[WindowView]:
        return self._windows.windows(ecoin_id)

    def window_clicks(self, window_id: int) -> Sequence[WindowClickRecord]:
        return self._windows.window_clicks(window_id)

    # -- paying (paying.py) ----------------------------------------------------

    def pay(self, header_value: str, item: Item, now_ms: int) -> PaymentResult:
        return self._paying.pay(header_value, item, now_ms)

    # -- windows (windows.py) --------------------------------------------------

    def open_window(self, header_value: str, now_ms: int) -> WindowOpened:
        return self._windows.open_window(header_value, now_ms)

    def pay_from_window(self, handle: str, item: Item, now_ms: int) -> PaymentResult:
        return self._windows.pay_from_window(handle, item, now_ms)

    def close_window(self, handle: str, now_ms: int) -> WindowClosed:
        return self._windows.close_window(handle, now_ms)

    def close_expired_windows(self) -> int:
        return self._windows.close_expired_windows()

    # -- server-side wallets (wallet_sessions.py) --------------------------------

    def wallet_signin(self, code: str, now_ms: int) -> WalletSignedIn:
        return self._wallets.wallet_signin(code, now_ms)

    def wallet_session(self, handle: str, now_ms: int) -> WalletSession:
        return self._wallets.wallet_session(handle, now_ms)

    def pay_with_wallet(self, handle: str, item: Item, now_ms: int) -> PaymentResult:
        return self._wallets.pay_with_wallet(handle, item, now_ms)

    # -- custody (custody.py) ----------------------------------------------------

    def hand_off(self, grant_envelope: pb.Envelope, caller: str, now_ms: int) -> pb.Envelope:
        return self._custody.hand_off(grant_envelope, caller, now_ms)

    def hand_off_with_credit(
        self, grant_envelope: pb.Envelope, caller: str, now_ms: int
    ) -> HandOffResult:
        return self._custody.hand_off_with_credit(grant_envelope, caller, now_ms)

    def reset_leases(self) -> None:
        self._custody.reset_leases()

    def checkpoint_all(self) -> CheckpointSummary:
        return self._custody.checkpoint_all()

    def reclaim_due(self) -> int:
        return self._custody.reclaim_due()
