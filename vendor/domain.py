"""The vendor's coin rules, pure: no I/O, no grpc, flask or sqlalchemy.

A vendor keeps one row per coin it has ever held. The row's ``state`` is the
state of the epoch named in the row:

- ``HELD``: this vendor holds the epoch and may accept paywords while its
  lease is live;
- ``HANDING_OFF``: the vendor signed a CoinIndex for the next holder and
  accepts nothing until the broker records the hand-off (the epoch then ends,
  ``CLOSED``) or a Reclaim opens the next epoch for this vendor (``HELD``);
- ``CLOSED``: the epoch is over for this vendor. A closed epoch never moves;
  a later acquisition opens a *new* epoch (``ACQUIRED`` from ``CLOSED``).

Every state change goes through :func:`transition`. The payment rules of
protocol.md ("The HTTP payment") are the ``check_*`` functions below; all of
them run before any hashing.

A **window** (protocol.md, "Windows") is a run of words ``(window_from,
window_top]`` the reader prepaid with one payment; the vendor consumes one
price per click from it. Its state is ``OPEN`` or ``CLOSED`` and every move
goes through :func:`window_transition`; a closed window never reopens.

Redemption keeps three more stateful things, each with its enum and its one
transition function: a stored Redeem **batch** (:class:`BatchState`,
:func:`batch_transition`), a **claim** in it (:class:`ClaimStatus`,
:func:`claim_transition`) and a **refund** for returned goods
(:class:`RefundStatus`, :func:`refund_transition`).
"""

from __future__ import annotations

import enum
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from netpay.chain import WORD_BYTES, hash_down, is_genuine, seen_of
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    Expired,
    Insufficient,
    LimitExceeded,
    Malformed,
    PaymentError,
    WrongAmount,
)
from netpay.limits import Limits
from netpay.money import Money, words_for

__all__ = [
    "BatchEvent",
    "BatchState",
    "ClaimEvent",
    "ClaimStatus",
    "CloseReason",
    "CoinEvent",
    "CoinView",
    "IllegalTransition",
    "Item",
    "PaymentPlan",
    "RefundEvent",
    "RefundStatus",
    "VendorCoinState",
    "WindowClick",
    "WindowEvent",
    "WindowState",
    "WindowView",
    "batch_transition",
    "check_payment",
    "check_window_click",
    "check_window_open",
    "claim_transition",
    "lease_deadline_ms",
    "lease_is_live",
    "needs_checkpoint",
    "refund_transition",
    "resync_refusal",
    "spent_here",
    "transition",
    "verify_payword",
    "window_click_void_from",
    "window_expiry_ms",
    "window_transition",
]


class VendorCoinState(enum.Enum):
    HELD = "held"
    HANDING_OFF = "handing_off"
    CLOSED = "closed"


class CoinEvent(enum.Enum):
    """What happened to a coin; the argument of :func:`transition`."""

    ACQUIRED = "acquired"  # the broker granted a new epoch (AcquireCoin / RecordHandoff)
    PAID = "paid"  # a payword was accepted (compare-and-set on the index)
    HANDOFF_STARTED = "handoff_started"  # Vendor.HandOff signed a CoinIndex for the next holder
    RECLAIMED = "reclaimed"  # Broker.Reclaim opened the next epoch for us
    EPOCH_CLOSED = "epoch_closed"  # the broker says the epoch is no longer ours


class IllegalTransition(AssertionError):
    """A programmer error: the caller asked for a move the state machine forbids."""


_TRANSITIONS: dict[tuple[VendorCoinState | None, CoinEvent], VendorCoinState] = {
    (None, CoinEvent.ACQUIRED): VendorCoinState.HELD,
    (VendorCoinState.CLOSED, CoinEvent.ACQUIRED): VendorCoinState.HELD,
    (VendorCoinState.HELD, CoinEvent.PAID): VendorCoinState.HELD,
    (VendorCoinState.HELD, CoinEvent.HANDOFF_STARTED): VendorCoinState.HANDING_OFF,
    (VendorCoinState.HANDING_OFF, CoinEvent.RECLAIMED): VendorCoinState.HELD,
    (VendorCoinState.HELD, CoinEvent.EPOCH_CLOSED): VendorCoinState.CLOSED,
    (VendorCoinState.HANDING_OFF, CoinEvent.EPOCH_CLOSED): VendorCoinState.CLOSED,
}


