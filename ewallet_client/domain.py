"""The client wallet's rules: coin states, coin choice, statement checks.

Plain code: no grpc, flask or sqlalchemy here. The store and the use cases in
:mod:`ewallet_client.wallet` call these functions; every change of a coin's
state goes through :func:`transition`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from netpay.encoding import is_loopback_host
from netpay.errors import (
    Insufficient,
    InvalidArgument,
    PermissionDenied,
    PreconditionFailed,
    SignatureInvalid,
)
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "WINDOW_CLOSE_REASONS",
    "CoinEvent",
    "CoinState",
    "CoinView",
    "WindowEvent",
    "WindowState",
    "check_certificate",
    "check_origin",
    "check_receipt",
    "check_touchstone",
    "check_window_credit",
    "check_window_receipt",
    "choose_coin",
    "origin_of",
    "transition",
    "usable",
    "window_transition",
]


class CoinState(StrEnum):
    """A coin in the wallet.

    ``pending``: the chain is made and stored, BuyCoin not (yet) confirmed —
    the seed is kept so that a sale the broker made is never lost.
    ``active``: the touchstone is verified; the coin can pay.
    ``abandoned``: the broker refused the sale (final; nothing was sold).
    """

    PENDING = "pending"
    ACTIVE = "active"
    ABANDONED = "abandoned"


class CoinEvent(StrEnum):
    SOLD = "sold"  # BuyCoin answered with a touchstone that verifies
    REFUSED = "refused"  # BuyCoin refused the sale for good


_TRANSITIONS: dict[tuple[CoinState, CoinEvent], CoinState] = {
    (CoinState.PENDING, CoinEvent.SOLD): CoinState.ACTIVE,
    (CoinState.PENDING, CoinEvent.REFUSED): CoinState.ABANDONED,
}


def transition(state: CoinState, event: CoinEvent) -> CoinState:
    """The one transition function of a wallet coin; final states never move."""
    try:
        return _TRANSITIONS[(state, event)]
    except KeyError:
        raise PreconditionFailed(f"a {state.value} coin cannot be {event.value}") from None


@dataclass(frozen=True)
class CoinView:
    """What the wallet knows about one coin (no secrets)."""

    ecoin_id: str
    state: CoinState
    n: int
    unit_value_minor: int
    currency: str
    index: int  # highest index ever put in a header
    accepted_index: int  # highest index a vendor accepted (with a verified receipt)
    expires_at_ms: int | None
    last_vendor: str | None
    created_at_ms: int

    @property
    def words_left(self) -> int:
        return self.n - self.index

    @property
    def value_minor(self) -> int:
        return self.n * self.unit_value_minor

    @property
    def value_left_minor(self) -> int:
        return self.words_left * self.unit_value_minor

    def to_json(self) -> dict[str, object]:
        return {
            "ecoin_id": self.ecoin_id,
            "state": self.state.value,
            "n": self.n,
            "unit_value": self.unit_value_minor,
            "currency": self.currency,
            "value_minor": self.value_minor,
            "index": self.index,
            "accepted_index": self.accepted_index,
            "words_left": self.words_left,
            "value_left_minor": self.value_left_minor,
            "expires_at_ms": self.expires_at_ms,
            "last_vendor": self.last_vendor,
        }


def usable(coin: CoinView, now_ms: int, skew_ms: int) -> bool:
    """Active and not within ``skew_ms`` of its expiry (vendors stop then)."""
    return (
        coin.state is CoinState.ACTIVE
        and coin.expires_at_ms is not None
        and coin.expires_at_ms - skew_ms > now_ms
    )


def choose_coin(
    coins: Sequence[CoinView],
    *,
    amount_minor: int,
    currency: str,
    realm: str,
    now_ms: int,
    skew_ms: int,
    words: int | None = None,
    windowed_elsewhere: frozenset[str] = frozenset(),
) -> tuple[CoinView, int]:
    """The coin that pays ``amount_minor`` and the number of words it takes.

    Same currency, a unit value that divides the amount, enough words left,
    not expired. A coin with an open window at another vendor comes last
    (paying elsewhere hands it off and closes that window), then a coin the
    vendor already holds (``last_vendor == realm``) comes first, then the one
    that expires first. With ``words`` (a window), the coin must have that
    many words left whatever the amount (the amount is the price a window
    click will pay, so the unit value must divide it).
    """
    if amount_minor <= 0:
        raise InvalidArgument("amount must be positive")
    live = [c for c in coins if usable(c, now_ms, skew_ms) and c.currency == currency]
    if not live:
        raise Insufficient(f"no usable {currency} coin in the wallet (netpay wallet buy)")
    dividing = [c for c in live if amount_minor % c.unit_value_minor == 0]
    if not dividing:
        raise Insufficient(f"no {currency} coin has a unit value that divides {amount_minor}")
    if words is not None:
        enough = [c for c in dividing if c.words_left >= words]
        if not enough:
            raise Insufficient(f"no {currency} coin has {words} words left for a window")
    else:
        enough = [c for c in dividing if c.words_left >= amount_minor // c.unit_value_minor]
        if not enough:
            raise Insufficient(f"no {currency} coin has {amount_minor} minor units left")
    enough.sort(
        key=lambda c: (
            c.ecoin_id in windowed_elsewhere,
            c.last_vendor != realm,
            c.expires_at_ms or 0,
            c.created_at_ms,
            c.ecoin_id,
        )
    )
    best = enough[0]
    return best, words if words is not None else amount_minor // best.unit_value_minor


def check_touchstone(
    touchstone: pb.Touchstone,
    *,
    broker_id: str,
    ecoin_id: str,
    root: bytes,
    n: int,
    unit_value_minor: int,
    currency: str,
    owner: str | None,
    now_ms: int,
) -> None:
    """A verified touchstone must state exactly the coin the wallet asked for."""
    problems = []
    if touchstone.broker_id != broker_id:
        problems.append("broker id")
    if touchstone.ecoin_id != ecoin_id:
        problems.append("ecoin id")
    if touchstone.root != root:
        problems.append("root")
    if touchstone.n != n:
        problems.append("n")
    if touchstone.unit_value_minor != unit_value_minor:
        problems.append("unit value")
    if touchstone.currency != currency:
        problems.append("currency")
    if touchstone.wallet_kind != pb.WALLET_KIND_CLIENT_SIDE:
        problems.append("wallet kind")
    if owner and touchstone.owner != owner:
        problems.append("owner")
    if touchstone.expires_at_ms <= now_ms:
        problems.append("expiry")
    if problems:
        raise SignatureInvalid("touchstone does not match the purchase: " + ", ".join(problems))


def check_certificate(
    cert: pb.VendorCertificate, *, vendor_id: str, broker_id: str, now_ms: int
) -> None:
    if cert.vendor_id != vendor_id:
        raise SignatureInvalid(f"certificate names {cert.vendor_id[:40]!r}, not {vendor_id!r}")
    if cert.broker_id != broker_id:
        raise SignatureInvalid("certificate is from another broker")
    if len(cert.public_key) != 32:
        raise SignatureInvalid("certificate public key is not 32 bytes")
    if cert.valid_until_ms <= now_ms:
        raise SignatureInvalid(f"certificate of {vendor_id} has expired")


def check_receipt(
    receipt: pb.Receipt,
    *,
    vendor_id: str,
    ecoin_id: str,
    from_index: int,
    to_index: int,
    amount_minor: int,
    currency: str,
) -> None:
    """A receipt must cover exactly the payment the wallet made.

    Its ``void_from`` (the vendor's index before the payment) can be anywhere at or
    below the ``prev`` the wallet sent: the wallet cannot know the vendor's index,
    only that a payment never starts below it. A receipt without one (signed
    before revision 1.1) has no void words.
    """
    problems = []
    if receipt.vendor_id != vendor_id:
        problems.append("vendor")
    if receipt.ecoin_id != ecoin_id:
        problems.append("ecoin id")
    if receipt.from_index != from_index or receipt.to_index != to_index:
        problems.append(
            f"range ({receipt.from_index}, {receipt.to_index}] != ({from_index}, {to_index}]"
        )
    if receipt.HasField("void_from") and receipt.void_from > from_index:
        problems.append(f"void_from {receipt.void_from} is above prev {from_index}")
    if receipt.amount_minor != amount_minor:
        problems.append("amount")
    if receipt.currency != currency:
        problems.append("currency")
    if len(receipt.item_id) > 256:
        problems.append("item id too long")
    if problems:
        raise SignatureInvalid("receipt does not match the payment: " + "; ".join(problems))


class WindowState(StrEnum):
    """A cookie-cache window the wallet opened at one vendor.

    ``opening``: the range (from, top] is allocated and the header may have
    been sent; ``open``: the vendor answered with the window and its handle;
    ``unusable``: the vendor refused a click from it (closed, expired, not
    enough words) — it can still be closed for its credit; ``closed``: the
    vendor's WindowCredit is verified and stored; ``gone``: the vendor knows
    no open window for the handle (it closed it itself: expired or handed off;
    its credit travels to the broker, which refunds it); ``failed``: the
    vendor refused to open it (the range is void words).
    """

    OPENING = "opening"
    OPEN = "open"
    UNUSABLE = "unusable"
    CLOSED = "closed"
    GONE = "gone"
    FAILED = "failed"


class WindowEvent(StrEnum):
    ACCEPTED = "accepted"  # the vendor answered 200 with the window
    REFUSED = "refused"  # the vendor refused to open it
    CLICK_REFUSED = "click_refused"  # a click from the window got a 402
    CREDITED = "credited"  # closed: a verified WindowCredit
    VANISHED = "vanished"  # the vendor no longer knows it as open


_WINDOW_TRANSITIONS: dict[tuple[WindowState, WindowEvent], WindowState] = {
    (WindowState.OPENING, WindowEvent.ACCEPTED): WindowState.OPEN,
    (WindowState.OPENING, WindowEvent.REFUSED): WindowState.FAILED,
    (WindowState.OPEN, WindowEvent.CLICK_REFUSED): WindowState.UNUSABLE,
    (WindowState.OPEN, WindowEvent.CREDITED): WindowState.CLOSED,
    (WindowState.UNUSABLE, WindowEvent.CREDITED): WindowState.CLOSED,
    (WindowState.OPEN, WindowEvent.VANISHED): WindowState.GONE,
    (WindowState.UNUSABLE, WindowEvent.VANISHED): WindowState.GONE,
}


def window_transition(state: WindowState, event: WindowEvent) -> WindowState:
    """The one transition function of a wallet window; final states never move."""
    try:
        return _WINDOW_TRANSITIONS[(state, event)]
    except KeyError:
        raise PreconditionFailed(f"a {state.value} window cannot be {event.value}") from None


def check_window_receipt(
    receipt: pb.Receipt,
    *,
    vendor_id: str,
    ecoin_id: str,
    epoch: int,
    window_from: int,
    window_top: int,
    unit_value_minor: int,
    currency: str,
    max_amount_minor: int,
) -> None:
    """A receipt for a click paid from a window: inside it, and the right amount.

    Its ``void_from`` is the previous click's ``to``, which is its own ``from``;
    only the window's first click (``from`` at the window's bottom) may have void
    words, those the payment that opened the window skipped (at or below the
    bottom: the wallet cannot know where the vendor's index was).
    """
    problems = []
    if receipt.vendor_id != vendor_id:
        problems.append("vendor")
    if receipt.ecoin_id != ecoin_id:
        problems.append("ecoin id")
    if receipt.epoch != epoch:
        problems.append("epoch")
    if not window_from <= receipt.from_index < receipt.to_index <= window_top:
        problems.append(
            f"range ({receipt.from_index}, {receipt.to_index}] is not inside the window "
            f"({window_from}, {window_top}]"
        )
    if receipt.HasField("void_from") and (
        receipt.void_from > receipt.from_index
        or (receipt.from_index > window_from and receipt.void_from != receipt.from_index)
    ):
        problems.append(
            f"void_from {receipt.void_from} does not fit the window click from {receipt.from_index}"
        )
    elif receipt.amount_minor != (receipt.to_index - receipt.from_index) * unit_value_minor:
        problems.append("amount is not the words consumed times the unit value")
    if receipt.amount_minor > max_amount_minor:
        problems.append(f"amount above the cap of {max_amount_minor}")
    if receipt.currency != currency:
        problems.append("currency")
    if len(receipt.item_id) > 256:
        problems.append("item id too long")
    if problems:
        raise SignatureInvalid("window receipt does not match the window: " + "; ".join(problems))


WINDOW_CLOSE_REASONS = frozenset({"closed", "expired", "handoff"})


def check_window_credit(
    credit: pb.WindowCredit,
    *,
    vendor_id: str,
    ecoin_id: str,
    epoch: int,
    window_from: int,
    window_top: int,
    consumed_at_least: int,
) -> None:
    """A WindowCredit must close exactly this window and refund the unconsumed rest.

    ``consumed_at_least`` is the highest index the wallet's own receipts show
    consumed: a vendor cannot give back words it signed receipts for.
    """
    problems = []
    if credit.vendor_id != vendor_id:
        problems.append("vendor")
    if credit.ecoin_id != ecoin_id:
        problems.append("ecoin id")
    if credit.epoch != epoch:
        problems.append("epoch")
    if credit.window_top != window_top:
        problems.append(f"top {credit.window_top} != {window_top}")
    if not max(window_from, consumed_at_least) <= credit.consumed_index <= window_top:
        problems.append(
            f"consumed index {credit.consumed_index} outside "
            f"[{max(window_from, consumed_at_least)}, {window_top}]"
        )
    elif credit.refund_units != window_top - credit.consumed_index:
        problems.append("refund is not top - consumed")
    if credit.reason not in WINDOW_CLOSE_REASONS:
        problems.append("reason")
    if problems:
        raise SignatureInvalid("window credit does not match the window: " + "; ".join(problems))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """``scheme://host:port`` of an http(s) URL, lower case, explicit port."""
    if len(url) > 8192:
        raise InvalidArgument("URL longer than 8192 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidArgument(f"bad URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise InvalidArgument("only http and https URLs can be paid")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidArgument("URL has no host")
    if port is None:
        port = _DEFAULT_PORTS[scheme]
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def check_origin(url: str, certificate_origin: str) -> None:
    """Pay only the web origin the broker certified, and HTTPS outside loopback."""
    mine = origin_of(url)
    try:
        theirs = origin_of(certificate_origin)
    except InvalidArgument:
        raise PermissionDenied("the vendor certificate has no usable web origin") from None
    if mine != theirs:
        raise PermissionDenied(
            f"{mine} is not the web origin the broker certified for this vendor ({theirs})"
        )
    host = urlsplit(url).hostname or ""
    if urlsplit(url).scheme.lower() != "https" and not is_loopback_host(host.lower()):
        raise PermissionDenied("refusing to pay over plain HTTP outside loopback")
