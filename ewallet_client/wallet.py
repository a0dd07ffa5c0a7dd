"""The client-side e-wallet's use cases (protocol.md, "The HTTP payment").

A :class:`Wallet` keeps its state in ``<wallet_dir>/wallet.sqlite``
(:mod:`ewallet_client.store`), talks to the broker over gRPC
(:mod:`ewallet_client.broker_client`) and to vendors' web sites over HTTP
(:mod:`ewallet_client.http`). It trusts the broker it pinned at its first
contact, pays only the web origin the broker certified for a vendor, and
never gives one index range to two headers.

The reader's spending limits (:mod:`netpay.spending`, set with
:meth:`Wallet.set_spending_limits`) are enforced for every payment the wallet
makes with its own coins, in the store transaction that moves the index. A
standing auto-load agreement (:meth:`Wallet.set_autoload`) buys a new coin,
by the same path as :meth:`Wallet.buy`, when a payment leaves the usable
balance below its threshold; a failed auto-load never fails the payment.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import requests
from google.protobuf.message import DecodeError

from ewallet_client import http
from ewallet_client.broker_client import BrokerApi, BrokerClient, BrokerFactory
from ewallet_client.domain import (
    CoinEvent,
    CoinState,
    CoinView,
    WindowEvent,
    WindowState,
    check_certificate,
    check_origin,
    check_receipt,
    check_touchstone,
    check_window_credit,
    check_window_receipt,
    origin_of,
)
from ewallet_client.store import (
    KEEP,
    MAX_AUTOLOAD_BELOW_MINOR,
    PEBBLE_EVERY,
    Allocation,
    AutoloadAgreement,
    BridgeCharge,
    Keep,
    NewCoin,
    PendingCoin,
    WalletStore,
    WindowRequest,
    WindowView,
)
from netpay.chain import MAX_CHAIN_UNITS, Chain, new_ecoin_id, new_seed
from netpay.clock import Clock, SystemClock
from netpay.encoding import PARTY_ID_RE, b64url_decode, check_currency, check_ecoin_id
from netpay.envelope import PUBLIC_KEY_BYTES, open_envelope
from netpay.errors import (
    AlreadySpent,
    BrokerUnavailable,
    CoinBusy,
    Conflict,
    Insufficient,
    InvalidArgument,
    LimitExceeded,
    Malformed,
    NetPayError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    SignatureInvalid,
    Unauthenticated,
    Unavailable,
    WrongAmount,
)
from netpay.header import Challenge, Credentials, format_authorization, parse_challenge
from netpay.limits import DEFAULT_LIMITS
from netpay.money import Money
from netpay.spending import SpendingLimits, check_spend, utc_day
from netpay.v1 import broker_pb2
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "BUSY_RETRIES",
    "DEFAULT_MAX_AMOUNT_MINOR",
    "MAX_WINDOW_UNITS",
    "PAY_ATTEMPTS",
    "WINDOW_COOKIE",
    "Authorization",
    "AutoloadResult",
    "ReadResult",
    "Wallet",
    "WindowAuthorization",
    "WindowCreditView",
    "default_wallet_dir",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_AMOUNT_MINOR = 100
PAY_ATTEMPTS = 3  # headers issued per read: the first and at most two after a resync
BUSY_RETRIES = 3  # re-sends of the same header after coin_busy
BUSY_WAIT_CAP_S = 5.0
GAP_WARN_FRACTION = 0.8
# A verified vendor certificate is reused for this long (within its validity),
# so a click needs no broker call; a vendor that moved is looked up again.
CERTIFICATE_CACHE_S = 3600
MAX_USERNAME_CHARS = 128
MAX_PASSWORD_CHARS = 1024
MAX_TOKEN_CHARS = 256
MAX_UNIT_VALUE_MINOR = 2**32 - 1
_JSON = "application/json"
_RECEIPT_HEADER = "NetPay-Receipt"
_BALANCE_HEADER = "NetPay-Balance"
WINDOW_COOKIE = "netpay_window"
WINDOW_PATH = "/netpay/window"
WINDOW_CLOSE_PATH = "/netpay/window/close"
MAX_WINDOW_UNITS = DEFAULT_LIMITS.max_window_units
_HANDLE_BYTES = 32
_MAX_WINDOW_JSON_BYTES = 16 * 1024
_MAX_INT64 = 2**63 - 1


def _window_url(url: str, *, close: bool = False) -> str:
    """``<scheme>://<host:port of url>/netpay/window[/close]``."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{WINDOW_CLOSE_PATH if close else WINDOW_PATH}"


