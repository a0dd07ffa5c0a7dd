"""The vendor's use cases: pay, hand_off, acquire, checkpoint_all, reclaim_due,
and the cookie-cache windows (open_window, pay_from_window, close_window,
close_expired_windows).

Each use case runs its database work in one unit of work; broker and peer
calls happen outside any transaction. Talking to the broker and to other
vendors goes through the :class:`BrokerClient` and :class:`PeerClient`
protocols, so unit tests use fakes and production uses gRPC
(``vendor.broker_client``, ``vendor.peer_client``).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar, runtime_checkable

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from netpay.chain import WORD_BYTES
from netpay.clock import Clock
from netpay.encoding import b64url_decode, b64url_encode, check_party_id
from netpay.envelope import SigningKey, open_envelope, seal
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    BrokerUnavailable,
    CoinBusy,
    Expired,
    Insufficient,
    LimitExceeded,
    Malformed,
    NetPayError,
    NotFound,
    PaymentError,
    PermissionDenied,
    PreconditionFailed,
    Revoked,
    SignatureInvalid,
    Unauthenticated,
    Unavailable,
    WrongAmount,
)
from netpay.header import Credentials, parse_authorization
from netpay.limits import Limits
from netpay.money import Money, words_for
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb
from vendor.domain import (
    CloseReason,
    CoinView,
    Item,
    PaymentPlan,
    VendorCoinState,
    WindowClick,
    WindowState,
    WindowView,
    check_payment,
    check_window_click,
    check_window_open,
    lease_deadline_ms,
    lease_is_live,
    needs_checkpoint,
    verify_payword,
    window_expiry_ms,
)
from vendor.storage import (
    ClickRecord,
    EpochGrant,
    Revenue,
    StoredCoin,
    VendorRepository,
    WalletSession,
    WindowClickRecord,
    WindowRecord,
    refund_pending_units,
    set_refund_pending,
)

__all__ = [
    "BrokerClient",
    "CertificateBook",
    "CheckpointSummary",
    "Dashboard",
    "HandOffResult",
    "PaymentResult",
    "PeerClient",
    "UnitOfWorkFactory",
    "VendorIdentity",
    "VendorServices",
    "WalletBrokerClient",
    "WalletSignedIn",
    "WindowClosed",
    "WindowOpened",
]

log = logging.getLogger(__name__)


class UnitOfWorkFactory(Protocol):
    """``netpay.sqlstore.UnitOfWork``: a transaction per call; reads may skip the write lock."""

    def __call__(self, *, read_only: bool = False) -> AbstractContextManager[Session]: ...


_PAY_ATTEMPTS = 4
_HANDOFF_ATTEMPTS = 3
_MAX_CERTIFICATES = 1024
_ITEM_ID_MAX = 64
_DASHBOARD_MAX_ROWS = 1_000
_HANDLE_BYTES = 32
_HANDLE_CHARS = 43  # base64url of 32 bytes, no padding
_WINDOW_CLOSE_ATTEMPTS = 3
_EXPIRED_PAGE = 1_000
_CODE_MAX_CHARS = 64
_WALLET_SESSION_S = 12 * 3600  # the broker portal's session lifetime
_WALLET_DRAW_UNITS = 50  # the least a server-side wallet window draws
_WALLET_ATTEMPTS = 8

_R = TypeVar("_R")


def _check_click_limit(grant: pb.Envelope, amount_minor: int) -> None:
    """The reader's per-click limit, which the broker put in the WalletGrant (the grant
    was verified at sign-in; its payload is read again here, not re-verified)."""
    body = pb.WalletGrant.FromString(grant.payload)
    if body.HasField("max_click_minor") and amount_minor > body.max_click_minor:
        raise LimitExceeded(
            f"this article costs {amount_minor} minor units; your limit per click is "
            f"{body.max_click_minor}"
        )


class _HolderUnreachable(CoinBusy):
    """The holder did not answer ``Vendor.HandOff``: the reader gets ``coin_busy``
    unless a forced acquisition takes the coin."""


class BrokerClient(Protocol):
    """The broker RPCs the vendor's use cases need (vendor-authenticated).

    Every method raises a typed NetPayError; an unreachable broker is
    :class:`BrokerUnavailable`.
    """

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope: ...

    def acquire_coin(
        self,
        ecoin_id: str,
        proof_index: int,
        proof_word: bytes,
        *,
        force: bool = False,
        currency: str = "",
    ) -> broker_pb2.AcquireCoinResponse: ...

    def record_handoff(
        self, coin_index: pb.Envelope, window_credit: pb.Envelope | None = None
    ) -> broker_pb2.CustodyGrant: ...

    def reclaim(
        self, ecoin_id: str, epoch: int, coin_index: pb.Envelope
    ) -> broker_pb2.CustodyGrant: ...

    def checkpoint(self, indexes: Sequence[pb.Envelope]) -> broker_pb2.CheckpointResponse: ...


@runtime_checkable
class WalletBrokerClient(Protocol):
    """The broker RPCs of server-side wallets (vendor-authenticated)."""

    def exchange_wallet_code(self, code: str) -> broker_pb2.ExchangeWalletCodeResponse: ...

    def acquire_coin_with_grant(
        self, ecoin_id: str, wallet_grant: pb.Envelope, *, force: bool = False
    ) -> broker_pb2.AcquireCoinResponse: ...

    def draw_window(
        self, wallet_grant: pb.Envelope, epoch: int, units: int
    ) -> broker_pb2.DrawWindowResponse: ...


class PeerClient(Protocol):
    """Calls to another vendor's gRPC service, signed as this vendor."""

    def hand_off(self, address: str, grant: pb.Envelope) -> HandOffResult:
        """``Vendor.HandOff(grant)`` at ``address``: Envelope(CoinIndex) and the
        Envelope(WindowCredit) of the window it closed, if any."""
        ...


@dataclass(frozen=True)
class VendorIdentity:
    vendor_id: str
    key: SigningKey
    broker_id: str
    broker_public_key: bytes


@dataclass(frozen=True)
class PaymentResult:
    """An accepted (or re-served) payment."""

    receipt: bytes  # serialized Envelope(Receipt)
    words_left: int
    replayed: bool
    ecoin_id: str
    to_index: int
    unit_value_minor: int  # the coin's u: the reader's credit is words_left * u
    currency: str
    # Paid from a window: the words left in it (a server-side wallet's
    # words_left also counts the coin's words not yet drawn).
    window_words_left: int | None = None
    # Paid from a cookie-cache window: words_left is the window's, and the rest of
    # the coin is in the reader's own wallet (this newspaper cannot know it).
    window_only: bool = False

    @property
    def credit_left(self) -> Money:
        """What is left on the reader's coin after this payment."""
        return Money(self.words_left * self.unit_value_minor, self.currency)


@dataclass(frozen=True)
class Dashboard:
    """The operator's view: clicks, revenue to be redeemed, the coins held."""

    click_count: int
    recent_clicks: Sequence[ClickRecord]
    revenue: Sequence[Revenue]
    coin_counts: Mapping[VendorCoinState, int]
    coins: Sequence[CoinView]  # HELD and HANDING_OFF, most recently changed first
    now_ms: int
    open_window_count: int = 0
    open_windows: Sequence[WindowView] = ()  # newest first