def transition(state: VendorCoinState | None, event: CoinEvent) -> VendorCoinState:
    """The state after ``event``; ``None`` means the vendor has no row for the coin.

    Raises :class:`IllegalTransition` for any move not in the table (a closed
    epoch never moves, except that a new epoch may be acquired).
    """
    try:
        return _TRANSITIONS[(state, event)]
    except KeyError:
        name = state.value if state is not None else "absent"
        raise IllegalTransition(f"no transition from {name} on {event.value}") from None


@dataclass(frozen=True)
class Item:
    """A thing for sale: an article id and its price."""

    item_id: str
    price: Money


@dataclass(frozen=True)
class CoinView:
    """What the rules need to know about a coin this vendor has a row for."""

    ecoin_id: str
    epoch: int
    state: VendorCoinState
    index: int  # s: the stored (spent) index, the base at an epoch's first payment
    payword: bytes  # w[s]
    n: int
    unit_value_minor: int
    currency: str
    expires_at_ms: int
    lease_deadline_ms: int
    acknowledged_index: int  # the last index the broker acknowledged (base or checkpoint)
    max_accepted_index: int  # the highest index ever accepted here, in any epoch

    @property
    def words_left(self) -> int:
        return self.n - self.index


@dataclass(frozen=True)
class PaymentPlan:
    """A payment that passed every rule check except the hash."""

    prev: int
    index: int
    words: int


def lease_deadline_ms(sent_ms: int, lease_ttl_s: int, max_skew_s: int) -> int:
    """The holder's lease deadline: (time the request was sent) + ttl - skew."""
    return sent_ms + (lease_ttl_s - max_skew_s) * 1000


def lease_is_live(coin: CoinView, now_ms: int) -> bool:
    return coin.state is VendorCoinState.HELD and coin.lease_deadline_ms > now_ms


def check_payment(
    coin: CoinView, prev: int, index: int, item: Item, limits: Limits, now_ms: int
) -> PaymentPlan:
    """Every rule of "The HTTP payment", checked in order, before any hashing.

    ``s`` is ``coin.index``. Raises Expired, WrongCurrency, WrongAmount,
    AlreadySpent, Insufficient or BadPayword. WrongAmount and AlreadySpent name
    no index here: the caller answers them with :func:`resync_refusal`, which
    names ``s`` only for a genuine word.
    """
    if now_ms >= coin.expires_at_ms - limits.max_skew_s * 1000:
        raise Expired("the coin has expired")
    words = words_for(item.price, coin.unit_value_minor, coin.currency)
    if index - prev != words:
        raise WrongAmount(f"the price is {words} words, the payment covers {index - prev}")
    return _check_range(coin, prev, index, words, limits)


def _check_range(coin: CoinView, prev: int, index: int, words: int, limits: Limits) -> PaymentPlan:
    """The rules on ``(prev, index]`` shared by a paid click and a window."""
    s = coin.index
    if prev < s or prev < coin.max_accepted_index:
        raise AlreadySpent(f"index {prev} is already spent here")
    if index > coin.n:
        raise Insufficient(f"the coin has {coin.n - s} words left, the price is {words}")
    if index - s > words + limits.max_gap_units:
        raise BadPayword("gap too large")
    return PaymentPlan(prev=prev, index=index, words=words)


def spent_here(detail: str, coin: CoinView) -> AlreadySpent:
    """``already_spent`` naming the vendor's index ``s`` and its ``seen`` (never
    ``w[s]``), for a refusal of a word already shown genuine."""
    return AlreadySpent(detail, index=coin.index, seen=seen_of(coin.payword))