def default_wallet_dir() -> Path:
    """``$NETPAY_WALLET_DIR``, else ``$XDG_DATA_HOME/netpay/wallet``, else
    ``~/.local/share/netpay/wallet``."""
    explicit = os.environ.get("NETPAY_WALLET_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg:
        return Path(xdg) / "netpay" / "wallet"
    return Path.home() / ".local" / "share" / "netpay" / "wallet"


@dataclass(frozen=True)
class ReadResult:
    """The outcome of :meth:`Wallet.read`."""

    url: str
    status: int
    body: bytes
    content_type: str
    amount_paid_minor: int = 0
    currency: str | None = None
    receipt: pb.Receipt | None = None
    # Set when the vendor served the resource but its receipt is missing or
    # does not verify: the resource is still returned, the wallet warns.
    receipt_error: NetPayError | None = None
    ecoin_id: str | None = None
    # Words left on the coin that paid, as the wallet counts them.
    balance_words: int | None = None
    # NetPay-Balance as the vendor sent it.
    vendor_balance_words: int | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # Set when the click was paid from a window: its id and the words left in it.
    window_id: int | None = None
    window_words_left: int | None = None

    @property
    def paid(self) -> bool:
        return self.amount_paid_minor > 0


@dataclass(frozen=True)
class Authorization:
    """An ``Authorization`` header value and what it pays (:meth:`Wallet.authorize_payment`)."""

    header: str
    url: str
    vendor_id: str
    web_origin: str  # the origin the broker certified for the vendor
    amount_minor: int
    currency: str
    ecoin_id: str
    from_index: int
    to_index: int
    words_left: int  # on the paying coin, once this header is used


@dataclass(frozen=True)
class WindowAuthorization:
    """A header that opens a window of ``units`` words (:meth:`Wallet.authorize_window`)."""

    header: str
    url: str
    window_url: str  # <the URL's origin>/netpay/window
    vendor_id: str
    web_origin: str  # the origin the broker certified for the vendor
    units: int
    amount_minor: int  # units * the coin's unit value
    currency: str
    price_minor: int  # the price the challenge named (a click's, or the unit value)
    ecoin_id: str
    from_index: int
    to_index: int
    words_left: int  # on the coin, once the window is open
    window_id: int | None  # the wallet's record of it (None: the browser bridge's)


@dataclass(frozen=True)
class AutoloadResult:
    """One auto-load attempt after a payment: the coin bought, or why not.

    A failed attempt leaves the coin pending (lost reply, broker down: the
    same request id is retried after the next payment) or abandons it (a
    definite refusal such as ``insufficient``: a new coin is tried next time).
    """

    currency: str
    ecoin_id: str | None  # None: the attempt failed before a coin was chosen
    coin: CoinView | None  # the coin bought (None: the attempt failed)
    error: NetPayError | None = None

    @property
    def bought(self) -> bool:
        return self.coin is not None

    def to_json(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            "ecoin_id": self.ecoin_id,
            "bought": self.bought,
            "value_minor": None if self.coin is None else self.coin.value_minor,
            "error": None if self.error is None else self.error.code,
            "detail": None if self.error is None else self.error.detail,
        }


@dataclass(frozen=True)
class WindowCreditView:
    """A closed window (:meth:`Wallet.close_window`); ``credit`` None when the
    vendor had already closed it itself (expired or handed off)."""

    window: WindowView
    credit: pb.WindowCredit | None

    def to_json(self) -> dict[str, object]:
        out = self.window.to_json()
        c = self.credit
        out["credit"] = (
            None
            if c is None
            else {
                "vendor_id": c.vendor_id,
                "ecoin_id": c.ecoin_id,
                "epoch": c.epoch,
                "window_top": c.window_top,
                "consumed_index": c.consumed_index,
                "refund_units": c.refund_units,
                "time_ms": c.time_ms,
                "reason": c.reason,
            }
        )
        return out


def _int_field(obj: dict[str, object], name: str, low: int = 0, high: int = _MAX_INT64) -> int:
    value = obj.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise Malformed(f"the vendor's window has no valid {name!r}")
    return value


def _window_json(resp: http.HttpResponse, what: str) -> dict[str, object]:
    if len(resp.body) > _MAX_WINDOW_JSON_BYTES:
        raise Malformed(f"the vendor's {what} is larger than {_MAX_WINDOW_JSON_BYTES} bytes")
    try:
        obj = json.loads(resp.body)
    except ValueError:
        raise Malformed(f"the vendor's {what} is not JSON") from None
    if not isinstance(obj, dict):
        raise Malformed(f"the vendor's {what} is not a JSON object")
    return obj


@dataclass(frozen=True)
class _Quote:
    """A verified price: the challenge and the vendor's certificate."""

    url: str
    challenge: Challenge
    certificate: pb.VendorCertificate
    from_cache: bool


def _sale_refused(err: NetPayError) -> bool:
    """True when BuyCoin's error means the broker sold nothing, for good.

    Transport failures, expired logins and unknown errors leave the coin
    pending: the sale may have happened, and the same request id will tell.
    """
    if isinstance(err, Unavailable | BrokerUnavailable | Unauthenticated | CoinBusy | Conflict):
        return False
    return type(err) is not NetPayError


class Wallet:
    """The reader's client-side e-wallet."""

    def __init__(
        self,
        wallet_dir: Path,
        *,
        clock: Clock | None = None,
        session: requests.Session | None = None,
        broker_factory: BrokerFactory | None = None,
    ) -> None:
        self.wallet_dir = Path(wallet_dir)
        self.clock: Clock = clock or SystemClock()
        self.store = WalletStore(self.wallet_dir)
        self._own_session = session is None
        # No cookie jar: a window handle goes only where the wallet sends it.
        self.session = http.no_cookies(session or requests.Session())
        self._broker_factory: BrokerFactory = broker_factory or BrokerClient
        self._brokers: dict[str, BrokerApi] = {}
        # How the wallet waits for Retry-After (tests replace it).
        self.sleep: Callable[[float], None] = time.sleep
        # Warnings of the last read/authorize (the CLI prints them on stderr).
        self.warnings: list[str] = []
        # Auto-loads the last payment ran (at most one; the CLI reports them).
        self.autoloads: list[AutoloadResult] = []
        self._autoload_ran = False
        # Why the last set_spending_limits could not reach the broker (None: it did).
        self.limits_sync_error: str | None = None

    # -- lifecycle ------------------------------------------------------------

    def close(self) -> None:
        for client in self._brokers.values():
            client.close()
        self._brokers.clear()
        if self._own_session:
            self.session.close()
        self.store.close()

    def __enter__(self) -> Wallet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _broker(self, address: str | None = None) -> BrokerApi:
        address = address or self.store.settings().broker_addr
        if not address:
            raise PreconditionFailed(
                "this wallet has no broker: run `netpay wallet register --broker H:P ...`"
            )
        if address not in self._brokers:
            self._brokers[address] = self._broker_factory(address)
        return self._brokers[address]

    # -- identity -------------------------------------------------------------

    def _connect_and_pin(self, address: str) -> BrokerApi:
        """GetInfo; pin the broker id and key at first contact, refuse a change later."""
        client = self._broker(address)
        info = client.get_info()
        if not PARTY_ID_RE.fullmatch(info.broker_id) or len(info.public_key) != PUBLIC_KEY_BYTES:
            raise SignatureInvalid("the broker's GetInfo has no valid id and Ed25519 key")
        st = self.store.settings()
        if st.broker_public_key is not None:
            if not secrets.compare_digest(st.broker_public_key, info.public_key):
                raise PermissionDenied("broker key changed")
            if st.broker_id != info.broker_id:
                raise PermissionDenied("broker id changed")
        limits = info.limits
        self.store.save_settings(
            broker_addr=address,
            broker_id=info.broker_id,
            broker_public_key=info.public_key,
            max_gap_units=limits.max_gap_units or st.max_gap_units,
            max_chain_units=min(limits.max_chain_units or MAX_CHAIN_UNITS, MAX_CHAIN_UNITS),
            max_click_amount_minor=limits.max_click_amount_minor or st.max_click_amount_minor,
            max_skew_s=limits.max_skew_s or st.max_skew_s,
        )
        return client

    @staticmethod
    def _check_credentials(username: str, password: str) -> None:
        if not 1 <= len(username) <= MAX_USERNAME_CHARS:
            raise InvalidArgument(f"username must be 1..{MAX_USERNAME_CHARS} characters")
        if not 1 <= len(password) <= MAX_PASSWORD_CHARS:
            raise InvalidArgument(f"password must be 1..{MAX_PASSWORD_CHARS} characters")

    def register(self, broker_addr: str, username: str, password: str) -> str:
        """Open a reader account at the broker and log in; returns the reader id."""
        self._check_credentials(username, password)
        client = self._connect_and_pin(broker_addr)
        reader_id = client.register_reader(username, password)
        self._login(client, broker_addr, username, password)
        return reader_id

    def login(self, broker_addr: str | None, username: str, password: str) -> None:
        """Log in (at the stored broker when ``broker_addr`` is None); keeps the token."""
        self._check_credentials(username, password)
        address = broker_addr or self.store.settings().broker_addr
        if not address:
            raise InvalidArgument("no broker address: pass --broker H:P")
        self._login(self._connect_and_pin(address), address, username, password)

    def _login(self, client: BrokerApi, address: str, username: str, password: str) -> None:
        resp = client.login(username, password)
        if not 1 <= len(resp.token) <= MAX_TOKEN_CHARS:
            raise InvalidArgument("the broker returned no usable token")
        self.store.save_settings(
            broker_addr=address,
            username=username,
            reader_id=resp.reader_id or self.store.settings().reader_id,
            token=resp.token,
            token_expires_at_ms=resp.expires_at_ms or None,
        )
        # The limits the reader keeps at the broker (the portal, other wallets).
        self.sync_spending_limits()

    def _token(self) -> str:
        st = self.store.settings()
        if not st.token:
            raise Unauthenticated("not logged in: run `netpay wallet login`")
        if st.token_expires_at_ms is not None and st.token_expires_at_ms <= self.clock.now_ms():
            raise Unauthenticated("the login has expired: run `netpay wallet login`")
        return st.token

    # -- coins ----------------------------------------------------------------

    def buy(self, units: int, unit_value_minor: int = 1, currency: str = "EUR") -> CoinView:
        """Buy a client-side coin of ``units`` words worth ``unit_value_minor`` each.

        The chain is stored (state ``pending``) before BuyCoin is sent; a
        pending coin with the same terms is retried with its request id.
        """
        self._check_coin_terms(units, unit_value_minor, currency)
        token = self._token()
        client = self._broker()
        pending = next(
            (
                p
                for p in self.store.pending_coins()
                if (p.n, p.unit_value_minor, p.currency) == (units, unit_value_minor, currency)
            ),
            None,
        )
        if pending is None:
            coin = self._new_coin(units, unit_value_minor, currency)
            pending = self.store.add_pending_coin(
                ecoin_id=coin.ecoin_id,
                request_id=coin.request_id,
                seed=coin.seed,
                n=coin.n,
                unit_value_minor=coin.unit_value_minor,
                currency=coin.currency,
                pebbles=coin.pebbles,
                now_ms=self.clock.now_ms(),
            )
        else:
            log.info("retrying the purchase of pending coin %s", pending.ecoin_id)
        return self._complete_purchase(client, token, pending)

    def _check_coin_terms(self, units: int, unit_value_minor: int, currency: str) -> None:
        """The terms of a client-side coin the broker would sell (``invalid_argument``)."""
        st = self.store.settings()
        top = min(MAX_CHAIN_UNITS, st.max_chain_units)
        if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= top:
            raise InvalidArgument(f"units must be 1..{top}")
        if (
            isinstance(unit_value_minor, bool)
            or not isinstance(unit_value_minor, int)
            or not 1 <= unit_value_minor <= MAX_UNIT_VALUE_MINOR
        ):
            raise InvalidArgument("unit value must be a positive number of minor units")
        check_currency(currency)

    @staticmethod
    def _new_coin(units: int, unit_value_minor: int, currency: str) -> NewCoin:
        """A fresh chain (seed, pebbles) and request id for a coin not yet stored."""
        ecoin = new_ecoin_id()
        seed = new_seed()
        chain = Chain.make(ecoin, units, seed, pebble_every=PEBBLE_EVERY)
        return NewCoin(
            ecoin_id=ecoin.hex(),
            request_id=secrets.token_hex(16),
            seed=seed,
            n=units,
            unit_value_minor=unit_value_minor,
            currency=currency,
            pebbles=chain.pebbles,
        )

    def buy_server_side(
        self,
        units: int,
        wallet_password: str,
        unit_value_minor: int = 1,
        currency: str = "EUR",
    ) -> dict[str, object]:
        """Buy a server-side coin: the broker makes the chain and keeps it (encrypted).

        The wallet keeps nothing of it (no seed, no password): the reader
        signs in with the printed e-coin id and the wallet password at a
        newspaper. A lost reply is retried once with the same request id (the
        broker answers a replay with the first coin and charges once).
        Returns the coin as JSON-ready fields.
        """
        st = self.store.settings()
        if not 1 <= units <= min(MAX_CHAIN_UNITS, st.max_chain_units):
            raise InvalidArgument(f"units must be 1..{min(MAX_CHAIN_UNITS, st.max_chain_units)}")
        if not 1 <= unit_value_minor <= MAX_UNIT_VALUE_MINOR:
            raise InvalidArgument("unit value must be a positive number of minor units")
        if not 8 <= len(wallet_password) <= 256:
            raise InvalidArgument("the wallet password must have 8..256 characters")
        check_currency(currency)
        token = self._token()
        client = self._broker()
        request = broker_pb2.BuyCoinRequest(
            request_id=secrets.token_hex(16),
            n=units,
            unit_value_minor=unit_value_minor,
            currency=currency,
            wallet_kind=pb.WALLET_KIND_SERVER_SIDE,
            wallet_password=wallet_password,
        )
        try:
            resp = client.buy_coin(token, request)
        except BrokerUnavailable:
            resp = client.buy_coin(token, request)
        st = self.store.settings()
        assert st.broker_public_key is not None and st.broker_id is not None
        touchstone = open_envelope(resp.touchstone, pb.Touchstone, st.broker_public_key)
        problems = [
            name
            for name, ok in (
                ("broker id", touchstone.broker_id == st.broker_id),
                ("ecoin id", touchstone.ecoin_id == resp.ecoin_id and len(resp.ecoin_id) == 32),
                ("n", touchstone.n == units),
                ("unit value", touchstone.unit_value_minor == unit_value_minor),
                ("currency", touchstone.currency == currency),
                ("wallet kind", touchstone.wallet_kind == pb.WALLET_KIND_SERVER_SIDE),
                ("owner", not st.reader_id or touchstone.owner == st.reader_id),
                ("expiry", touchstone.expires_at_ms > self.clock.now_ms()),
            )
            if not ok
        ]
        if problems:
            raise SignatureInvalid(f"the touchstone differs in: {', '.join(problems)}")
        return {
            "ecoin_id": touchstone.ecoin_id,
            "wallet_kind": "server_side",
            "n": touchstone.n,
            "unit_value_minor": touchstone.unit_value_minor,
            "currency": touchstone.currency,
            "value_minor": touchstone.n * touchstone.unit_value_minor,
            "amount_minor": resp.amount_minor,
            "issued_at_ms": touchstone.issued_at_ms,
            "expires_at_ms": touchstone.expires_at_ms,
            "broker_id": touchstone.broker_id,
        }

    def resume_pending(self) -> list[CoinView]:
        """Retry BuyCoin for every pending coin (same request ids)."""
        token = self._token()
        client = self._broker()
        return [self._complete_purchase(client, token, p) for p in self.store.pending_coins()]

    def _complete_purchase(self, client: BrokerApi, token: str, coin: PendingCoin) -> CoinView:
        request = broker_pb2.BuyCoinRequest(
            request_id=coin.request_id,
            ecoin_id=coin.ecoin_id,
            root=coin.root,
            n=coin.n,
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
            wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
        )
        try:
            resp = client.buy_coin(token, request)
        except NetPayError as err:
            if _sale_refused(err):
                self.store.change_state(coin.ecoin_id, CoinEvent.REFUSED)
            raise
        st = self.store.settings()
        assert st.broker_public_key is not None and st.broker_id is not None
        touchstone = open_envelope(resp.touchstone, pb.Touchstone, st.broker_public_key)
        check_touchstone(
            touchstone,
            broker_id=st.broker_id,
            ecoin_id=coin.ecoin_id,
            root=coin.root,
            n=coin.n,
            unit_value_minor=coin.unit_value_minor,
            currency=coin.currency,
            owner=st.reader_id,
            now_ms=self.clock.now_ms(),
        )
        if resp.amount_minor and resp.amount_minor != coin.n * coin.unit_value_minor:
            log.warning(
                "the broker charged %d for coin %s worth %d",
                resp.amount_minor,
                coin.ecoin_id,
                coin.n * coin.unit_value_minor,
            )
        return self.store.change_state(
            coin.ecoin_id,
            CoinEvent.SOLD,
            touchstone=resp.touchstone.SerializeToString(),
            expires_at_ms=touchstone.expires_at_ms,
        )

    def coins(self) -> list[CoinView]:
        """Every coin not abandoned: words and value left, currency, expiry, last vendor."""
        return [c for c in self.store.coins() if c.state is not CoinState.ABANDONED]

    def bank_balances(self) -> list[dict[str, object]]:
        """The reader's bank balances at the broker (GetAccount)."""
        resp = self._broker().get_account(self._token())
        return [{"currency": b.currency, "balance_minor": b.balance_minor} for b in resp.balances]

    def history(self) -> list[dict[str, object]]:
        """Every receipt the wallet verified, oldest first."""
        return self.store.receipts()

    # -- spending limits ------------------------------------------------------

    def set_spending_limits(
        self,
        currency: str,
        *,
        max_click_minor: int | Keep | None = KEEP,
        max_day_minor: int | Keep | None = KEEP,
    ) -> SpendingLimits:
        """Set (an int), clear (None) or keep (``KEEP``) the limits in ``currency``.

        The values are checked by :class:`netpay.spending.SpendingLimits`.
        """
        check_currency(currency)
        limits = self.store.set_spending_limits(
            currency,
            now_ms=self.clock.now_ms(),
            max_click_minor=max_click_minor,
            max_day_minor=max_day_minor,
        )
        self.limits_sync_error = None
        st = self.store.settings()
        if st.token and st.broker_addr:
            # One set of limits: the broker keeps them too (for server-side coins
            # and for this reader's other wallets). The wallet's copy rules here.
            try:
                self._push_limits(limits)
            except NetPayError as err:
                self.limits_sync_error = f"{err.code}: {err.detail}"
        return limits

    def _push_limits(self, limits: SpendingLimits) -> None:
        msg = broker_pb2.SpendingLimit(currency=limits.currency)
        if limits.max_click_minor is not None:
            msg.max_click_minor = limits.max_click_minor
        if limits.max_day_minor is not None:
            msg.max_day_minor = limits.max_day_minor
        self._broker().set_spending_limits(self._token(), msg)

    def broker_history(self, *, ecoin_id: str = "", limit: int = 100) -> list[dict[str, object]]:
        """The reader's money history at the broker, newest first: purchases, the clicks
        vendors redeemed, window credits, vendor refunds and expiry refunds."""
        if ecoin_id:
            check_ecoin_id(ecoin_id)
        reply = self._broker().history(
            self._token(), broker_pb2.HistoryRequest(ecoin_id=ecoin_id, limit=limit)
        )
        return [
            {
                "time_ms": e.time_ms,
                "kind": e.kind,
                "ecoin_id": e.ecoin_id,
                "vendor_id": e.vendor_id,
                "item_id": e.item_id,
                "epoch": e.epoch,
                "from_index": e.from_index,
                "to_index": e.to_index,
                "amount_minor": e.amount_minor,
                "currency": e.currency,
            }
            for e in reply.entries
        ]

    def sync_spending_limits(self) -> list[SpendingLimits]:
        """Take the limits kept at the broker (set on the portal or by another wallet)
        into this wallet; they rule its own coins from then on."""
        account = self._broker().get_account(self._token())
        taken = []
        for lim in account.limits:
            check_currency(lim.currency)
            taken.append(
                self.store.set_spending_limits(
                    lim.currency,
                    now_ms=self.clock.now_ms(),
                    max_click_minor=lim.max_click_minor
                    if lim.HasField("max_click_minor")
                    else None,
                    max_day_minor=lim.max_day_minor if lim.HasField("max_day_minor") else None,
                )
            )
        return taken

    def spending_report(self, currency: str | None = None) -> list[dict[str, object]]:
        """Limits and today's spending (UTC) per currency, as JSON-ready objects.

        With ``currency``, that one; else every currency with a limit,
        spending today or a coin (EUR when there is none).
        """
        day = utc_day(self.clock.now_ms())
        spent = self.store.spending(day)
        limits = {lim.currency: lim for lim in self.store.all_spending_limits()}
        if currency is not None:
            check_currency(currency)
            currencies = [currency]
        else:
            held = {c.currency for c in self.coins() if c.state is CoinState.ACTIVE}
            currencies = sorted(set(limits) | set(spent) | held) or ["EUR"]
        out: list[dict[str, object]] = []
        for cur in currencies:
            lim = limits.get(cur, SpendingLimits(cur))
            spent_minor, payments = spent.get(cur, (0, 0))
            out.append(
                {
                    "currency": cur,
                    "max_click_minor": lim.max_click_minor,
                    "max_day_minor": lim.max_day_minor,
                    "day": datetime.fromtimestamp(day * 86_400, tz=UTC).date().isoformat(),
                    "spent_today_minor": spent_minor,
                    "payments_today": payments,
                    "left_today_minor": None
                    if lim.max_day_minor is None
                    else max(0, lim.max_day_minor - spent_minor),
                }
            )
        return out

    def _check_click_limit(self, challenge: Challenge) -> None:
        """The reader's per-click limit on a price (for clicks paid from a window too)."""
        limits = self.store.spending_limits(challenge.currency)
        if limits is not None and limits.max_click_minor is not None:
            # The click part of the one rule; the day was counted when paid.
            check_spend(replace(limits, max_day_minor=None), challenge.amount_minor, 0)

    # -- auto-load ------------------------------------------------------------

    def set_autoload(
        self, currency: str, below_minor: int, units: int, unit_value_minor: int = 1
    ) -> AutoloadAgreement:
        """A standing agreement: buy a coin of ``units`` words when a payment leaves
        the usable balance in ``currency`` below ``below_minor``.

        The coin must be worth at least the threshold (else one purchase would
        not lift the balance over it and every payment would buy again).
        """
        self._check_coin_terms(units, unit_value_minor, currency)
        if (
            isinstance(below_minor, bool)
            or not isinstance(below_minor, int)
            or not 1 <= below_minor <= MAX_AUTOLOAD_BELOW_MINOR
        ):
            raise InvalidArgument(f"the threshold is 1..{MAX_AUTOLOAD_BELOW_MINOR} minor units")
        if units * unit_value_minor < below_minor:
            raise InvalidArgument(
                f"the auto-load coin ({units} x {unit_value_minor} minor units) must be worth "
                f"at least the threshold ({below_minor}): else every payment would buy again"
            )
        return self.store.set_autoload(
            currency,
            below_minor=below_minor,
            units=units,
            unit_value_minor=unit_value_minor,
            now_ms=self.clock.now_ms(),
        )

    def autoload_off(self, currency: str) -> AutoloadAgreement | None:
        """End the agreement in ``currency`` (None: there was none).

        A purchase it started and the broker has not confirmed is still
        completed after the next payment (same request id).
        """
        check_currency(currency)
        return self.store.autoload_off(currency)

    def autoload_agreements(self) -> list[AutoloadAgreement]:
        """The agreements in force, by currency."""
        return self.store.autoloads()

    def _autoload(self, currency: str) -> AutoloadResult | None:
        """At most one auto-load purchase per payment; never raises a NetPayError.

        The agreement's coin still pending (broker down, lost reply, crash)
        is retried with its request id; else, when the usable balance is below
        the threshold, a new coin is stored as pending (a compare-and-set on
        the agreement) and bought — :meth:`buy`'s path: the same pending
        coin, BuyCoin and touchstone checks.
        """
        if self._autoload_ran:
            return None
        agreement = self.store.autoload(currency)
        if agreement is None:
            return None
        st = self.store.settings()
        now_ms = self.clock.now_ms()
        skew_ms = st.max_skew_s * 1000
        if not agreement.pending and (
            not agreement.enabled
            or self.store.usable_value_minor(currency, now_ms=now_ms, skew_ms=skew_ms)
            >= agreement.below_minor
        ):
            return None
        self._autoload_ran = True
        ecoin_id: str | None = agreement.last_ecoin_id if agreement.pending else None
        try:
            token = self._token()
            client = self._broker()
            pending = self.store.autoload_pending(currency)
            if pending is None:
                claimed = self.store.claim_autoload(
                    self._new_coin(agreement.units, agreement.unit_value_minor, currency),
                    now_ms=now_ms,
                    skew_ms=skew_ms,
                )
                if claimed is None:  # nothing due any more (another process bought)
                    return None
                pending = claimed[0]
            else:
                log.debug("retrying the auto-load purchase of pending coin %s", pending.ecoin_id)
            ecoin_id = pending.ecoin_id
            coin = self._complete_purchase(client, token, pending)
        except NetPayError as err:
            done = self._bought_meanwhile(ecoin_id)
            if done is None:
                self.store.autoload_attempted(
                    currency, now_ms=now_ms, ecoin_id=ecoin_id, error=f"{err.code}: {err.detail}"
                )
                log.debug("auto-load in %s failed: %s: %s", currency, err.code, err.detail)
                return AutoloadResult(currency, ecoin_id, None, err)
            coin = done
        self.store.autoload_attempted(currency, now_ms=now_ms, ecoin_id=coin.ecoin_id, error=None)
        log.debug("auto-load in %s bought coin %s", currency, coin.ecoin_id)
        return AutoloadResult(currency, coin.ecoin_id, coin)

    def _bought_meanwhile(self, ecoin_id: str | None) -> CoinView | None:
        """The coin if it is active after all (another process completed the purchase)."""
        if ecoin_id is None:
            return None
        try:
            coin = self.store.coin(ecoin_id)
        except NotFound:
            return None
        return coin if coin.state is CoinState.ACTIVE else None

    def _begin_payment(self) -> None:
        self.warnings = []
        self.autoloads = []
        self._autoload_ran = False

    def _after_payment(self, currency: str) -> None:
        """A payment was made: run the auto-load agreement (at most once per payment)."""
        result = self._autoload(currency)
        if result is not None:
            self.autoloads.append(result)

    def _allocate(self, currency: str, allocate: Callable[[], Allocation]) -> Allocation:
        """``allocate()``; when no coin can pay (``insufficient``), auto-load and try once more."""
        try:
            return allocate()
        except Insufficient as exc:
            result = self._autoload(currency)
            if result is None:
                raise
            self.autoloads.append(result)
            if result.error is not None:
                raise Insufficient(
                    f"{exc.detail}; the auto-load failed: {result.error.code}: "
                    f"{result.error.detail}"
                ) from exc
            return allocate()

    # -- paying ---------------------------------------------------------------

    def authorize(self, url: str, max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR) -> str:
        """The ``Authorization`` header value that pays for ``url`` once.

        The wallet's index moves now: a header that is never used leaves a
        gap of void words (returned to the reader after the coin expires).
        """
        return self.authorize_payment(url, max_amount_minor).header

    def authorize_payment(
        self,
        url: str,
        max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR,
        *,
        charge: BridgeCharge | None = None,
    ) -> Authorization:
        """:meth:`authorize`, reporting what the header pays.

        With ``charge`` (the browser bridge), the amount also counts against
        an approved origin's caps, checked in the transaction that moves the
        index: a refused charge moves nothing.
        """
        self._begin_payment()
        first = http.get(self.session, url, {"Accept": _JSON})
        if first.status != 402:
            raise PreconditionFailed(f"{url[:200]} asks for no payment (HTTP {first.status})")
        quote = self._quote(url, first, max_amount_minor)
        alloc, header = self._issue(quote, charge=charge)
        ch = quote.challenge
        self._after_payment(ch.currency)
        return Authorization(
            header=header,
            url=url,
            vendor_id=ch.realm,
            web_origin=quote.certificate.web_origin,
            amount_minor=ch.amount_minor,
            currency=ch.currency,
            ecoin_id=alloc.coin.ecoin_id,
            from_index=alloc.prev,
            to_index=alloc.index,
            words_left=alloc.coin.n - alloc.index,
        )

    def read(self, url: str, max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR) -> ReadResult:
        """GET ``url``, paying its 402 challenge (at most ``max_amount_minor``)."""
        self._begin_payment()
        first = http.get(self.session, url, {"Accept": _JSON})
        if first.status != 402:
            return ReadResult(url, first.status, first.body, first.content_type)
        quote = self._quote(url, first, max_amount_minor)
        self._check_click_limit(quote.challenge)
        window = self._usable_window(quote)
        if window is not None:
            from_window = self._read_from_window(quote, window)
            if from_window is not None:
                self._after_payment(quote.challenge.currency)
                return from_window
        alloc, header = self._issue(quote)
        headers_issued = 1
        busy_retries = 0
        while True:
            resp = http.get(self.session, url, {"Accept": _JSON, "Authorization": header})
            if resp.status == 200:
                result = self._accepted(quote, alloc, resp)
                self._after_payment(quote.challenge.currency)
                return result
            err = http.error_from_response(resp)
            if isinstance(err, CoinBusy) and busy_retries < BUSY_RETRIES:
                busy_retries += 1
                self.sleep(http.retry_after_s(resp, BUSY_WAIT_CAP_S))
                continue  # the same header: nothing was accepted
            if (
                isinstance(err, AlreadySpent | WrongAmount)
                and err.index is not None
                and err.payword is not None
                and headers_issued < PAY_ATTEMPTS
            ):
                self._resync(alloc.coin.ecoin_id, err)
                # The same click: its price was counted with the first header.
                alloc, header = self._issue(quote, spend=False)
                headers_issued += 1
                continue
            raise err

    # -- windows --------------------------------------------------------------

    def _usable_window(self, quote: _Quote) -> WindowView | None:
        """An open window at the URL's vendor with enough words for this price."""
        ch = quote.challenge
        now_ms = self.clock.now_ms()
        skew_ms = self.store.settings().max_skew_s * 1000
        for w in self.store.windows_at(origin_of(quote.url), states=(WindowState.OPEN,)):
            if (
                w.vendor_id == ch.realm
                and w.currency == ch.currency
                and w.live(now_ms + skew_ms)
                and ch.amount_minor % w.unit_value_minor == 0
                and w.words_left >= ch.amount_minor // w.unit_value_minor
            ):
                return w
        return None

    def _read_from_window(self, quote: _Quote, window: WindowView) -> ReadResult | None:
        """The click paid from ``window`` (cookie, no Authorization); None: pay per click.

        A 402 means the vendor will not pay this click from the window
        (closed, expired, unknown, not enough words): the window is marked
        unusable and the caller pays per click.
        """
        handle = self.store.window_handle(window.window_id)
        if handle is None:
            return None
        resp = http.get(
            self.session,
            quote.url,
            {"Accept": _JSON, "Cookie": f"{WINDOW_COOKIE}={handle}"},
        )
        if resp.status == 402:
            self.store.change_window(
                window.window_id, WindowEvent.CLICK_REFUSED, now_ms=self.clock.now_ms()
            )
            err = http.error_from_response(resp)
            self._warn(
                f"the window at {window.vendor_id} is no longer usable ({err.detail}); "
                "paying per click"
            )
            return None
        if resp.status != 200:
            raise http.error_from_response(resp)
        ch = quote.challenge
        receipt: pb.Receipt | None = None
        receipt_error: NetPayError | None = None
        try:
            raw = self._receipt_bytes(resp)
            receipt = self._open_receipt(quote, pb.Envelope.FromString(raw))
            assert window.epoch is not None
            check_window_receipt(
                receipt,
                vendor_id=window.vendor_id,
                ecoin_id=window.ecoin_id,
                epoch=window.epoch,
                window_from=window.window_from,
                window_top=window.window_top,
                unit_value_minor=window.unit_value_minor,
                currency=window.currency,
                max_amount_minor=ch.amount_minor,
            )
            self.store.record_receipt(
                receipt,
                envelope=raw,
                url=quote.url,
                now_ms=self.clock.now_ms(),
                window_id=window.window_id,
            )
        except (NetPayError, DecodeError) as exc:
            receipt = None
            receipt_error = (
                exc if isinstance(exc, NetPayError) else SignatureInvalid("receipt is no Envelope")
            )
            self._warn(f"the vendor's window receipt is not valid: {receipt_error.detail}")
        after = self.store.window(window.window_id)
        coin = self.store.coin(window.ecoin_id)
        return ReadResult(
            url=quote.url,
            status=resp.status,
            body=resp.body,
            content_type=resp.content_type,
            amount_paid_minor=receipt.amount_minor if receipt is not None else ch.amount_minor,
            currency=ch.currency,
            receipt=receipt,
            receipt_error=receipt_error,
            ecoin_id=coin.ecoin_id,
            balance_words=coin.words_left,
            vendor_balance_words=self._header_int(resp, _BALANCE_HEADER),
            warnings=tuple(self.warnings),
            window_id=window.window_id,
            window_words_left=after.words_left,
        )

    def _window_quote(self, url: str, max_amount_minor: int) -> _Quote:
        """The vendor behind ``url`` and a price: the URL's 402, else /netpay/window's."""
        first = http.get(self.session, url, {"Accept": _JSON})
        if first.status != 402:
            first = http.post(self.session, _window_url(url), {"Accept": _JSON})
            if first.status != 402:
                raise PreconditionFailed(
                    f"{origin_of(url)} asks for no payment and offers no window "
                    f"(HTTP {first.status})"
                )
        return self._quote(url, first, max_amount_minor)

    def authorize_window(
        self,
        url: str,
        units: int,
        max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR,
        *,
        charge: BridgeCharge | None = None,
    ) -> WindowAuthorization:
        """The header that opens a window of ``units`` words at ``url``'s vendor.

        The coin's index moves by ``units`` now (one store transaction, as
        for a click). The caller POSTs the header to ``window_url``. With
        ``charge`` (the browser bridge) ``units`` times the unit value counts
        against the origin's daily cap in that transaction.
        """
        self._begin_payment()
        auth = self._authorize_window(url, units, max_amount_minor, charge=charge, record=False)
        self._after_payment(auth.currency)
        return auth

    def _authorize_window(
        self,
        url: str,
        units: int,
        max_amount_minor: int,
        *,
        charge: BridgeCharge | None,
        record: bool,
        quote: _Quote | None = None,
        spend: bool = True,
    ) -> WindowAuthorization:
        if isinstance(units, bool) or not 1 <= units <= MAX_WINDOW_UNITS:
            raise InvalidArgument(f"a window is 1..{MAX_WINDOW_UNITS} words")
        quote = quote or self._window_quote(url, max_amount_minor)
        ch = quote.challenge
        # The window's clicks will cost this price each: within the click limit.
        self._check_click_limit(ch)
        st = self.store.settings()
        alloc = self._allocate(
            ch.currency,
            lambda: self.store.allocate(
                amount_minor=ch.amount_minor,
                currency=ch.currency,
                realm=ch.realm,
                url=url,
                now_ms=self.clock.now_ms(),
                skew_ms=st.max_skew_s * 1000,
                charge=charge,
                window=WindowRequest(units, origin_of(url) if record else None),
                spend=spend,
            ),
        )
        word = self.store.word(alloc.coin.ecoin_id, alloc.index)
        header = format_authorization(
            Credentials(
                ecoin_id=alloc.coin.ecoin_id,
                prev=alloc.prev,
                index=alloc.index,
                payword=word,
                window=units,
                holder=alloc.coin.last_vendor,
            )
        )
        return WindowAuthorization(
            header=header,
            url=url,
            window_url=_window_url(url),
            vendor_id=ch.realm,
            web_origin=quote.certificate.web_origin,
            units=units,
            amount_minor=alloc.amount_minor,
            currency=ch.currency,
            price_minor=ch.amount_minor,
            ecoin_id=alloc.coin.ecoin_id,
            from_index=alloc.prev,
            to_index=alloc.index,
            words_left=alloc.coin.n - alloc.index,
            window_id=alloc.window_id,
        )

    def open_window(
        self, url: str, units: int, max_amount_minor: int = DEFAULT_MAX_AMOUNT_MINOR
    ) -> WindowView:
        """Prepay ``units`` words at ``url``'s vendor; clicks there then use the window.

        A window already open at that vendor is closed first (its credit
        stored), so the wallet holds at most one per vendor. The handle the
        vendor sets as a cookie is kept in the wallet store (0600) only.
        """
        self._begin_payment()
        if isinstance(units, bool) or not 1 <= units <= MAX_WINDOW_UNITS:
            raise InvalidArgument(f"a window is 1..{MAX_WINDOW_UNITS} words")
        origin = origin_of(url)
        quote = self._window_quote(url, max_amount_minor)
        # Refuse a price above the click limit before closing the old window.
        self._check_click_limit(quote.challenge)
        for old in self.store.windows_at(origin, states=(WindowState.OPEN, WindowState.UNUSABLE)):
            self._close(old, url)
        auth = self._authorize_window(
            url, units, max_amount_minor, charge=None, record=True, quote=quote
        )
        headers_issued = 1
        busy_retries = 0
        while True:
            assert auth.window_id is not None
            try:
                resp = http.post(
                    self.session,
                    auth.window_url,
                    {"Accept": _JSON, "Authorization": auth.header},
                )
            except NetPayError:
                self._window_failed(auth)
                raise
            if resp.status == 200:
                try:
                    opened = self._window_accepted(quote, auth, resp)
                except NetPayError:
                    self._window_failed(auth)
                    raise
                self._after_payment(auth.currency)
                return opened
            err = http.error_from_response(resp)
            if isinstance(err, CoinBusy) and busy_retries < BUSY_RETRIES:
                busy_retries += 1
                self.sleep(http.retry_after_s(resp, BUSY_WAIT_CAP_S))
                continue  # the same header: nothing was accepted
            self._window_failed(auth)
            if (
                isinstance(err, AlreadySpent | WrongAmount)
                and err.index is not None
                and err.payword is not None
                and headers_issued < PAY_ATTEMPTS
            ):
                self._resync(auth.ecoin_id, err)
                # The same window: its amount was counted with the first header.
                auth = self._authorize_window(
                    url,
                    units,
                    max_amount_minor,
                    charge=None,
                    record=True,
                    quote=quote,
                    spend=False,
                )
                headers_issued += 1
                continue
            raise err

    def _window_failed(self, auth: WindowAuthorization) -> None:
        assert auth.window_id is not None
        self.store.change_window(auth.window_id, WindowEvent.REFUSED, now_ms=self.clock.now_ms())

    def _window_accepted(
        self, quote: _Quote, auth: WindowAuthorization, resp: http.HttpResponse
    ) -> WindowView:
        """Check the vendor's window against the header; keep its handle."""
        assert auth.window_id is not None
        obj = _window_json(resp, "window")
        coin = self.store.coin(auth.ecoin_id)
        problems = []
        if obj.get("vendor_id") != auth.vendor_id:
            problems.append("vendor")
        if obj.get("ecoin_id") != auth.ecoin_id:
            problems.append("ecoin id")
        if _int_field(obj, "window_from") != auth.from_index:
            problems.append("window_from")
        if _int_field(obj, "window_top") != auth.to_index:
            problems.append("window_top")
        if _int_field(obj, "units") != auth.units:
            problems.append("units")
        if _int_field(obj, "unit_value") != coin.unit_value_minor:
            problems.append("unit value")
        if obj.get("currency") != coin.currency:
            problems.append("currency")
        words_left = _int_field(obj, "words_left", 0, auth.units)
        epoch = _int_field(obj, "epoch")
        expires_at_ms = _int_field(obj, "expires_at_ms")
        if expires_at_ms <= self.clock.now_ms():
            problems.append("expiry")
        if problems:
            raise SignatureInvalid(
                "the vendor's window does not match the header: " + ", ".join(problems)
            )
        handle = http.set_cookie_value(resp, WINDOW_COOKIE)
        if handle is None:
            raise Malformed(f"the vendor set no {WINDOW_COOKIE} cookie")
        try:
            if len(b64url_decode(handle, max_len=64)) != _HANDLE_BYTES:
                raise Malformed("window handle is not 32 bytes")
        except Malformed:
            raise Malformed(
                f"the vendor's {WINDOW_COOKIE} cookie is not 32 bytes in base64url"
            ) from None
        view = self.store.window_opened(
            auth.window_id,
            epoch=epoch,
            expires_at_ms=expires_at_ms,
            handle=handle,
            consumed_index=auth.to_index - words_left,
        )
        log.info(
            "opened a window of %d words at %s (coin %s, words (%d, %d])",
            auth.units,
            auth.vendor_id,
            auth.ecoin_id,
            auth.from_index,
            auth.to_index,
        )
        return view

    def close_window(self, url: str) -> WindowCreditView:
        """Close the wallet's window at ``url``'s vendor; the WindowCredit is verified and kept."""
        self.warnings = []
        origin = origin_of(url)
        found = self.store.windows_at(origin, states=(WindowState.OPEN, WindowState.UNUSABLE))
        if not found:
            raise NotFound(f"no open window at {origin}")
        return self._close(found[0], url)

    def _close(self, window: WindowView, url: str) -> WindowCreditView:
        handle = self.store.window_handle(window.window_id)
        now_ms = self.clock.now_ms()
        if handle is None:  # pragma: no cover - open windows always have one
            return WindowCreditView(
                self.store.change_window(window.window_id, WindowEvent.VANISHED, now_ms=now_ms),
                None,
            )
        resp = http.post(
            self.session,
            _window_url(url, close=True),
            {"Accept": _JSON, "Cookie": f"{WINDOW_COOKIE}={handle}"},
        )
        if resp.status != 200:
            err = http.error_from_response(resp)
            if resp.status in (402, 404, 409, 410):
                self._warn(
                    f"the vendor {window.vendor_id} has no open window for this handle any "
                    f"more ({err.code}): it closed it itself, and its credit goes to the broker"
                )
                return WindowCreditView(
                    self.store.change_window(window.window_id, WindowEvent.VANISHED, now_ms=now_ms),
                    None,
                )
            raise err
        obj = _window_json(resp, "window credit")
        raw = obj.get("window_credit")
        if not isinstance(raw, str):
            raise Malformed("the vendor's answer has no window_credit")
        envelope_bytes = b64url_decode(raw, max_len=16 * 1024)
        try:
            env = pb.Envelope.FromString(envelope_bytes)
        except DecodeError:
            raise SignatureInvalid("window credit is no Envelope") from None
        quote_cert, cached = self._certificate(window.vendor_id, url, fresh=False)
        try:
            credit = open_envelope(env, pb.WindowCredit, quote_cert.public_key)
        except SignatureInvalid:
            if not cached:
                raise
            fresh, _ = self._certificate(window.vendor_id, url, fresh=True)
            credit = open_envelope(env, pb.WindowCredit, fresh.public_key)
        assert window.epoch is not None
        check_window_credit(
            credit,
            vendor_id=window.vendor_id,
            ecoin_id=window.ecoin_id,
            epoch=window.epoch,
            window_from=window.window_from,
            window_top=window.window_top,
            consumed_at_least=self.store.window(window.window_id).consumed_index,
        )
        refund = obj.get("refund_units")
        if refund is not None and refund != credit.refund_units:
            raise SignatureInvalid("refund_units differs from the signed window credit")
        known = self.store.window(window.window_id).consumed_index
        if credit.consumed_index > known:
            self._warn(
                f"the vendor counts {credit.consumed_index - known} words consumed from the "
                "window that no receipt in this wallet covers"
            )
        view = self.store.change_window(
            window.window_id,
            WindowEvent.CREDITED,
            now_ms=now_ms,
            credit=credit,
            credit_envelope=envelope_bytes,
        )
        log.info(
            "closed the window at %s: %d words refunded", window.vendor_id, credit.refund_units
        )
        return WindowCreditView(view, credit)

    def windows(self) -> list[WindowView]:
        """Every window the wallet opened, oldest first."""
        return self.store.windows()

    def open_windows(self) -> list[WindowView]:
        """The windows clicks can still use (open, not expired)."""
        now_ms = self.clock.now_ms()
        return [w for w in self.store.windows(states=(WindowState.OPEN,)) if w.live(now_ms)]

    @staticmethod
    def _header_int(resp: http.HttpResponse, name: str) -> int | None:
        value = resp.headers.get(name, "").strip()
        return int(value) if value.isdigit() and len(value) <= 10 else None

    def _quote(self, url: str, resp: http.HttpResponse, max_amount_minor: int) -> _Quote:
        raw = resp.headers.get("WWW-Authenticate")
        if not raw:
            raise Malformed("the vendor answered 402 without a NetPay challenge")
        challenge = parse_challenge(raw)
        st = self.store.settings()
        if st.broker_id is None:
            raise PreconditionFailed("this wallet has no broker: run `netpay wallet register`")
        if challenge.broker != st.broker_id:
            raise PermissionDenied(
                f"the vendor names broker {challenge.broker!r}; this wallet trusts {st.broker_id!r}"
            )
        if challenge.amount_minor > max_amount_minor:
            price = Money(challenge.amount_minor, challenge.currency)
            raise LimitExceeded(
                f"price {price} is above the cap of {max_amount_minor} minor units (--max-amount)"
            )
        cert, cached = self._certificate(challenge.realm, url, fresh=False)
        return _Quote(url, challenge, cert, cached)

    def _certificate(
        self, vendor_id: str, url: str, *, fresh: bool
    ) -> tuple[pb.VendorCertificate, bool]:
        """The vendor's verified certificate, whose web origin must be the URL's."""
        st = self.store.settings()
        assert st.broker_public_key is not None and st.broker_id is not None
        now_ms = self.clock.now_ms()
        if not fresh:
            stored = self.store.certificate(
                vendor_id, fetched_after_ms=now_ms - CERTIFICATE_CACHE_S * 1000
            )
            if stored is not None:
                try:
                    cert = open_envelope(
                        pb.Envelope.FromString(stored),
                        pb.VendorCertificate,
                        st.broker_public_key,
                    )
                    check_certificate(
                        cert, vendor_id=vendor_id, broker_id=st.broker_id, now_ms=now_ms
                    )
                    check_origin(url, cert.web_origin)
                    return cert, True
                except (NetPayError, DecodeError):
                    pass  # moved or stale: ask the broker
        envelope = self._broker().get_vendor_certificate(vendor_id)
        cert = open_envelope(envelope, pb.VendorCertificate, st.broker_public_key)
        check_certificate(cert, vendor_id=vendor_id, broker_id=st.broker_id, now_ms=now_ms)
        self.store.save_certificate(
            vendor_id,
            envelope.SerializeToString(),
            valid_until_ms=cert.valid_until_ms,
            now_ms=now_ms,
        )
        check_origin(url, cert.web_origin)
        return cert, False

    def _issue(
        self, quote: _Quote, *, charge: BridgeCharge | None = None, spend: bool = True
    ) -> tuple[Allocation, str]:
        """Allocate a fresh range and build its header (the index moves now).

        The price counts against the reader's limits in that transaction
        (``spend=False``: a header re-issued for a click already counted).
        """
        st = self.store.settings()
        ch = quote.challenge
        alloc = self._allocate(
            ch.currency,
            lambda: self.store.allocate(
                amount_minor=ch.amount_minor,
                currency=ch.currency,
                realm=ch.realm,
                url=quote.url,
                now_ms=self.clock.now_ms(),
                skew_ms=st.max_skew_s * 1000,
                charge=charge,
                spend=spend,
            ),
        )
        word = self.store.word(alloc.coin.ecoin_id, alloc.index)
        header = format_authorization(
            Credentials(
                ecoin_id=alloc.coin.ecoin_id,
                prev=alloc.prev,
                index=alloc.index,
                payword=word,
                holder=alloc.coin.last_vendor,
            )
        )
        threshold = GAP_WARN_FRACTION * st.max_gap_units
        outstanding = alloc.outstanding_words
        if outstanding >= threshold:
            # Headers used by another client (curl) were never seen accepted
            # here; the broker's latest known index settles those below it.
            self._settle_from_broker(alloc.coin.ecoin_id)
            outstanding = self.store.outstanding_words(alloc.coin.ecoin_id) - (
                alloc.index - alloc.prev
            )
        if outstanding >= threshold:
            self._warn(
                f"coin {alloc.coin.ecoin_id}: {outstanding} words are in headers "
                f"not seen accepted; a vendor refuses a gap above {st.max_gap_units} words"
            )
        return alloc, header

    def _settle_from_broker(self, ecoin_id: str) -> None:
        """Settle the headers at or below the broker's latest known word of the coin.

        The broker's word is checked against the wallet's own chain; when it
        is above the wallet's index (a copy of the wallet spent), the wallet
        moves up to it. Best effort: an unreachable broker changes nothing.
        """
        try:
            status = self._broker().get_coin(self._token(), ecoin_id)
        except NetPayError as err:
            log.debug("cannot ask the broker about coin %s: %s", ecoin_id, err.detail)
            return
        coin = self.store.coin(ecoin_id)
        latest = status.latest_index
        if 0 < latest <= coin.n and secrets.compare_digest(
            self.store.word(ecoin_id, latest), status.latest_word
        ):
            self.store.resync(ecoin_id, latest)

    def _resync(self, ecoin_id: str, err: NetPayError) -> None:
        """Move up to the vendor's index, only if its payword is this coin's word there."""
        assert err.index is not None and err.payword is not None
        coin = self.store.coin(ecoin_id)
        if err.index > coin.n or not secrets.compare_digest(
            self.store.word(ecoin_id, err.index), err.payword
        ):
            raise type(err)(
                f"{err.detail} (the vendor's payword for index {err.index} is not this "
                "coin's: not moving the wallet)",
                index=err.index,
            )
        if self.store.resync(ecoin_id, err.index):
            self._warn(f"coin {ecoin_id} was spent up to {err.index} elsewhere; paying from there")

    def _accepted(self, quote: _Quote, alloc: Allocation, resp: http.HttpResponse) -> ReadResult:
        ch = quote.challenge
        receipt: pb.Receipt | None = None
        receipt_error: NetPayError | None = None
        try:
            raw = self._receipt_bytes(resp)
            receipt = self._verify_receipt(quote, alloc, pb.Envelope.FromString(raw))
            self.store.record_receipt(
                receipt, envelope=raw, url=quote.url, now_ms=self.clock.now_ms()
            )
        except (NetPayError, DecodeError) as exc:
            receipt = None
            receipt_error = (
                exc if isinstance(exc, NetPayError) else SignatureInvalid("receipt is no Envelope")
            )
            self._warn(f"the vendor's receipt is not valid: {receipt_error.detail}")
        vendor_balance = resp.headers.get(_BALANCE_HEADER, "").strip()
        coin = self.store.coin(alloc.coin.ecoin_id)
        return ReadResult(
            url=quote.url,
            status=resp.status,
            body=resp.body,
            content_type=resp.content_type,
            amount_paid_minor=ch.amount_minor,
            currency=ch.currency,
            receipt=receipt,
            receipt_error=receipt_error,
            ecoin_id=coin.ecoin_id,
            balance_words=coin.words_left,
            vendor_balance_words=(
                int(vendor_balance)
                if vendor_balance.isdigit() and len(vendor_balance) <= 10
                else None
            ),
            warnings=tuple(self.warnings),
        )

    @staticmethod
    def _receipt_bytes(resp: http.HttpResponse) -> bytes:
        raw = resp.headers.get(_RECEIPT_HEADER)
        if not raw:
            raise SignatureInvalid("the vendor sent no NetPay-Receipt")
        return b64url_decode(raw.strip(), max_len=16 * 1024)

    def _open_receipt(self, quote: _Quote, env: pb.Envelope) -> pb.Receipt:
        """The receipt, signed by the key the broker certified for the vendor."""
        cert = quote.certificate
        try:
            return open_envelope(env, pb.Receipt, cert.public_key)
        except SignatureInvalid:
            if not quote.from_cache:
                raise
            # The cached certificate may predate a new vendor key: ask the broker.
            cert, _ = self._certificate(quote.challenge.realm, quote.url, fresh=True)
            return open_envelope(env, pb.Receipt, cert.public_key)

    def _verify_receipt(self, quote: _Quote, alloc: Allocation, env: pb.Envelope) -> pb.Receipt:
        receipt = self._open_receipt(quote, env)
        check_receipt(
            receipt,
            vendor_id=quote.challenge.realm,
            ecoin_id=alloc.coin.ecoin_id,
            from_index=alloc.prev,
            to_index=alloc.index,
            amount_minor=quote.challenge.amount_minor,
            currency=quote.challenge.currency,
        )
        return receipt

    def _warn(self, message: str) -> None:
        log.debug("warning: %s", message)
        self.warnings.append(message)
