"""What the wallet store hands out and takes in: plain frozen records, no SQL.

The repositories return these (never a row), so the use cases in
:mod:`ewallet_client.wallet` and the CLI work with values that outlive the
unit of work that read them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from ewallet_client.domain import CoinView, WindowState
from netpay.encoding import b64url_encode

__all__ = [
    "KEEP",
    "SETTINGS_FIELDS",
    "Allocation",
    "ApprovedOrigin",
    "AutoloadAgreement",
    "BridgeCharge",
    "Keep",
    "NewCoin",
    "PendingCoin",
    "Settings",
    "WindowRequest",
    "WindowView",
    "effective_caps",
]


class Keep:
    """The type of :data:`KEEP`: "leave this limit as it is"."""

    def __repr__(self) -> str:
        return "KEEP"


KEEP = Keep()


@dataclass(frozen=True)
class WindowView:
    """What the wallet knows about one window (never the handle)."""

    window_id: int
    vendor_id: str
    origin: str
    ecoin_id: str
    state: WindowState
    window_from: int
    window_top: int
    unit_value_minor: int
    currency: str
    consumed_index: int
    epoch: int | None
    expires_at_ms: int | None
    url: str
    opened_at_ms: int
    closed_at_ms: int | None
    refund_units: int | None
    close_reason: str | None
    credit: bytes | None

    @property
    def units(self) -> int:
        return self.window_top - self.window_from

    @property
    def words_left(self) -> int:
        """Words the wallet may still spend from it (0 unless open)."""
        if self.state is not WindowState.OPEN:
            return 0
        return self.window_top - self.consumed_index

    def live(self, now_ms: int) -> bool:
        """Open and not past its expiry."""
        return (
            self.state is WindowState.OPEN
            and self.expires_at_ms is not None
            and self.expires_at_ms > now_ms
        )

    def to_json(self) -> dict[str, object]:
        return {
            "window_id": self.window_id,
            "vendor_id": self.vendor_id,
            "origin": self.origin,
            "ecoin_id": self.ecoin_id,
            "state": self.state.value,
            "epoch": self.epoch,
            "window_from": self.window_from,
            "window_top": self.window_top,
            "units": self.units,
            "consumed_index": self.consumed_index,
            "words_left": self.words_left,
            "unit_value": self.unit_value_minor,
            "currency": self.currency,
            "expires_at_ms": self.expires_at_ms,
            "opened_at_ms": self.opened_at_ms,
            "closed_at_ms": self.closed_at_ms,
            "refund_units": self.refund_units,
            "close_reason": self.close_reason,
            "window_credit": None if self.credit is None else b64url_encode(self.credit),
        }


@dataclass(frozen=True)
class Settings:
    broker_addr: str | None
    broker_id: str | None
    broker_public_key: bytes | None
    reader_id: str | None
    username: str | None
    token: str | None
    token_expires_at_ms: int | None
    max_gap_units: int
    max_chain_units: int
    max_click_amount_minor: int
    max_skew_s: int


SETTINGS_FIELDS = frozenset(f.name for f in dataclasses.fields(Settings))


@dataclass(frozen=True)
class PendingCoin:
    ecoin_id: str
    request_id: str
    n: int
    unit_value_minor: int
    currency: str
    root: bytes


@dataclass(frozen=True)
class NewCoin:
    """A client-side coin made but not yet stored: its chain's seed and pebbles."""

    ecoin_id: str
    request_id: str
    seed: bytes
    n: int
    unit_value_minor: int
    currency: str
    pebbles: Mapping[int, bytes]


@dataclass(frozen=True)
class AutoloadAgreement:
    """A standing agreement: buy ``units`` words when the balance falls below ``below_minor``."""

    currency: str
    enabled: bool
    below_minor: int
    units: int
    unit_value_minor: int
    created_at_ms: int
    last_request_id: str | None
    last_attempt_at_ms: int | None
    last_ecoin_id: str | None
    last_error: str | None
    # The latest auto-load coin is still pending (BuyCoin not confirmed yet).
    pending: bool

    @property
    def value_minor(self) -> int:
        return self.units * self.unit_value_minor

    def to_json(self) -> dict[str, object]:
        return {
            "currency": self.currency,
            "enabled": self.enabled,
            "below_minor": self.below_minor,
            "units": self.units,
            "unit_value": self.unit_value_minor,
            "value_minor": self.value_minor,
            "created_at_ms": self.created_at_ms,
            "last_attempt_at_ms": self.last_attempt_at_ms,
            "last_ecoin_id": self.last_ecoin_id,
            "last_error": self.last_error,
            "pending": self.pending,
        }


@dataclass(frozen=True)
class Allocation:
    """A range ``(prev, index]`` of one coin, given to exactly one header."""

    coin: CoinView  # the coin as it was before the allocation
    prev: int
    index: int
    # Words in this coin's headers issued earlier and not seen accepted.
    outstanding_words: int
    # The window row recorded with this allocation (``allocate(window=...)``).
    window_id: int | None = None

    @property
    def amount_minor(self) -> int:
        return (self.index - self.prev) * self.coin.unit_value_minor


@dataclass(frozen=True)
class ApprovedOrigin:
    """An origin the reader approved; ``None`` caps defer to the bridge's own."""

    origin: str
    max_click_minor: int | None
    max_day_minor: int | None
    approved_at_ms: int

    def to_json(self) -> dict[str, object]:
        return {
            "origin": self.origin,
            "max_click_minor": self.max_click_minor,
            "max_day_minor": self.max_day_minor,
            "approved_at_ms": self.approved_at_ms,
        }


@dataclass(frozen=True)
class WindowRequest:
    """Allocate ``units`` words for a window rather than one click's price.

    With ``origin`` (the CLI), the window is recorded (state ``opening``) in
    the allocation's transaction; without it (the browser bridge, whose page
    gets the cookie) only the header is.
    """

    units: int
    origin: str | None = None


@dataclass(frozen=True)
class BridgeCharge:
    """Charge an allocation to an approved origin's budget, in the same transaction.

    ``max_click_minor`` and ``max_day_minor`` are the bridge's own caps; the
    origin's caps, when set and lower, win (:func:`effective_caps`).
    """

    origin: str
    day: int  # days since 1970-01-01 UTC
    max_click_minor: int
    max_day_minor: int


def effective_caps(
    origin: ApprovedOrigin, *, max_click_minor: int, max_day_minor: int
) -> tuple[int, int]:
    """(per click, per day): the lower of the bridge's caps and the origin's own."""
    click = max_click_minor
    if origin.max_click_minor is not None:
        click = min(click, origin.max_click_minor)
    day = max_day_minor
    if origin.max_day_minor is not None:
        day = min(day, origin.max_day_minor)
    return click, day
