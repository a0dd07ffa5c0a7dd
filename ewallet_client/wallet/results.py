"""What the wallet's use cases return: plain frozen results, ready for the CLI.

:class:`ReadResult` (a read, paid or not), :class:`Authorization` and
:class:`WindowAuthorization` (headers the bridge and ``authorize`` hand
out), :class:`AutoloadResult` (one auto-load attempt) and
:class:`WindowCreditView` (a closed window and its credit).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ewallet_client.domain import CoinView
from ewallet_client.store import WindowView
from netpay.errors import NetPayError
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "Authorization",
    "AutoloadResult",
    "ReadResult",
    "WindowAuthorization",
    "WindowCreditView",
]


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