def resync_refusal(
    err: WrongAmount | AlreadySpent,
    ecoin_bytes: bytes,
    coin: CoinView,
    held: Iterable[tuple[int, bytes]],
    presented: tuple[int, bytes],
    max_steps: int,
) -> PaymentError:
    """The answer to a ``wrong_amount`` or ``already_spent`` (protocol.md, "The HTTP
    payment"): the vendor's index ``s`` and its ``seen`` only when the presented
    ``(j, w[j])`` is a genuine word of the coin — it hashes down to a word this
    vendor holds (``held``, with ``(s, w[s])``), or one it holds hashes down to it,
    within ``max_steps`` (``max_gap_units`` + the price in words) — else
    ``bad_payword`` naming nothing. A made-up word learns neither the index nor
    anything about ``w[s]``.
    """
    j, word = presented
    known = [(coin.index, coin.payword), *held]
    if not is_genuine(ecoin_bytes, known, j, word, max_steps):
        return BadPayword("payword does not verify")
    if isinstance(err, AlreadySpent):
        return spent_here(f"{err.detail}; the coin stands at {coin.index}", coin)
    return WrongAmount(err.detail, index=coin.index, seen=seen_of(coin.payword))


def needs_checkpoint(coin: CoinView, index: int, limits: Limits) -> bool:
    """True when accepting ``index`` would pass max_unreported_units unreported words."""
    return index - coin.acknowledged_index > limits.max_unreported_units


def verify_payword(ecoin_bytes: bytes, coin: CoinView, index: int, word: bytes) -> None:
    """``word`` must hash down from ``index`` to the stored ``(s, w[s])``.

    The step count was bounded by :func:`check_payment`; this is the only
    place a payment hashes.
    """
    if len(word) != WORD_BYTES or index <= coin.index:
        raise BadPayword("payword does not verify")
    if not secrets.compare_digest(hash_down(ecoin_bytes, index, word, coin.index), coin.payword):
        raise BadPayword("payword does not verify")


# -- windows -----------------------------------------------------------------------