@dataclass(frozen=True)
class WindowOpened:
    """A window opened (or the same window again, for a retried header)."""

    vendor_id: str
    handle: str  # the cookie value: 32 bytes, base64url; only its SHA-256 is stored
    window: WindowView
    replayed: bool

    def max_age_s(self, now_ms: int) -> int:
        """The cookie's Max-Age: the seconds until the window expires."""
        return max(0, -(-(self.window.expires_at_ms - now_ms) // 1000))


@dataclass(frozen=True)
class WalletSignedIn:
    """A reader signed in with a server-side wallet at this newspaper."""

    handle: str  # the netpay_wallet cookie: 32 random bytes, base64url; stored as SHA-256
    ecoin_id: str
    expires_at_ms: int

    def max_age_s(self, now_ms: int) -> int:
        return max(0, (self.expires_at_ms - now_ms) // 1000)


@dataclass(frozen=True)
class WindowClosed:
    """A closed window's signed WindowCredit (the same one on every repeat)."""

    credit: pb.Envelope  # Envelope(WindowCredit)
    refund_units: int
    window: WindowView


@dataclass(frozen=True)
class HandOffResult:
    """``Vendor.HandOff``'s reply: the CoinIndex and, when the hand-off closed
    a window, its WindowCredit."""

    coin_index: pb.Envelope
    window_credit: pb.Envelope | None


@dataclass(frozen=True)
class CheckpointSummary:
    leased: int = 0
    closed: int = 0
    rejected: int = 0
    revoked: int = 0  # rejected because the coin is frozen (CheckpointResult.revoked)


class CertificateBook:
    """Vendor certificates fetched from the broker, verified, cached until expiry."""

    def __init__(self, broker: BrokerClient, identity: VendorIdentity, clock: Clock) -> None:
        self._broker = broker
        self._identity = identity
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, pb.VendorCertificate] = {}

    def verify(self, envelope: pb.Envelope, vendor_id: str | None = None) -> pb.VendorCertificate:
        """Open a broker-signed VendorCertificate and check it is current."""
        cert = open_envelope(envelope, pb.VendorCertificate, self._identity.broker_public_key)
        if vendor_id is not None and cert.vendor_id != vendor_id:
            raise SignatureInvalid("the certificate names another vendor")
        if cert.broker_id and cert.broker_id != self._identity.broker_id:
            raise SignatureInvalid("the certificate names another broker")
        if cert.valid_until_ms <= self._clock.now_ms():
            raise PreconditionFailed(f"the certificate of {cert.vendor_id} has expired")
        return cert

    def certificate(self, vendor_id: str) -> pb.VendorCertificate:
        now = self._clock.now_ms()
        with self._lock:
            cached = self._cache.get(vendor_id)
        if cached is not None and cached.valid_until_ms > now:
            return cached
        try:
            envelope = self._broker.get_vendor_certificate(vendor_id)
        except NotFound as exc:
            raise Unauthenticated(f"unknown vendor {vendor_id}") from exc
        cert = self.verify(envelope, vendor_id)
        with self._lock:
            if len(self._cache) >= _MAX_CERTIFICATES:
                self._cache.clear()
            self._cache[vendor_id] = cert
        return cert

    def public_key(self, vendor_id: str) -> bytes:
        return bytes(self.certificate(vendor_id).public_key)


def _payment_error_from_broker(err: NetPayError) -> NetPayError:
    """What a reader sees when a broker call on its payment's path fails."""
    if isinstance(err, PaymentError):
        return err
    if isinstance(err, NotFound):
        return BadPayword(f"the broker does not know this coin: {err.detail}")
    if isinstance(err, PreconditionFailed):
        return CoinBusy(f"the coin is changing hands: {err.detail}", retry_after_s=1)
    return BrokerUnavailable(f"the broker refused: {err.code}: {err.detail}")


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
        repo: VendorRepository | None = None,
        certificates: CertificateBook | None = None,
    ) -> None:
        self._uow = uow
        self._id = identity
        self._broker = broker
        self._peers = peers
        self.limits = limits
        self._clock = clock
        self._repo = repo or VendorRepository()
        self.certificates = certificates or CertificateBook(broker, identity, clock)
        self._wallets = broker if isinstance(broker, WalletBrokerClient) else None
        # Window handles are derived from the window payment with a key only this
        # vendor has, so a retried header gets the same handle without storing it.
        self._handle_key = hashlib.sha256(
            b"NetPay-v1 window handle\x00" + identity.key.raw_private()
        ).digest()

    @property
    def vendor_id(self) -> str:
        return self._id.vendor_id

    @property
    def unit_of_work(self) -> UnitOfWorkFactory:
        """The vendor's database (for read-only reports such as the redemption history)."""
        return self._uow

    @property
    def broker_id(self) -> str:
        return self._id.broker_id

    # -- reads -----------------------------------------------------------------

    def coin(self, ecoin_id: str) -> StoredCoin | None:
        with self._uow(read_only=True) as session:
            return self._repo.get(session, ecoin_id)

    def refund_pending(self, ecoin_id: str) -> Money | None:
        """Window credit of the coin on its way back to the reader, as the broker
        last said (None when nothing is)."""
        with self._uow(read_only=True) as session:
            units = refund_pending_units(session, ecoin_id)
            if not units:
                return None
            stored = self._repo.get(session, ecoin_id)
        if stored is None:
            return None
        return Money(units * stored.view.unit_value_minor, stored.view.currency)

    def clicks(self, ecoin_id: str) -> Sequence[ClickRecord]:
        with self._uow(read_only=True) as session:
            return self._repo.clicks(session, ecoin_id)

    def dashboard(self, *, clicks_limit: int = 20, coins_limit: int = 100) -> Dashboard:
        """Everything the operator's dashboard shows, read in one unit of work."""
        clicks_limit = max(0, min(clicks_limit, _DASHBOARD_MAX_ROWS))
        coins_limit = max(0, min(coins_limit, _DASHBOARD_MAX_ROWS))
        with self._uow(read_only=True) as session:
            return Dashboard(
                click_count=self._repo.click_count(session),
                recent_clicks=self._repo.recent_clicks(session, limit=clicks_limit),
                revenue=self._repo.revenue(session),
                coin_counts=self._repo.coin_counts(session),
                coins=[
                    s.view
                    for s in self._repo.coins_in(
                        session,
                        (VendorCoinState.HELD, VendorCoinState.HANDING_OFF),
                        limit=coins_limit,
                    )
                ],
                now_ms=self._clock.now_ms(),
                open_window_count=self._repo.open_window_count(session),
                open_windows=self._repo.open_windows(session, limit=coins_limit),
            )

    # -- paying ----------------------------------------------------------------

    def pay(self, header_value: str, item: Item, now_ms: int) -> PaymentResult:
        """Accept one paid click (protocol.md, "The HTTP payment").

        The spend and the click are committed durably before this returns;
        the caller may then send the resource.
        """
        if not 0 < len(item.item_id) <= _ITEM_ID_MAX:
            raise Malformed("bad item id")
        creds = parse_authorization(header_value)
        if creds.window is not None:
            raise Malformed("windows are opened with POST /netpay/window, not on an article")

        # One read, one statement for both: the retry lookup (before any
        # custody check) and the coin.
        with self._uow(read_only=True) as session:
            first_look, earlier = self._repo.pay_lookup(session, creds.ecoin_id, creds.index)
        replay = self._replay_of(earlier, first_look, creds, item, now_ms)
        if replay is not None:
            return replay

        def plan(coin: CoinView) -> PaymentPlan:
            return check_payment(coin, creds.prev, creds.index, item, self.limits, now_ms)

        def commit(coin: CoinView, plan: PaymentPlan) -> PaymentResult | None:
            receipt = seal(
                pb.Receipt(
                    vendor_id=self._id.vendor_id,
                    ecoin_id=coin.ecoin_id,
                    epoch=coin.epoch,
                    from_index=plan.prev,
                    to_index=plan.index,
                    amount_minor=item.price.amount_minor,
                    currency=item.price.currency,
                    item_id=item.item_id,
                    time_ms=now_ms,
                ),
                self._id.key,
            ).SerializeToString()
            click = ClickRecord(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                from_index=plan.prev,
                to_index=plan.index,
                payword=creds.payword,
                item_id=item.item_id,
                amount_minor=item.price.amount_minor,
                currency=item.price.currency,
                receipt=receipt,
                created_at_ms=now_ms,
            )
            if not self._commit_spend(coin, click, now_ms):
                return None
            return PaymentResult(
                receipt=receipt,
                words_left=coin.n - plan.index,
                replayed=False,
                ecoin_id=coin.ecoin_id,
                to_index=plan.index,
                unit_value_minor=coin.unit_value_minor,
                currency=coin.currency,
            )

        return self._spend(
            creds,
            now_ms,
            first_look,
            plan,
            lambda: self._replay(creds, item, now_ms),
            commit,
            currency=item.price.currency,
        )

    def _spend(
        self,
        creds: Credentials,
        now_ms: int,
        first_look: StoredCoin | None,
        plan_for: Callable[[CoinView], PaymentPlan],
        replay: Callable[[], _R | None],
        commit: Callable[[CoinView, PaymentPlan], _R | None],
        *,
        currency: str = "",
    ) -> _R:
        """The spend of ``(prev, index]`` shared by a paid click and a window
        (``currency``: the price's, so a coin in another one never moves here).

        Custody first (acquire, hand-off in progress, lease), then ``plan_for``
        (the rules, before hashing), a synchronous checkpoint when the spend
        would pass max_unreported_units, the hash, and ``commit`` (the
        compare-and-set; ``None`` when it lost). ``replay`` finds the same
        purchase committed by a twin request.
        """
        checkpointed = probed = False
        for attempt in range(_PAY_ATTEMPTS):
            stored = first_look if attempt == 0 else self.coin(creds.ecoin_id)
            if stored is None or stored.view.state is VendorCoinState.CLOSED:
                if creds.index <= creds.prev:
                    raise WrongAmount("index must be above prev")
                stored = self._acquire(creds, now_ms, currency)
            coin = stored.view
            if coin.state is VendorCoinState.HANDING_OFF:
                if not probed:
                    # The reader may be back from the next holder: if the broker says
                    # the hand-off completed, our epoch is closed and we acquire anew.
                    probed = True
                    if self._probe_closed(coin):
                        continue
                raise CoinBusy("the coin is being handed off", retry_after_s=self._busy_s(stored))
            if coin.state is VendorCoinState.CLOSED:
                continue
            if not lease_is_live(coin, now_ms):
                self._renew(coin)
                continue
            try:
                plan = plan_for(coin)
            except AlreadySpent:
                # A twin of this very purchase may have committed since the first look.
                again = replay()
                if again is not None:
                    return again
                raise
            if not checkpointed and needs_checkpoint(coin, creds.index, self.limits):
                checkpointed = True
                self._renew(coin)
                continue
            verify_payword(creds.ecoin_bytes, coin, creds.index, creds.payword)
            done = commit(coin, plan)
            if done is not None:
                return done
            # Lost the compare-and-set: maybe to the same purchase, else resync.
            again = replay()
            if again is not None:
                return again
            fresh = self.coin(creds.ecoin_id)
            assert fresh is not None, "a coin row is never deleted"
            if fresh.view.state is VendorCoinState.HANDING_OFF:
                raise CoinBusy("the coin is being handed off", retry_after_s=self._busy_s(fresh))
            if (
                fresh.view.state is VendorCoinState.HELD
                and fresh.view.epoch == coin.epoch
                and fresh.view.index != coin.index
            ):
                raise AlreadySpent(
                    f"another payment moved the coin to {fresh.view.index}",
                    index=fresh.view.index,
                    payword=fresh.view.payword,
                )
        raise CoinBusy("the coin keeps changing; retry", retry_after_s=1)

    def _replay(self, creds: Credentials, item: Item, now_ms: int) -> PaymentResult | None:
        with self._uow(read_only=True) as session:
            stored, click = self._repo.pay_lookup(session, creds.ecoin_id, creds.index)
        return self._replay_of(click, stored, creds, item, now_ms)

    def _replay_of(
        self,
        click: ClickRecord | None,
        stored: StoredCoin | None,
        creds: Credentials,
        item: Item,
        now_ms: int,
    ) -> PaymentResult | None:
        """The same header for the same item within retry_ttl_s is the same purchase.

        ``click`` is the click that took ``creds.index`` and ``stored`` its coin,
        both read in one unit.
        """
        if click is None or not secrets.compare_digest(click.payword, creds.payword):
            return None
        if click.created_at_ms < now_ms - self.limits.retry_ttl_s * 1000:
            return None
        assert stored is not None, "a click implies a coin row"
        if click.item_id != item.item_id:
            raise AlreadySpent(
                "this payword already paid for another item",
                index=stored.view.index,
                payword=stored.view.payword,
            )
        return PaymentResult(
            receipt=click.receipt,
            words_left=stored.view.n - click.to_index,
            replayed=True,
            ecoin_id=click.ecoin_id,
            to_index=click.to_index,
            unit_value_minor=stored.view.unit_value_minor,
            currency=stored.view.currency,
        )

    def _commit_spend(self, coin: CoinView, click: ClickRecord, now_ms: int) -> bool:
        with self._uow() as session:
            moved = self._repo.cas_pay(
                session,
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                from_index=coin.index,
                to_index=click.to_index,
                payword=click.payword,
                now_ms=now_ms,
            )
            if not moved:
                return False
            try:
                self._repo.add_click(session, click)
            except IntegrityError:
                return False
            session.commit()
        return True

    def _busy_s(self, stored: StoredCoin) -> int:
        started = stored.handoff_started_ms or self._clock.now_ms()
        left_ms = started + self.limits.handoff_ttl_s * 1000 - self._clock.now_ms()
        return max(1, min(self.limits.handoff_ttl_s, -(-left_ms // 1000)))

    # -- windows (cookie-cache wallets) ----------------------------------------

    def windows(self, ecoin_id: str) -> Sequence[WindowView]:
        with self._uow(read_only=True) as session:
            return self._repo.windows_of(session, ecoin_id)

    def window_clicks(self, window_id: int) -> Sequence[WindowClickRecord]:
        with self._uow(read_only=True) as session:
            return self._repo.window_clicks(session, window_id)

    def open_window(self, header_value: str, now_ms: int) -> WindowOpened:
        """``POST /netpay/window``: a payment of ``m`` words that opens a window.

        The spend of ``(p, j]`` is the compare-and-set of a paid click; in the
        same transaction the coin's open window (if any) is closed with a
        WindowCredit (reason "closed") and the new window is inserted. The same
        header within retry_ttl_s returns the same window and spends nothing.
        """
        creds = parse_authorization(header_value)
        if creds.window is None:
            raise Malformed("a window payment needs the window= parameter")
        units = creds.window
        if units < 1:
            raise Malformed("a window is at least one word")
        if units > self.limits.max_window_units:
            raise LimitExceeded(f"a window is at most {self.limits.max_window_units} words")
        if creds.index - creds.prev != units:
            raise Malformed("window= must equal index - prev")
        handle = self._window_handle(creds)
        digest = hashlib.sha256(b64url_decode(handle)).digest()

        with self._uow(read_only=True) as session:
            first_look = self._repo.get(session, creds.ecoin_id)
        replay = self._window_replay(creds, handle, digest, now_ms)
        if replay is not None:
            return replay

        def plan(coin: CoinView) -> PaymentPlan:
            return check_window_open(coin, creds.prev, creds.index, units, self.limits, now_ms)

        def commit(coin: CoinView, plan: PaymentPlan) -> WindowOpened | None:
            record = WindowRecord(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                handle_sha256=digest,
                window_from=plan.prev,
                window_top=plan.index,
                payword=creds.payword,
                unit_value_minor=coin.unit_value_minor,
                currency=coin.currency,
                opened_at_ms=now_ms,
                expires_at_ms=window_expiry_ms(coin, self.limits, now_ms),
            )
            window_id = self._commit_window(coin, record, now_ms)
            if window_id is None:
                return None
            log.info(
                "coin %s epoch %d: window (%d, %d] opened",
                coin.ecoin_id,
                coin.epoch,
                plan.prev,
                plan.index,
            )
            return WindowOpened(
                vendor_id=self._id.vendor_id,
                handle=handle,
                window=WindowView(
                    window_id=window_id,
                    ecoin_id=record.ecoin_id,
                    epoch=record.epoch,
                    window_from=record.window_from,
                    window_top=record.window_top,
                    consumed_index=record.window_from,
                    state=WindowState.OPEN,
                    opened_at_ms=now_ms,
                    expires_at_ms=record.expires_at_ms,
                    unit_value_minor=record.unit_value_minor,
                    currency=record.currency,
                ),
                replayed=False,
            )

        return self._spend(
            creds,
            now_ms,
            first_look,
            plan,
            lambda: self._window_replay(creds, handle, digest, now_ms),
            commit,
        )

    def _window_handle(self, creds: Credentials) -> str:
        """The window's cookie handle: HMAC of ``(ecoin, j, w[j])`` under this vendor's key."""
        message = creds.ecoin_bytes + creds.index.to_bytes(4, "big") + creds.payword
        return b64url_encode(hmac.new(self._handle_key, message, hashlib.sha256).digest())

    def _window_replay(
        self, creds: Credentials, handle: str, digest: bytes, now_ms: int
    ) -> WindowOpened | None:
        """The same window header within retry_ttl_s is the same window."""
        with self._uow(read_only=True) as session:
            found = self._repo.window_at_top(session, creds.ecoin_id, creds.index)
        if found is None:
            return None
        window, payword, stored_digest = found
        if not secrets.compare_digest(payword, creds.payword) or not secrets.compare_digest(
            stored_digest, digest
        ):
            return None
        if window.opened_at_ms < now_ms - self.limits.retry_ttl_s * 1000:
            return None
        if window.window_from != creds.prev:
            return None
        return WindowOpened(self._id.vendor_id, handle, window, replayed=True)

    def _commit_window(
        self, coin: CoinView, record: WindowRecord, now_ms: int, *, acknowledged: bool = False
    ) -> int | None:
        """The window payment's compare-and-set, the old window's close and the
        new window, in one transaction; ``None`` when it lost. ``acknowledged``:
        the broker already knows ``w[top]`` (a drawn window)."""
        with self._uow() as session:
            moved = self._repo.cas_pay(
                session,
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                from_index=coin.index,
                to_index=record.window_top,
                payword=record.payword,
                now_ms=now_ms,
            )
            if not moved:
                return None
            old = self._repo.open_window_of(session, coin.ecoin_id)
            if old is not None and not self._close_in(session, old, CloseReason.CLOSED, now_ms):
                return None  # a click moved it meanwhile: roll back, try again
            try:
                window_id = self._repo.add_window(session, record)
            except IntegrityError:
                return None
            if acknowledged:
                self._repo.renew_lease(
                    session,
                    ecoin_id=coin.ecoin_id,
                    epoch=coin.epoch,
                    lease_deadline_ms=0,  # never lowers: only the acknowledged index moves
                    acknowledged_index=record.window_top,
                )
            session.commit()
        if old is not None:
            log.info("coin %s: window %d closed by a newer one", coin.ecoin_id, old.window_id)
        return window_id

    def _window_credit(self, window: WindowView, reason: CloseReason, now_ms: int) -> pb.Envelope:
        return seal(
            pb.WindowCredit(
                vendor_id=self._id.vendor_id,
                ecoin_id=window.ecoin_id,
                epoch=window.epoch,
                window_top=window.window_top,
                consumed_index=window.consumed_index,
                refund_units=window.words_left,
                time_ms=now_ms,
                reason=reason.value,
            ),
            self._id.key,
        )

    def _close_in(
        self, session: Session, window: WindowView, reason: CloseReason, now_ms: int
    ) -> pb.Envelope | None:
        """Close ``window`` at its consumed index inside ``session`` (the caller
        commits); the signed credit, or ``None`` when the window moved."""
        credit = self._window_credit(window, reason, now_ms)
        closed = self._repo.close_window(
            session,
            window_id=window.window_id,
            consumed_index=window.consumed_index,
            reason=reason,
            credit=credit.SerializeToString(),
            now_ms=now_ms,
        )
        return credit if closed else None

    @staticmethod
    def _handle_digest(handle: str) -> bytes:
        """SHA-256 of a cookie handle; a handle that is not 32 bytes is unknown."""
        if not isinstance(handle, str) or len(handle) != _HANDLE_CHARS:
            raise NotFound("no such window")
        try:
            raw = b64url_decode(handle, max_len=_HANDLE_CHARS)
        except Malformed as err:
            raise NotFound("no such window") from err
        if len(raw) != _HANDLE_BYTES:
            raise NotFound("no such window")
        return hashlib.sha256(raw).digest()

    def pay_from_window(self, handle: str, item: Item, now_ms: int) -> PaymentResult:
        """One click paid from the window behind the cookie ``handle``.

        The consumption is a compare-and-set on the window's consumed index
        (the coin still HELD in the window's epoch with a live lease),
        committed with the click and its Receipt before this returns. The same
        item again within retry_ttl_s re-serves the original Receipt.

        Raises NotFound (unknown handle), Expired (closed or expired window, or
        the coin no longer held here), Insufficient (the price does not fit),
        WrongAmount / WrongCurrency (the price in the coin's words),
        BrokerUnavailable / Revoked (the lease could not be renewed) or
        CoinBusy (the window kept changing).
        """
        if not 0 < len(item.item_id) <= _ITEM_ID_MAX:
            raise Malformed("bad item id")
        digest = self._handle_digest(handle)
        renewed = False
        for _ in range(_PAY_ATTEMPTS):
            since_ms = now_ms - self.limits.retry_ttl_s * 1000
            with self._uow(read_only=True) as session:
                window = self._repo.window_by_handle(session, digest)
                if window is None:
                    raise NotFound("no such window")
                earlier = self._repo.window_click_for(
                    session, window.window_id, item.item_id, since_ms
                )
                stored = self._repo.get(session, window.ecoin_id) if earlier is None else None
            if earlier is not None:
                return self._window_result(window, earlier.receipt, earlier.to_index, True)
            click = check_window_click(window, item, now_ms)
            assert stored is not None, "a window implies a coin row"
            coin = stored.view
            if coin.state is not VendorCoinState.HELD or coin.epoch != window.epoch:
                raise Expired("the window's coin is no longer held here")
            if not lease_is_live(coin, now_ms):
                if renewed:
                    raise BrokerUnavailable("the broker did not renew the lease")
                renewed = True
                self._renew(coin)
                continue
            done = self._try_consume(window, click, item, now_ms, None)
            if done is not None:
                return done
            # Lost the compare-and-set (another click, a close, a hand-off): look again.
        raise CoinBusy("the window keeps changing; retry", retry_after_s=1)

    def _try_consume(
        self,
        window: WindowView,
        click: WindowClick,
        item: Item,
        now_ms: int,
        coin_n: int | None,
    ) -> PaymentResult | None:
        """Sign the Receipt and commit the consumption of ``click``; ``None``
        when the compare-and-set lost. ``coin_n``: a server-side wallet's
        window (the credit then counts the words not yet drawn)."""
        receipt = seal(
            pb.Receipt(
                vendor_id=self._id.vendor_id,
                ecoin_id=window.ecoin_id,
                epoch=window.epoch,
                from_index=click.from_index,
                to_index=click.to_index,
                amount_minor=item.price.amount_minor,
                currency=item.price.currency,
                item_id=item.item_id,
                time_ms=now_ms,
            ),
            self._id.key,
        ).SerializeToString()
        record = WindowClickRecord(
            window_id=window.window_id,
            item_id=item.item_id,
            from_index=click.from_index,
            to_index=click.to_index,
            amount_minor=item.price.amount_minor,
            currency=item.price.currency,
            receipt=receipt,
            created_at_ms=now_ms,
        )
        if not self._commit_window_click(window, record, now_ms):
            return None
        consumed = replace(window, consumed_index=click.to_index)
        return self._window_result(consumed, receipt, click.to_index, False, coin_n)

    def _commit_window_click(
        self, window: WindowView, click: WindowClickRecord, now_ms: int
    ) -> bool:
        with self._uow() as session:
            moved = self._repo.cas_consume(
                session,
                window_id=window.window_id,
                ecoin_id=window.ecoin_id,
                epoch=window.epoch,
                from_index=click.from_index,
                to_index=click.to_index,
                now_ms=now_ms,
            )
            if not moved:
                return False
            try:
                self._repo.add_window_click(session, click)
            except IntegrityError:
                return False
            session.commit()
        return True

    def _window_result(
        self,
        window: WindowView,
        receipt: bytes,
        to_index: int,
        replayed: bool,
        coin_n: int | None = None,
    ) -> PaymentResult:
        undrawn = 0 if coin_n is None else max(0, coin_n - window.window_top)
        return PaymentResult(
            receipt=receipt,
            words_left=window.words_left + undrawn,
            replayed=replayed,
            ecoin_id=window.ecoin_id,
            to_index=to_index,
            unit_value_minor=window.unit_value_minor,
            currency=window.currency,
            window_words_left=window.words_left,
            window_only=coin_n is None,
        )

    def close_window(self, handle: str, now_ms: int) -> WindowClosed:
        """``POST /netpay/window/close``: close the window, sign its WindowCredit.

        A window already closed (by the wallet, a hand-off, expiry or a newer
        window) answers with the credit it was closed with.
        """
        digest = self._handle_digest(handle)
        for _ in range(_WINDOW_CLOSE_ATTEMPTS):
            with self._uow(read_only=True) as session:
                window = self._repo.window_by_handle(session, digest)
            if window is None:
                raise NotFound("no such window")
            if window.state is WindowState.CLOSED:
                assert window.credit is not None, "a closed window has its credit"
                return WindowClosed(
                    pb.Envelope.FromString(window.credit), window.words_left, window
                )
            with self._uow() as session:
                credit = self._close_in(session, window, CloseReason.CLOSED, now_ms)
                if credit is not None:
                    session.commit()
            if credit is not None:
                log.info("window %d of %s closed by the wallet", window.window_id, window.ecoin_id)
                closed = replace(
                    window,
                    state=WindowState.CLOSED,
                    closed_at_ms=now_ms,
                    close_reason=CloseReason.CLOSED,
                    credit=credit.SerializeToString(),
                )
                return WindowClosed(credit, window.words_left, closed)
        raise CoinBusy("the window keeps changing; retry", retry_after_s=1)

    def close_expired_windows(self) -> int:
        """Close every OPEN window past its expiry (reason "expired"); how many closed."""
        now_ms = self._clock.now_ms()
        closed = 0
        while True:
            with self._uow(read_only=True) as session:
                due = self._repo.windows_due(session, now_ms, limit=_EXPIRED_PAGE)
            progressed = 0
            for window in due:
                if self._close_expired(window, now_ms):
                    closed += 1
                    progressed += 1
            if len(due) < _EXPIRED_PAGE or progressed == 0:
                return closed

    def _close_expired(self, window: WindowView, now_ms: int) -> bool:
        current: WindowView | None = window
        for _ in range(_WINDOW_CLOSE_ATTEMPTS):
            if current is None or current.state is not WindowState.OPEN:
                return False
            with self._uow() as session:
                credit = self._close_in(session, current, CloseReason.EXPIRED, now_ms)
                if credit is not None:
                    session.commit()
                    log.info("window %d of %s expired", current.window_id, current.ecoin_id)
                    return True
            with self._uow(read_only=True) as session:
                current = self._repo.window(session, window.window_id)
        return False

    def _close_epoch_windows(self, session: Session, ecoin_id: str, now_ms: int) -> None:
        """The coin's epoch is over here: close its open window in ``session``."""
        window = self._repo.open_window_of(session, ecoin_id)
        if window is not None and self._close_in(session, window, CloseReason.CLOSED, now_ms):
            log.info("window %d of %s closed with its epoch", window.window_id, ecoin_id)

    # -- server-side wallets ---------------------------------------------------

    def _wallet_broker(self) -> WalletBrokerClient:
        if self._wallets is None:
            raise Unavailable("this vendor's broker client has no server-side wallet calls")
        return self._wallets

    def wallet_signin(self, code: str, now_ms: int) -> WalletSignedIn:
        """The return from the broker portal: turn ``netpay_code`` into a
        WalletGrant, verify it, store the reader's session and take custody
        of the coin (AcquireCoin with the grant; a hand-off when another
        vendor holds it).

        Raises NotFound (unknown, used or expired code), Expired / Revoked
        (the coin), BrokerUnavailable (the broker is unreachable or its reply
        does not check out). A custody step that fails with CoinBusy or
        BrokerUnavailable does not stop the sign-in: the first article
        retries it.
        """
        if not isinstance(code, str) or not 0 < len(code) <= _CODE_MAX_CHARS:
            raise NotFound("no such sign-in code")
        wallets = self._wallet_broker()
        try:
            reply = wallets.exchange_wallet_code(code)
        except (NotFound, PaymentError):
            raise
        except NetPayError as err:
            raise BrokerUnavailable(f"the broker refused the code: {err.code}") from err
        grant = self._check_wallet_grant(reply.grant, reply.touchstone, now_ms)
        expires = min(
            grant.expires_at_ms - self.limits.max_skew_s * 1000, now_ms + _WALLET_SESSION_S * 1000
        )
        if expires <= now_ms:
            raise Expired("the coin has expired")
        raw = secrets.token_bytes(_HANDLE_BYTES)
        wallet = WalletSession(
            ecoin_id=grant.ecoin_id,
            grant_id=grant.grant_id,
            grant=reply.grant.SerializeToString(),
            created_at_ms=now_ms,
            expires_at_ms=expires,
        )
        with self._uow() as session:
            self._repo.delete_wallet_sessions_before(session, now_ms)
            self._repo.add_wallet_session(session, hashlib.sha256(raw).digest(), wallet)
            session.commit()
        log.info("reader signed in with server-side coin %s", grant.ecoin_id)
        try:
            self._ensure_held(grant.ecoin_id, reply.grant, now_ms)
        except (CoinBusy, BrokerUnavailable) as err:
            log.info("custody of %s after sign-in deferred: %s", grant.ecoin_id, err.detail)
        return WalletSignedIn(b64url_encode(raw), grant.ecoin_id, expires)

    def _check_wallet_grant(
        self, grant_env: pb.Envelope, touchstone_env: pb.Envelope, now_ms: int
    ) -> pb.WalletGrant:
        """A WalletGrant signed by our broker, naming us, for the touchstone's coin."""
        key = self._id.broker_public_key
        try:
            grant = open_envelope(grant_env, pb.WalletGrant, key)
            touchstone = open_envelope(touchstone_env, pb.Touchstone, key)
        except SignatureInvalid as err:
            raise BrokerUnavailable(f"the broker's wallet grant is invalid: {err.detail}") from err
        broker_id = self._id.broker_id
        if (
            grant.vendor_id != self._id.vendor_id
            or not grant.ecoin_id
            or grant.ecoin_id != touchstone.ecoin_id
            or len(grant.ecoin_id) > 32
            or (grant.broker_id and grant.broker_id != broker_id)
            or (touchstone.broker_id and touchstone.broker_id != broker_id)
            or not grant.grant_id
            or len(grant.grant_id) > 32
        ):
            raise BrokerUnavailable("the broker's wallet grant does not match")
        if grant.expires_at_ms <= now_ms:
            raise Expired("the wallet grant has expired")
        return grant

    def _ensure_held(self, ecoin_id: str, grant: pb.Envelope, now_ms: int) -> StoredCoin:
        """The coin HELD (or HANDING_OFF) here: acquire it with the grant if not."""
        stored = self.coin(ecoin_id)
        if stored is not None and stored.view.state is VendorCoinState.HANDING_OFF:
            if not self._probe_closed(stored.view):
                return stored
            stored = self.coin(ecoin_id)
        if stored is None or stored.view.state is VendorCoinState.CLOSED:
            wallets = self._wallet_broker()
            stored = self._acquire_by(
                ecoin_id,
                lambda force: wallets.acquire_coin_with_grant(ecoin_id, grant, force=force),
                now_ms,
            )
        return stored

    def wallet_session(self, handle: str, now_ms: int) -> WalletSession:
        """The live server-side wallet session behind a ``netpay_wallet`` cookie."""
        digest = self._handle_digest(handle)
        with self._uow(read_only=True) as session:
            wallet = self._repo.wallet_session(session, digest)
        if wallet is None or wallet.expires_at_ms <= now_ms:
            raise NotFound("no such wallet session; sign in again")
        return wallet

    def pay_with_wallet(self, handle: str, item: Item, now_ms: int) -> PaymentResult:
        """One click paid with the server-side wallet behind the cookie ``handle``.

        Consumes from the coin's open window when it has room; else draws a
        new window with ``Broker.DrawWindow`` (the payword checked against the
        stored word) and opens it in the transaction that moves the coin's
        index to its top (the old window, if any, closes with a WindowCredit),
        then consumes. The same item again within retry_ttl_s re-serves its
        Receipt. The result's ``words_left`` is the reader's credit: the
        window's words left plus the words not yet drawn.
        """
        if not 0 < len(item.item_id) <= _ITEM_ID_MAX:
            raise Malformed("bad item id")
        wallet = self.wallet_session(handle, now_ms)
        grant = pb.Envelope.FromString(wallet.grant)
        ecoin_id = wallet.ecoin_id
        renewed = probed = False
        for _ in range(_WALLET_ATTEMPTS):
            since_ms = now_ms - self.limits.retry_ttl_s * 1000
            with self._uow(read_only=True) as session:
                stored = self._repo.get(session, ecoin_id)
                window = self._repo.open_window_of(session, ecoin_id)
                earlier = (
                    self._repo.window_click_for(session, window.window_id, item.item_id, since_ms)
                    if window is not None
                    else None
                )
            if stored is None or stored.view.state is VendorCoinState.CLOSED:
                self._ensure_held(ecoin_id, grant, now_ms)
                continue
            coin = stored.view
            if coin.state is VendorCoinState.HANDING_OFF:
                if not probed:
                    probed = True
                    if self._probe_closed(coin):
                        continue
                raise CoinBusy("the coin is being handed off", retry_after_s=self._busy_s(stored))
            if window is not None and window.epoch != coin.epoch:
                window = None  # left from an older epoch: the next draw closes it
            if window is not None and earlier is not None:
                return self._window_result(window, earlier.receipt, earlier.to_index, True, coin.n)
            if now_ms >= coin.expires_at_ms - self.limits.max_skew_s * 1000:
                raise Expired("the coin has expired")
            words = words_for(item.price, coin.unit_value_minor, coin.currency)
            _check_click_limit(grant, item.price.amount_minor)
            if not lease_is_live(coin, now_ms):
                if renewed:
                    raise BrokerUnavailable("the broker did not renew the lease")
                renewed = True
                self._renew(coin)
                continue
            if window is not None and window.is_usable(now_ms) and window.words_left >= words:
                click = check_window_click(window, item, now_ms)
                done = self._try_consume(window, click, item, now_ms, coin.n)
                if done is not None:
                    return done
                continue
            drawn = self._draw(coin, grant, words, now_ms)
            if drawn is None:
                if renewed:
                    raise BrokerUnavailable("the broker did not renew the lease")
                renewed = True
                self._renew(coin)
            # Drawn (or lost to a twin): the next round consumes from the open window.
        raise CoinBusy("the wallet keeps changing; retry", retry_after_s=1)

    def _draw(self, coin: CoinView, grant: pb.Envelope, words: int, now_ms: int) -> bool | None:
        """Draw and open a window that pays at least ``words``; ``None`` when the
        broker wants the lease renewed first, False when the open lost a race."""
        left = coin.n - coin.index
        if words > left:
            raise Insufficient(f"the coin has {left} words left, the price is {words} words")
        if words > self.limits.max_window_units:
            raise LimitExceeded(f"a window is at most {self.limits.max_window_units} words")
        units = min(max(words, _WALLET_DRAW_UNITS), self.limits.max_window_units, left)
        try:
            try:
                reply = self._wallet_broker().draw_window(grant, coin.epoch, units)
            except LimitExceeded:
                if units == words:
                    raise
                # The reader's daily limit leaves less than a whole window: draw the price.
                units = words
                reply = self._wallet_broker().draw_window(grant, coin.epoch, units)
        except CoinBusy:
            raise
        except PreconditionFailed:
            return None  # not our epoch any more, or the lease lapsed at the broker
        except (PermissionDenied, SignatureInvalid) as err:
            raise NotFound(f"the wallet sign-in is no longer valid: {err.detail}") from err
        except NetPayError as err:
            raise _payment_error_from_broker(err) from err
        if (
            reply.ecoin_id != coin.ecoin_id
            or reply.epoch != coin.epoch
            or reply.to_index <= coin.index
            or reply.to_index > coin.n
            or reply.to_index - reply.from_index != units
        ):
            raise BrokerUnavailable("the broker's window does not match the coin")
        try:
            verify_payword(bytes.fromhex(coin.ecoin_id), coin, reply.to_index, reply.payword)
        except BadPayword as err:
            raise BrokerUnavailable("the broker's window payword does not verify") from err
        record = WindowRecord(
            ecoin_id=coin.ecoin_id,
            epoch=coin.epoch,
            # No cookie names a drawn window: the reader's session does.
            handle_sha256=hashlib.sha256(secrets.token_bytes(_HANDLE_BYTES)).digest(),
            window_from=coin.index,
            window_top=reply.to_index,
            payword=bytes(reply.payword),
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
            opened_at_ms=now_ms,
            expires_at_ms=window_expiry_ms(coin, self.limits, now_ms),
        )
        window_id = self._commit_window(coin, record, now_ms, acknowledged=True)
        for _ in range(_HANDOFF_ATTEMPTS):
            if window_id is not None:
                break
            # Lost to a twin request that drew too (another worker, another tab).
            # The broker released our words, so they must not be dropped: unless the
            # twin's window already reaches our top, open ours from the coin's index
            # now (w[to] hashes down to it: the draws are contiguous at the broker).
            with self._uow(read_only=True) as session:
                again = self._repo.get(session, coin.ecoin_id)
            if (
                again is None
                or again.view.state is not VendorCoinState.HELD
                or again.view.epoch != coin.epoch
                or again.view.index >= reply.to_index
            ):
                return False
            coin = again.view
            try:
                verify_payword(bytes.fromhex(coin.ecoin_id), coin, reply.to_index, reply.payword)
            except BadPayword:
                return False
            record = replace(record, window_from=coin.index)
            window_id = self._commit_window(coin, record, now_ms, acknowledged=True)
        if window_id is None:
            return False
        log.info(
            "coin %s epoch %d: drawn window (%d, %d] opened",
            coin.ecoin_id,
            coin.epoch,
            record.window_from,
            reply.to_index,
        )
        return True

    # -- acquiring -------------------------------------------------------------

    def _acquire(self, creds: Credentials, now_ms: int, currency: str = "") -> StoredCoin:
        """Take custody of a coin this vendor does not hold (AcquireCoin); the broker
        refuses a coin in another ``currency`` before custody moves."""
        return self._acquire_by(
            creds.ecoin_id,
            lambda force: self._broker.acquire_coin(
                creds.ecoin_id, creds.index, creds.payword, force=force, currency=currency
            ),
            now_ms,
        )

    def _acquire_by(
        self,
        ecoin_id: str,
        call: Callable[[bool], broker_pb2.AcquireCoinResponse],
        now_ms: int,
    ) -> StoredCoin:
        """AcquireCoin (by ``call(force)``: a payword or a WalletGrant proof), then the
        hand-off from the holder when the broker says so; when the holder cannot be
        reached, a forced acquisition (the broker recalls the coin: ``coin_busy``
        until the holder's final index arrives or its lease has run out)."""
        sent_ms = self._clock.now_ms()
        try:
            reply = call(False)
        except NetPayError as err:
            raise _payment_error_from_broker(err) from err
        kind = reply.WhichOneof("result")
        if kind == "custody":
            grant = reply.custody
        elif kind == "handoff":
            try:
                grant, sent_ms = self._take_over(reply.handoff, ecoin_id, now_ms)
            except _HolderUnreachable as unreachable:
                grant, sent_ms = self._force(ecoin_id, call, unreachable)
        else:
            raise BrokerUnavailable("the broker sent an empty AcquireCoin reply")
        return self._store_grant(grant, ecoin_id, sent_ms)

    def _force(
        self,
        ecoin_id: str,
        call: Callable[[bool], broker_pb2.AcquireCoinResponse],
        unreachable: _HolderUnreachable,
    ) -> tuple[broker_pb2.CustodyGrant, int]:
        """The forced acquisition after a hand-off the holder never answered."""
        sent_ms = self._clock.now_ms()
        try:
            reply = call(True)
        except NetPayError as err:
            raise _payment_error_from_broker(err) from err
        if reply.WhichOneof("result") != "custody":
            raise unreachable
        log.warning("coin %s: taken by a forced acquisition (%s)", ecoin_id, unreachable.detail)
        return reply.custody, sent_ms

    def _take_over(
        self, handoff: broker_pb2.HandOffRequired, ecoin_id: str, now_ms: int
    ) -> tuple[broker_pb2.CustodyGrant, int]:
        """The T&I transfer from the current holder, then RecordHandoff."""
        me = self._id.vendor_id
        try:
            grant = open_envelope(handoff.grant, pb.HandOffGrant, self._id.broker_public_key)
            holder = self.certificates.verify(handoff.holder_certificate)
        except NetPayError as err:
            detail = err.detail
            raise BrokerUnavailable(f"the broker's hand-off reply is invalid: {detail}") from err
        if (
            grant.ecoin_id != ecoin_id
            or grant.to_vendor != me
            or grant.from_vendor != holder.vendor_id
            or (grant.broker_id and grant.broker_id != self._id.broker_id)
        ):
            raise BrokerUnavailable("the broker's hand-off grant does not match")
        if grant.expires_at_ms <= now_ms:
            raise CoinBusy("the hand-off grant expired; retry", retry_after_s=1)
        try:
            handed = self._peers.hand_off(holder.grpc_address, handoff.grant)
        except CoinBusy:
            raise
        except Unavailable as err:
            raise _HolderUnreachable(
                f"the holder {holder.vendor_id} is unreachable: {err.detail}",
                retry_after_s=self.limits.handoff_ttl_s,
            ) from err
        except NetPayError as err:
            raise CoinBusy(
                f"the holder {holder.vendor_id} refused the hand-off: {err.code}",
                retry_after_s=1,
            ) from err
        ci_envelope = handed.coin_index
        try:
            ci = open_envelope(ci_envelope, pb.CoinIndex, bytes(holder.public_key))
        except SignatureInvalid as err:
            raise CoinBusy(
                f"the holder's CoinIndex is invalid: {err.detail}", retry_after_s=1
            ) from err
        if (
            ci.ecoin_id != ecoin_id
            or ci.epoch != grant.epoch
            or ci.vendor_id != holder.vendor_id
            or ci.to_vendor != me
            or len(ci.payword) != WORD_BYTES
        ):
            raise CoinBusy("the holder's CoinIndex does not match the grant", retry_after_s=1)
        sent_ms = self._clock.now_ms()
        try:
            custody = self._broker.record_handoff(ci_envelope, handed.window_credit)
        except NetPayError as err:
            raise _payment_error_from_broker(err) from err
        return custody, sent_ms

    def _store_grant(
        self, grant: broker_pb2.CustodyGrant, ecoin_id: str, sent_ms: int
    ) -> StoredCoin:
        """Verify a custody grant's touchstone and store the epoch."""
        try:
            touchstone = open_envelope(grant.touchstone, pb.Touchstone, self._id.broker_public_key)
        except SignatureInvalid as err:
            raise BrokerUnavailable(f"the broker's touchstone is invalid: {err.detail}") from err
        if (
            grant.ecoin_id != ecoin_id
            or touchstone.ecoin_id != ecoin_id
            or (grant.holder and grant.holder != self._id.vendor_id)
            or (touchstone.broker_id and touchstone.broker_id != self._id.broker_id)
            or len(grant.base_word) != WORD_BYTES
            or grant.base_index > touchstone.n
            or grant.epoch < 1
        ):
            raise BrokerUnavailable("the broker's custody grant does not match the coin")
        deadline = lease_deadline_ms(
            sent_ms,
            grant.lease_ttl_s or self.limits.lease_ttl_s,
            grant.max_skew_s or self.limits.max_skew_s,
        )
        epoch = EpochGrant(
            ecoin_id=ecoin_id,
            epoch=grant.epoch,
            base_index=grant.base_index,
            base_word=grant.base_word,
            n=touchstone.n,
            unit_value_minor=touchstone.unit_value_minor or 1,
            currency=touchstone.currency,
            expires_at_ms=touchstone.expires_at_ms,
            touchstone=grant.touchstone.SerializeToString(),
            lease_deadline_ms=deadline,
        )
        now_ms = self._clock.now_ms()
        for _ in range(2):
            with self._uow() as session:
                try:
                    stored = self._repo.open_epoch(session, epoch, now_ms)
                    set_refund_pending(session, ecoin_id, grant.refund_pending_units, now_ms)
                    session.commit()
                except IntegrityError:
                    continue  # a concurrent first payment inserted the row: re-read it
                return stored
        raise CoinBusy("the coin is being stored by another request; retry", retry_after_s=1)

    # -- handing off (we are the holder) ---------------------------------------

    def hand_off(self, grant_envelope: pb.Envelope, caller: str, now_ms: int) -> pb.Envelope:
        """``Vendor.HandOff``: sign our CoinIndex for ``caller`` and stop accepting."""
        return self.hand_off_with_credit(grant_envelope, caller, now_ms).coin_index

    def hand_off_with_credit(
        self, grant_envelope: pb.Envelope, caller: str, now_ms: int
    ) -> HandOffResult:
        """``Vendor.HandOff`` with its whole reply.

        The compare-and-set that marks the coin HANDING_OFF also closes the
        coin's open window (WindowCredit, reason "handoff"); the CoinIndex is
        then at the window top (the coin's index). A repeated call returns the
        same CoinIndex and credit.
        """
        me = self._id.vendor_id
        grant = open_envelope(grant_envelope, pb.HandOffGrant, self._id.broker_public_key)
        if grant.broker_id and grant.broker_id != self._id.broker_id:
            raise SignatureInvalid("the grant names another broker")
        if grant.expires_at_ms <= now_ms:
            raise PreconditionFailed("the hand-off grant has expired")
        if grant.from_vendor != me:
            raise PreconditionFailed("the grant names another holder")
        if grant.to_vendor != caller:
            raise PermissionDenied("the grant names another vendor than the caller")
        return self._stop_for(grant.ecoin_id, grant.epoch, caller, now_ms)

    def _stop_for(self, ecoin_id: str, epoch: int, caller: str, now_ms: int) -> HandOffResult:
        """Stop accepting ``epoch`` of the coin and sign the CoinIndex for ``caller``
        (a hand-off, or the final index a recall asks for); repeated, the same."""
        me = self._id.vendor_id
        for _ in range(_HANDOFF_ATTEMPTS):
            with self._uow(read_only=True) as session:
                stored = self._repo.get(session, ecoin_id)
                window = self._repo.open_window_of(session, ecoin_id)
                earlier_credit = self._repo.handoff_credit(session, ecoin_id, epoch)
            if stored is None:
                raise PreconditionFailed("this vendor does not hold the coin")
            coin = stored.view
            if coin.state is VendorCoinState.HANDING_OFF and coin.epoch == epoch:
                if stored.handoff_to == caller and stored.handoff_coin_index is not None:
                    return HandOffResult(
                        pb.Envelope.FromString(stored.handoff_coin_index),
                        pb.Envelope.FromString(earlier_credit) if earlier_credit else None,
                    )
                raise CoinBusy(
                    "the coin is being handed to another vendor",
                    retry_after_s=self._busy_s(stored),
                )
            if coin.state is not VendorCoinState.HELD or coin.epoch != epoch:
                raise PreconditionFailed(f"this vendor does not hold epoch {epoch} of the coin")
            envelope = seal(
                pb.CoinIndex(
                    ecoin_id=coin.ecoin_id,
                    epoch=coin.epoch,
                    index=coin.index,
                    payword=coin.payword,
                    vendor_id=me,
                    to_vendor=caller,
                    issued_at_ms=now_ms,
                ),
                self._id.key,
            )
            credit: pb.Envelope | None = None
            with self._uow() as session:
                moved = self._repo.start_handoff(
                    session,
                    ecoin_id=coin.ecoin_id,
                    epoch=coin.epoch,
                    index=coin.index,
                    to_vendor=caller,
                    coin_index=envelope.SerializeToString(),
                    now_ms=now_ms,
                )
                if moved and window is not None:
                    reason = (
                        CloseReason.HANDOFF if window.epoch == coin.epoch else CloseReason.CLOSED
                    )
                    credit = self._close_in(session, window, reason, now_ms)
                    # A click consumed meanwhile: roll the hand-off back and sign again.
                    moved = credit is not None
                    if reason is not CloseReason.HANDOFF:
                        credit = None
                if moved:
                    session.commit()
            if moved:
                log.info("coin %s epoch %d handed to %s", coin.ecoin_id, coin.epoch, caller)
                return HandOffResult(envelope, credit)
        raise CoinBusy("the coin keeps changing; retry", retry_after_s=1)

    # -- leases ----------------------------------------------------------------

    def reset_leases(self) -> None:
        """At start: hold no lease until the broker renews it."""
        with self._uow() as session:
            self._repo.drop_all_leases(session)
            session.commit()

    def _renew(self, coin: CoinView) -> None:
        """A synchronous checkpoint of one coin on a payment's path."""
        try:
            summary = self._checkpoint([coin])
        except NetPayError as err:
            raise BrokerUnavailable(f"could not renew the lease: {err.detail}") from err
        if summary.revoked:
            raise Revoked("the coin has been reported lost")
        if summary.rejected:
            raise BrokerUnavailable("the broker did not renew the lease")

    def _probe_closed(self, coin: CoinView) -> bool:
        """Checkpoint one HANDING_OFF coin: True when the broker says our epoch is over."""
        try:
            return self._checkpoint([coin]).closed > 0
        except NetPayError as err:
            log.info("probe of %s failed: %s", coin.ecoin_id, err.detail)
            return False

    def checkpoint_all(self) -> CheckpointSummary:
        """One Checkpoint with a sealed CoinIndex per HELD coin (in pages)."""
        total = CheckpointSummary()
        after = ""
        page = self.limits.max_checkpoint_indexes
        while True:
            with self._uow() as session:
                coins = [
                    s.view for s in self._repo.held_coins(session, after_ecoin_id=after, limit=page)
                ]
            if not coins:
                return total
            now_ms = self._clock.now_ms()
            live = [c for c in coins if c.expires_at_ms > now_ms]  # nothing to renew otherwise
            if live:
                summary = self._checkpoint(live)
                total = CheckpointSummary(
                    total.leased + summary.leased,
                    total.closed + summary.closed,
                    total.rejected + summary.rejected,
                    total.revoked + summary.revoked,
                )
            if len(coins) < page:
                return total
            after = coins[-1].ecoin_id

    def _checkpoint(self, coins: Sequence[CoinView]) -> CheckpointSummary:
        now_ms = self._clock.now_ms()
        envelopes = [
            seal(
                pb.CoinIndex(
                    ecoin_id=c.ecoin_id,
                    epoch=c.epoch,
                    index=c.index,
                    payword=c.payword,
                    vendor_id=self._id.vendor_id,
                    issued_at_ms=now_ms,
                ),
                self._id.key,
            )
            for c in coins
        ]
        sent_ms = self._clock.now_ms()
        reply = self._broker.checkpoint(envelopes)
        deadline = lease_deadline_ms(
            sent_ms,
            reply.lease_ttl_s or self.limits.lease_ttl_s,
            reply.max_skew_s or self.limits.max_skew_s,
        )
        by_id = {c.ecoin_id: c for c in coins}
        leased = closed = rejected = revoked = 0
        recalled: list[tuple[CoinView, str]] = []
        with self._uow() as session:
            for result in reply.results:
                coin = by_id.get(result.ecoin_id)
                if coin is None:
                    continue
                if result.status == broker_pb2.CHECKPOINT_STATUS_LEASED:
                    if result.epoch != coin.epoch:
                        log.warning("checkpoint reply for %s does not match", coin.ecoin_id)
                        continue
                    if result.acknowledged_index > coin.index:
                        # A server-side window drawn for us whose reply never arrived:
                        # the broker knows a higher word; those words are void here.
                        log.warning(
                            "coin %s: the broker's index %d is above ours %d (a lost draw)",
                            coin.ecoin_id,
                            result.acknowledged_index,
                            coin.index,
                        )
                    self._repo.renew_lease(
                        session,
                        ecoin_id=coin.ecoin_id,
                        epoch=coin.epoch,
                        lease_deadline_ms=deadline,
                        acknowledged_index=min(result.acknowledged_index, coin.index),
                    )
                    leased += 1
                elif result.status == broker_pb2.CHECKPOINT_STATUS_CLOSED:
                    self._repo.close_epoch(
                        session, ecoin_id=coin.ecoin_id, epoch=coin.epoch, now_ms=now_ms
                    )
                    self._close_epoch_windows(session, coin.ecoin_id, now_ms)
                    log.info("coin %s epoch %d closed by the broker", coin.ecoin_id, coin.epoch)
                    closed += 1
                elif result.status == broker_pb2.CHECKPOINT_STATUS_RECALLED:
                    self._repo.drop_lease(session, ecoin_id=coin.ecoin_id, epoch=coin.epoch)
                    recalled.append((coin, result.recall_to))
                else:
                    self._repo.drop_lease(session, ecoin_id=coin.ecoin_id, epoch=coin.epoch)
                    log.warning("checkpoint of %s rejected: %s", coin.ecoin_id, result.detail[:200])
                    rejected += 1
                    revoked += int(result.revoked)
            session.commit()
        for coin, target in recalled:
            closed += int(self._answer_recall(coin, target, now_ms))
        return CheckpointSummary(leased, closed, rejected, revoked)

    def _answer_recall(self, coin: CoinView, target: str, now_ms: int) -> bool:
        """Another vendor recalls the coin (its hand-off failed): stop accepting it now
        and send the final CoinIndex; True when the broker closed our epoch with it."""
        try:
            check_party_id(target)
            stopped = self._stop_for(coin.ecoin_id, coin.epoch, target, now_ms)
            reply = self._broker.checkpoint([stopped.coin_index])
        except NetPayError as err:
            log.warning("could not answer the recall of %s: %s", coin.ecoin_id, err.detail)
            return False
        if not any(
            r.ecoin_id == coin.ecoin_id and r.status == broker_pb2.CHECKPOINT_STATUS_CLOSED
            for r in reply.results
        ):
            return False
        with self._uow() as session:
            self._repo.close_epoch(session, ecoin_id=coin.ecoin_id, epoch=coin.epoch, now_ms=now_ms)
            self._close_epoch_windows(session, coin.ecoin_id, now_ms)
            session.commit()
        log.info("coin %s epoch %d recalled by %s", coin.ecoin_id, coin.epoch, target)
        return True

    # -- abandoned hand-offs -----------------------------------------------------

    def reclaim_due(self) -> int:
        """Reclaim every coin HANDING_OFF for longer than handoff_ttl_s.

        Returns how many coins changed (reclaimed or closed).
        """
        now_ms = self._clock.now_ms()
        cutoff = now_ms - self.limits.handoff_ttl_s * 1000
        with self._uow() as session:
            due = self._repo.handoffs_started_before(session, cutoff)
        changed = 0
        for stored in due:
            try:
                if self._reclaim(stored.view, now_ms):
                    changed += 1
            except NetPayError as err:
                log.warning("reclaim of %s failed: %s", stored.view.ecoin_id, err.detail)
        return changed

    def _reclaim(self, coin: CoinView, now_ms: int) -> bool:
        envelope = seal(
            pb.CoinIndex(
                ecoin_id=coin.ecoin_id,
                epoch=coin.epoch,
                index=coin.index,
                payword=coin.payword,
                vendor_id=self._id.vendor_id,
                issued_at_ms=now_ms,
            ),
            self._id.key,
        )
        sent_ms = self._clock.now_ms()
        try:
            grant = self._broker.reclaim(coin.ecoin_id, coin.epoch, envelope)
        except (PreconditionFailed, NotFound) as err:
            # The hand-off completed first (or the coin is gone): the epoch is over.
            with self._uow() as session:
                closed = self._repo.close_epoch(
                    session, ecoin_id=coin.ecoin_id, epoch=coin.epoch, now_ms=now_ms
                )
                session.commit()
            log.info("coin %s epoch %d closed: %s", coin.ecoin_id, coin.epoch, err.detail)
            return closed
        if (
            grant.ecoin_id != coin.ecoin_id
            or grant.epoch <= coin.epoch
            or (grant.holder and grant.holder != self._id.vendor_id)
            or len(grant.base_word) != WORD_BYTES
        ):
            raise BrokerUnavailable("the broker's reclaim grant does not match")
        deadline = lease_deadline_ms(
            sent_ms,
            grant.lease_ttl_s or self.limits.lease_ttl_s,
            grant.max_skew_s or self.limits.max_skew_s,
        )
        with self._uow() as session:
            moved = self._repo.reclaimed(
                session,
                ecoin_id=coin.ecoin_id,
                old_epoch=coin.epoch,
                new_epoch=grant.epoch,
                base_index=grant.base_index,
                base_word=grant.base_word,
                lease_deadline_ms=deadline,
                now_ms=now_ms,
            )
            session.commit()
        log.info("coin %s reclaimed in epoch %d", coin.ecoin_id, grant.epoch)
        return moved