class WindowState(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"


class WindowEvent(enum.Enum):
    """What happened to a window; the argument of :func:`window_transition`."""

    OPENED = "opened"  # a window payment was accepted (same compare-and-set as a click)
    CONSUMED = "consumed"  # a click was paid from it (compare-and-set on the consumed index)
    CLOSED = "closed"  # hand-off, expiry, the wallet, a newer window or the end of the epoch


class CloseReason(enum.Enum):
    """``WindowCredit.reason``."""

    HANDOFF = "handoff"
    EXPIRED = "expired"
    CLOSED = "closed"


_WINDOW_TRANSITIONS: dict[tuple[WindowState | None, WindowEvent], WindowState] = {
    (None, WindowEvent.OPENED): WindowState.OPEN,
    (WindowState.OPEN, WindowEvent.CONSUMED): WindowState.OPEN,
    (WindowState.OPEN, WindowEvent.CLOSED): WindowState.CLOSED,
}


def window_transition(state: WindowState | None, event: WindowEvent) -> WindowState:
    """The window's state after ``event`` (``None``: no window yet).

    Raises :class:`IllegalTransition` for any other move: a closed window
    never reopens and is never consumed.
    """
    try:
        return _WINDOW_TRANSITIONS[(state, event)]
    except KeyError:
        name = state.value if state is not None else "absent"
        raise IllegalTransition(f"no window transition from {name} on {event.value}") from None


@dataclass(frozen=True)
class WindowView:
    """A window as the rules see it: words ``(window_from, window_top]`` of one
    coin's epoch, consumed up to ``consumed_index``."""

    window_id: int
    ecoin_id: str
    epoch: int
    window_from: int
    window_top: int
    consumed_index: int
    state: WindowState
    opened_at_ms: int
    expires_at_ms: int
    unit_value_minor: int
    currency: str
    closed_at_ms: int | None = None
    close_reason: CloseReason | None = None
    credit: bytes | None = None  # serialized Envelope(WindowCredit), once closed
    # The coin's index here before the payment that opened the window (``s``):
    # the void_from of its first click's Receipt. None for a window opened before
    # revision 1.1 (its first click then has no void words).
    void_from: int | None = None

    @property
    def units(self) -> int:
        return self.window_top - self.window_from

    @property
    def words_left(self) -> int:
        return self.window_top - self.consumed_index

    def is_usable(self, now_ms: int) -> bool:
        return self.state is WindowState.OPEN and now_ms < self.expires_at_ms


@dataclass(frozen=True)
class WindowClick:
    """A click that passed the window's rules: consume ``(from_index, to_index]``."""

    from_index: int
    to_index: int
    words: int


def window_click_void_from(window: WindowView, click: WindowClick) -> int:
    """The ``void_from`` of a window click's Receipt (protocol.md, "Signed
    statements"): the previous click's ``to``, which is this click's ``from``; for
    the window's first click, the coin's index before the payment that opened it."""
    if click.from_index > window.window_from or window.void_from is None:
        return click.from_index
    return window.void_from


def check_window_open(
    coin: CoinView, prev: int, index: int, units: int, limits: Limits, now_ms: int
) -> PaymentPlan:
    """The rules of a payment that opens a window of ``units`` words.

    The same rules as :func:`check_payment` with ``j - p = m`` in place of the
    price (a header whose ``window=`` is not ``j - p`` is malformed: there is
    no price the wallet could have misread), and ``1 <= m <= max_window_units``;
    checked before any hashing.
    """
    if units < 1:
        raise Malformed("a window is at least one word")
    if units > limits.max_window_units:
        raise LimitExceeded(f"a window is at most {limits.max_window_units} words")
    if now_ms >= coin.expires_at_ms - limits.max_skew_s * 1000:
        raise Expired("the coin has expired")
    if index - prev != units:
        raise Malformed(f"window={units} but the payment covers {index - prev} words")
    return _check_range(coin, prev, index, units, limits)


def window_expiry_ms(coin: CoinView, limits: Limits, now_ms: int) -> int:
    """When a window opened now closes: after window_ttl_s, and never later
    than the coin stops being accepted (``expires_at - max_skew_s``)."""
    return min(now_ms + limits.window_ttl_s * 1000, coin.expires_at_ms - limits.max_skew_s * 1000)


def check_window_click(window: WindowView, item: Item, now_ms: int) -> WindowClick:
    """One click paid from ``window``: the price in words must fit in what is left.

    Raises Expired (closed or past its expiry), WrongCurrency / WrongAmount
    (the price in the coin's words) or Insufficient.
    """
    if not window.is_usable(now_ms):
        raise Expired("the window is closed")
    words = words_for(item.price, window.unit_value_minor, window.currency)
    if words > window.words_left:
        raise Insufficient(
            f"the window has {window.words_left} words left, the price is {words} words"
        )
    return WindowClick(window.consumed_index, window.consumed_index + words, words)


# -- redemption: batches, claims, refunds ------------------------------------------


class BatchState(enum.Enum):
    """A stored Redeem batch (``vendor_redemptions.state``)."""

    PENDING = "pending"  # stored with its exact request, not answered yet
    DONE = "done"  # the broker's reply is recorded (final)
    FAILED = "failed"  # the broker refused the whole batch (final; its words go again)


class BatchEvent(enum.Enum):
    STORED = "stored"  # built and stored before it is sent
    ANSWERED = "answered"  # the broker answered claim by claim
    REFUSED = "refused"  # the broker refused the batch whole (nothing changed there)


_BATCH_MOVES: dict[tuple[BatchState | None, BatchEvent], BatchState] = {
    (None, BatchEvent.STORED): BatchState.PENDING,
    (BatchState.PENDING, BatchEvent.ANSWERED): BatchState.DONE,
    (BatchState.PENDING, BatchEvent.REFUSED): BatchState.FAILED,
}


def batch_transition(state: BatchState | None, event: BatchEvent) -> BatchState:
    """The batch's state after ``event`` (``None``: not stored yet); DONE and
    FAILED never move. Raises :class:`IllegalTransition` otherwise."""
    try:
        return _BATCH_MOVES[(state, event)]
    except KeyError:
        name = state.value if state is not None else "absent"
        raise IllegalTransition(f"no batch transition from {name} on {event.value}") from None


class ClaimStatus(enum.Enum):
    """One claim of a batch (``vendor_claims.status``)."""

    PENDING = "pending"  # in a stored batch, not answered yet
    ACCEPTED = "accepted"  # paid (final)
    REJECTED = "rejected"  # refused for good (final)


class ClaimEvent(enum.Enum):
    BATCHED = "batched"  # stored with its batch
    ACCEPTED = "accepted"
    REJECTED = "rejected"  # the broker said "never"
    # The broker said "not now" (or refused the whole batch): the claim is
    # forgotten and its words are claimed again by a later batch.
    WITHDRAWN = "withdrawn"


_CLAIM_MOVES: dict[tuple[ClaimStatus | None, ClaimEvent], ClaimStatus | None] = {
    (None, ClaimEvent.BATCHED): ClaimStatus.PENDING,
    (ClaimStatus.PENDING, ClaimEvent.ACCEPTED): ClaimStatus.ACCEPTED,
    (ClaimStatus.PENDING, ClaimEvent.REJECTED): ClaimStatus.REJECTED,
    (ClaimStatus.PENDING, ClaimEvent.WITHDRAWN): None,
}


def claim_transition(state: ClaimStatus | None, event: ClaimEvent) -> ClaimStatus | None:
    """The claim's status after ``event``; ``None`` is "no claim": before it is
    batched, and after it is withdrawn (its row is deleted). ACCEPTED and
    REJECTED never move. Raises :class:`IllegalTransition` otherwise."""
    key = (state, event)
    if key not in _CLAIM_MOVES:
        name = state.value if state is not None else "absent"
        raise IllegalTransition(f"no claim transition from {name} on {event.value}")
    return _CLAIM_MOVES[key]


class RefundStatus(enum.Enum):
    """Where a refund is on its way to the broker (``vendor_refunds.status``)."""

    PENDING = "pending"  # stored, waiting for a batch that can carry it
    BATCHED = "batched"  # in a stored batch, waiting for the broker's answer
    ACCEPTED = "accepted"  # netted: the reader got the money back
    REJECTED = "rejected"  # final: the broker (or its claim's refusal) said no


class RefundEvent(enum.Enum):
    RECORDED = "recorded"
    BATCHED = "batched"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    REQUEUED = "requeued"  # its batch was refused whole, or its claim goes again


_REFUND_MOVES: dict[tuple[RefundStatus | None, RefundEvent], RefundStatus] = {
    (None, RefundEvent.RECORDED): RefundStatus.PENDING,
    (RefundStatus.PENDING, RefundEvent.BATCHED): RefundStatus.BATCHED,
    (RefundStatus.PENDING, RefundEvent.REJECTED): RefundStatus.REJECTED,
    (RefundStatus.BATCHED, RefundEvent.ACCEPTED): RefundStatus.ACCEPTED,
    (RefundStatus.BATCHED, RefundEvent.REJECTED): RefundStatus.REJECTED,
    (RefundStatus.BATCHED, RefundEvent.REQUEUED): RefundStatus.PENDING,
}


def refund_transition(state: RefundStatus | None, event: RefundEvent) -> RefundStatus:
    """The one transition function of a refund; a move it does not allow is a bug
    (:class:`IllegalTransition`)."""
    try:
        return _REFUND_MOVES[(state, event)]
    except KeyError:
        name = state.value if state is not None else "absent"
        raise IllegalTransition(f"no refund transition from {name} on {event.value}") from None
