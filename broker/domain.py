"""The broker's domain: coin custody and the double-entry ledger. No I/O.

Coin custody (protocol.md, "Coin custody: one holder per epoch") is one
explicit state enum, :class:`CoinState`, with a ``frozen`` flag beside it,
and ONE function, :func:`transition`, through which every custody change of
a coin passes. The rules that decide *which* change a request asks for are
pure functions here too (:func:`decide_acquire`, :func:`check_acquire_proof`,
:func:`check_index_advance`, :func:`handoff_is_repeat`,
:func:`reclaim_is_repeat`, :func:`latest_known_word`); the services call them
inside one unit of work and storage writes the result with a compare-and-set.

Money moves only as a balanced :class:`Transaction`: its entries sum to zero
in every currency, asserted when it is made and again before it is written.
"""

from __future__ import annotations

import enum
import hmac
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace

from netpay.chain import WORD_BYTES, verify_word
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    CoinBusy,
    Expired,
    Insufficient,
    InvalidArgument,
    LimitExceeded,
    PreconditionFailed,
    Revoked,
)
from netpay.limits import Limits

__all__ = [
    "DEMO_FUNDING_OWNER",
    "FINAL_STATES",
    "AccountKind",
    "AccountRef",
    "Acquire",
    "AcquireDecision",
    "BeginRecall",
    "CheckpointIndex",
    "ClaimIndex",
    "CoinIndexView",
    "CoinRecordView",
    "CoinState",
    "CustodyEvent",
    "DrawWindow",
    "EpochOpening",
    "EpochView",
    "Expire",
    "FinishRecall",
    "Freeze",
    "HandOff",
    "IndexedWord",
    "IssueHandOffGrant",
    "LedgerEntry",
    "Reclaim",
    "RenewLease",
    "Transaction",
    "Unfreeze",
    "WindowRequest",
    "WordVerifier",
    "allowed_events",
    "allowed_window_units",
    "assert_balanced",
    "check_acquire_proof",
    "check_can_draw",
    "check_index_advance",
    "decide_acquire",
    "effective_state",
    "handoff_is_repeat",
    "latest_known_word",
    "proof_bound_units",
    "reclaim_is_repeat",
    "sums_by_currency",
    "transition",
]


# -- custody ------------------------------------------------------------------


class CoinState(enum.StrEnum):
    """Custody state of a coin at the broker. EXPIRED is final."""

    FREE = "free"
    HELD = "held"
    RECALLING = "recalling"
    EXPIRED = "expired"


FINAL_STATES = frozenset({CoinState.EXPIRED})


class EpochOpening(enum.StrEnum):
    """How an epoch of the custody log was opened."""

    ACQUIRE = "acquire"
    HANDOFF = "handoff"
    RECLAIM = "reclaim"
    RECALL = "recall"  # the holder sent its final CoinIndex to a recall
    FORCED = "forced"  # the recall's deadline passed: the epoch was force-closed


@dataclass(frozen=True)
class IndexedWord:
    """``(i, w[i])``: units ``1..i`` of a coin are spent and ``word`` proves it."""

    index: int
    word: bytes

    def __post_init__(self) -> None:
        assert self.index >= 0, self.index
        assert len(self.word) == WORD_BYTES, len(self.word)


@dataclass(frozen=True)
class CoinRecordView:
    """What the broker knows about one coin's custody (a snapshot of its row)."""

    ecoin_id: str
    n: int
    unit_value_minor: int
    expires_at_ms: int
    state: CoinState
    frozen: bool
    holder: str | None
    epoch: int
    # The latest known word: max(current epoch's base, newest acknowledged checkpoint).
    latest: IndexedWord
    lease_expires_ms: int | None = None
    # The newest HandOffGrant issued for the current epoch, if any.
    grant_epoch: int | None = None
    grant_to_vendor: str | None = None
    grant_expires_ms: int | None = None

    @property
    def ecoin_bytes(self) -> bytes:
        return bytes.fromhex(self.ecoin_id)

    def holds(self, vendor_id: str) -> bool:
        """True when ``vendor_id`` holds the current epoch."""
        return self.state is CoinState.HELD and self.holder == vendor_id


@dataclass(frozen=True)
class EpochView:
    """One row of the custody log."""

    epoch: int
    holder: str
    base: IndexedWord
    opened_by: EpochOpening
    opened_from: str | None  # the previous holder, for a hand-off
    end: IndexedWord | None = None
    # A force-closed epoch ends at an index whose word the broker never saw.
    forced_end: int | None = None

    @property
    def end_index(self) -> int | None:
        return self.end.index if self.end is not None else self.forced_end


@dataclass(frozen=True)
class CoinIndexView:
    """A parsed, signature-checked CoinIndex statement."""

    ecoin_id: str
    epoch: int
    at: IndexedWord
    vendor_id: str
    to_vendor: str
    issued_at_ms: int


# Events: one per kind of custody change. ``transition`` is the only place
# that turns an event into a new coin record.


@dataclass(frozen=True)
class Acquire:
    """A FREE coin is granted to ``vendor_id`` (epoch + 1, base = latest)."""

    vendor_id: str
    now_ms: int
    lease_expires_ms: int


@dataclass(frozen=True)
class RenewLease:
    """The holder of ``epoch`` repeats an acquisition: the lease is renewed."""

    vendor_id: str
    epoch: int
    lease_expires_ms: int


@dataclass(frozen=True)
class IssueHandOffGrant:
    """The broker lets ``to_vendor`` take ``epoch`` from the holder."""

    to_vendor: str
    epoch: int
    expires_at_ms: int


@dataclass(frozen=True)
class CheckpointIndex:
    """The holder of ``epoch`` reports ``at`` (at or above the latest word)."""

    vendor_id: str
    epoch: int
    at: IndexedWord
    lease_expires_ms: int


@dataclass(frozen=True)
class HandOff:
    """``epoch`` closes at ``at`` and ``to_vendor`` opens ``epoch + 1`` there."""

    from_vendor: str
    to_vendor: str
    epoch: int
    at: IndexedWord
    now_ms: int
    lease_expires_ms: int


@dataclass(frozen=True)
class Reclaim:
    """The holder closes ``epoch`` at ``at`` and opens ``epoch + 1`` itself."""

    vendor_id: str
    epoch: int
    at: IndexedWord
    now_ms: int
    lease_expires_ms: int


@dataclass(frozen=True)
class DrawWindow:
    """The holder of ``epoch`` draws a server-side window: ``at`` becomes the latest word.

    Refused without a live lease at ``now_ms`` and once a HandOffGrant was
    issued for ``epoch``; the lease is not renewed by a draw.
    """

    vendor_id: str
    epoch: int
    at: IndexedWord
    now_ms: int
    busy_retry_after_s: int = 5


@dataclass(frozen=True)
class ClaimIndex:
    """An accepted claim of the open ``epoch`` reaches ``at``: a checkpoint that
    does not renew the lease (protocol.md, "Redemption")."""

    vendor_id: str
    epoch: int
    at: IndexedWord


@dataclass(frozen=True)
class BeginRecall:
    """A forced acquisition: ``to_vendor``, which was given a HandOffGrant for
    ``epoch`` and could not complete the hand-off, recalls the coin. The holder's
    lease is no longer renewed; the recall completes by ``deadline_ms``."""

    to_vendor: str
    epoch: int
    now_ms: int
    deadline_ms: int


@dataclass(frozen=True)
class FinishRecall:
    """The recall completes: ``epoch`` ends at ``at`` (the holder's final CoinIndex)
    or, ``forced``, at an index past the latest word whose word nobody showed;
    ``to_vendor`` opens ``epoch + 1`` with ``at`` as its base."""

    to_vendor: str
    epoch: int
    at: IndexedWord
    now_ms: int
    lease_expires_ms: int
    forced: bool


@dataclass(frozen=True)
class Freeze:
    """Loss reported: no new custody, holders refuse the coin."""


@dataclass(frozen=True)
class Unfreeze:
    """The loss report is withdrawn."""


@dataclass(frozen=True)
class Expire:
    """The coin is past ``expires_at``: it takes no custody any more (final)."""

    now_ms: int


CustodyEvent = (
    Acquire
    | RenewLease
    | IssueHandOffGrant
    | CheckpointIndex
    | ClaimIndex
    | BeginRecall
    | FinishRecall
    | HandOff
    | Reclaim
    | DrawWindow
    | Freeze
    | Unfreeze
    | Expire
)

# Which events each state accepts; anything else is refused.
_ALLOWED: dict[CoinState, frozenset[type[CustodyEvent]]] = {
    CoinState.FREE: frozenset({Acquire, Freeze, Unfreeze, Expire}),
    CoinState.HELD: frozenset(
        {
            RenewLease,
            IssueHandOffGrant,
            CheckpointIndex,
            ClaimIndex,
            BeginRecall,
            HandOff,
            Reclaim,
            DrawWindow,
            Freeze,
            Unfreeze,
            Expire,
        }
    ),
    # A forced acquisition moved the coin here: it only finishes the recall,
    # learns a higher word (a claim, the holder's last checkpoint), expires or
    # changes its frozen flag.
    CoinState.RECALLING: frozenset({FinishRecall, ClaimIndex, Freeze, Unfreeze, Expire}),
    CoinState.EXPIRED: frozenset(),
}


def allowed_events(state: CoinState) -> frozenset[type[CustodyEvent]]:
    return _ALLOWED[state]


def _refuse_new_custody(coin: CoinRecordView, now_ms: int) -> None:
    if now_ms >= coin.expires_at_ms:
        raise Expired("the coin has expired")
    if coin.frozen:
        raise Revoked("the coin is frozen")


def _require_holder(coin: CoinRecordView, vendor_id: str, epoch: int) -> None:
    if coin.epoch != epoch:
        raise PreconditionFailed(f"epoch {epoch} is not the current epoch {coin.epoch}")
    if coin.holder != vendor_id:
        raise PreconditionFailed(f"{vendor_id} does not hold epoch {epoch}")


def transition(coin: CoinRecordView, event: CustodyEvent) -> CoinRecordView:
    """The new record after ``event``; every custody change goes through here.

    Raises :class:`PreconditionFailed` for an event the state does not allow
    (final states never move) or whose epoch/holder does not match, and
    :class:`Expired` / :class:`Revoked` for new custody of an expired or
    frozen coin.
    """
    if type(event) not in _ALLOWED[coin.state]:
        raise PreconditionFailed(
            f"{type(event).__name__} is not allowed for a {coin.state.value} coin"
        )
    match event:
        case Acquire(vendor_id=vendor_id, now_ms=now_ms, lease_expires_ms=lease):
            _refuse_new_custody(coin, now_ms)
            new = replace(
                coin,
                state=CoinState.HELD,
                holder=vendor_id,
                epoch=coin.epoch + 1,
                latest=latest_known_word(coin.latest, None),
                lease_expires_ms=lease,
                grant_epoch=None,
                grant_to_vendor=None,
                grant_expires_ms=None,
            )
        case RenewLease(vendor_id=vendor_id, epoch=epoch, lease_expires_ms=lease):
            _require_holder(coin, vendor_id, epoch)
            new = replace(coin, lease_expires_ms=max(lease, coin.lease_expires_ms or 0))
        case IssueHandOffGrant(to_vendor=to_vendor, epoch=epoch, expires_at_ms=expires):
            if coin.epoch != epoch:
                raise PreconditionFailed(f"epoch {epoch} is not the current epoch {coin.epoch}")
            if to_vendor == coin.holder:
                raise PreconditionFailed("a hand-off grant cannot name the holder")
            new = replace(
                coin, grant_epoch=epoch, grant_to_vendor=to_vendor, grant_expires_ms=expires
            )
        case CheckpointIndex(vendor_id=vendor_id, epoch=epoch, at=at, lease_expires_ms=lease):
            _require_holder(coin, vendor_id, epoch)
            _require_at_or_above(coin, at)
            new = replace(
                coin,
                latest=latest_known_word(coin.latest, at),
                lease_expires_ms=max(lease, coin.lease_expires_ms or 0),
            )
        case ClaimIndex(vendor_id=vendor_id, epoch=epoch, at=at):
            _require_holder(coin, vendor_id, epoch)
            new = replace(coin, latest=latest_known_word(coin.latest, at))
        case BeginRecall(to_vendor=to_vendor, epoch=epoch, now_ms=now_ms, deadline_ms=deadline):
            if coin.epoch != epoch:
                raise PreconditionFailed(f"epoch {epoch} is not the current epoch {coin.epoch}")
            if to_vendor == coin.holder:
                raise PreconditionFailed("the holder cannot recall its own coin")
            if coin.grant_epoch != epoch or coin.grant_to_vendor != to_vendor:
                raise PreconditionFailed(
                    "a forced acquisition follows a failed hand-off: acquire without force first"
                )
            _refuse_new_custody(coin, now_ms)
            new = replace(coin, state=CoinState.RECALLING, grant_expires_ms=deadline)
        case FinishRecall(
            to_vendor=to_vendor,
            epoch=epoch,
            at=at,
            now_ms=now_ms,
            lease_expires_ms=lease,
            forced=forced,
        ):
            if coin.epoch != epoch or coin.grant_to_vendor != to_vendor:
                raise PreconditionFailed(f"{to_vendor} is not recalling epoch {epoch}")
            _refuse_new_custody(coin, now_ms)
            if forced:
                if at != coin.latest:
                    raise PreconditionFailed("a forced recall starts at the latest known word")
                if coin.grant_expires_ms is None or now_ms < coin.grant_expires_ms:
                    raise PreconditionFailed("the holder's lease may still be live")
            else:
                _require_at_or_above(coin, at)
            new = _open_epoch(coin, to_vendor, at, lease)
        case HandOff(
            from_vendor=from_vendor,
            to_vendor=to_vendor,
            epoch=epoch,
            at=at,
            now_ms=now_ms,
            lease_expires_ms=lease,
        ):
            _require_holder(coin, from_vendor, epoch)
            if to_vendor == from_vendor:
                raise PreconditionFailed("a hand-off must name another vendor")
            _refuse_new_custody(coin, now_ms)
            _require_at_or_above(coin, at)
            new = _open_epoch(coin, to_vendor, at, lease)
        case Reclaim(
            vendor_id=vendor_id, epoch=epoch, at=at, now_ms=now_ms, lease_expires_ms=lease
        ):
            _require_holder(coin, vendor_id, epoch)
            _refuse_new_custody(coin, now_ms)
            _require_at_or_above(coin, at)
            new = _open_epoch(coin, vendor_id, at, lease)
        case DrawWindow(
            vendor_id=vendor_id, epoch=epoch, at=at, now_ms=now_ms, busy_retry_after_s=busy
        ):
            check_can_draw(coin, vendor_id, epoch, now_ms, busy_retry_after_s=busy)
            if at.index <= coin.latest.index:
                raise PreconditionFailed("a window must move the latest known index up")
            new = replace(coin, latest=at)
        case Freeze():
            new = replace(coin, frozen=True)
        case Unfreeze():
            new = replace(coin, frozen=False)
        case Expire(now_ms=now_ms):
            if now_ms < coin.expires_at_ms:
                raise PreconditionFailed("the coin has not expired yet")
            new = replace(coin, state=CoinState.EXPIRED, lease_expires_ms=None)
    _check_invariants(coin, new)
    return new


def check_can_draw(
    coin: CoinRecordView, vendor_id: str, epoch: int, now_ms: int, *, busy_retry_after_s: int
) -> None:
    """A server-side window may be drawn only by the holder of ``epoch`` with a live lease,
    for a coin that is not expired nor frozen, and never after a HandOffGrant for ``epoch``.
    """
    if DrawWindow not in _ALLOWED[coin.state]:
        raise PreconditionFailed(f"a {coin.state.value} coin takes no windows")
    _require_holder(coin, vendor_id, epoch)
    _refuse_new_custody(coin, now_ms)
    if coin.grant_epoch == epoch:
        raise CoinBusy(
            "the coin is being handed to another vendor; no more windows in this epoch",
            retry_after_s=busy_retry_after_s,
        )
    if coin.lease_expires_ms is None or coin.lease_expires_ms <= now_ms:
        raise PreconditionFailed("the lease has lapsed: Checkpoint first")


def _open_epoch(
    coin: CoinRecordView, holder: str, base: IndexedWord, lease_expires_ms: int
) -> CoinRecordView:
    return replace(
        coin,
        state=CoinState.HELD,
        holder=holder,
        epoch=coin.epoch + 1,
        latest=latest_known_word(base, None),
        lease_expires_ms=lease_expires_ms,
        grant_epoch=None,
        grant_to_vendor=None,
        grant_expires_ms=None,
    )


def _require_at_or_above(coin: CoinRecordView, at: IndexedWord) -> None:
    if at.index < coin.latest.index:
        raise PreconditionFailed(
            f"index {at.index} is below the latest known index {coin.latest.index}"
        )


def _check_invariants(old: CoinRecordView, new: CoinRecordView) -> None:
    assert new.ecoin_id == old.ecoin_id and new.n == old.n
    assert new.epoch in (old.epoch, old.epoch + 1), (old.epoch, new.epoch)
    assert new.latest.index >= old.latest.index, (old.latest.index, new.latest.index)
    assert new.latest.index <= new.n, (new.latest.index, new.n)
    assert new.state is not CoinState.HELD or new.holder is not None
    assert old.state not in FINAL_STATES


def latest_known_word(base: IndexedWord, checkpoint: IndexedWord | None) -> IndexedWord:
    """The current epoch's base or the newest acknowledged checkpoint, whichever is higher."""
    if checkpoint is None or checkpoint.index < base.index:
        return base
    return checkpoint


def effective_state(coin: CoinRecordView, now_ms: int) -> CoinState:
    """The state to report: a coin past ``expires_at`` is EXPIRED."""
    if coin.state is not CoinState.EXPIRED and now_ms >= coin.expires_at_ms:
        return CoinState.EXPIRED
    return coin.state


# -- custody rules --------------------------------------------------------------

WordVerifier = Callable[[bytes, int, bytes, int, bytes, int], bool]


def proof_bound_units(limits: Limits, unit_value_minor: int) -> int:
    """How far above the latest known word a proof or a CoinIndex may lie."""
    assert unit_value_minor >= 1
    return limits.acquire_bound_units(limits.max_click_amount_minor // unit_value_minor)


def check_acquire_proof(
    coin: CoinRecordView,
    proof_index: int,
    proof_word: bytes,
    bound_units: int,
    *,
    verify: WordVerifier = verify_word,
) -> None:
    """The reader's pending payment ``(j, w[j])`` proves the caller is being paid.

    ``latest < j <= n`` and ``j - latest <= bound_units`` are checked before
    any hashing; then ``w[j]`` must hash down to the latest known word.
    """
    latest = coin.latest
    if proof_index <= latest.index:
        raise AlreadySpent(
            f"index {proof_index} is spent; the latest known index is {latest.index}",
            index=latest.index,
            payword=latest.word,
        )
    if proof_index > coin.n:
        raise Insufficient(f"the coin has {coin.n} units, the proof names {proof_index}")
    if proof_index - latest.index > bound_units:
        raise LimitExceeded(
            f"the proof lies {proof_index - latest.index} units above the latest known "
            f"word; at most {bound_units}"
        )
    if not verify(
        coin.ecoin_bytes, latest.index, latest.word, proof_index, proof_word, bound_units
    ):
        raise BadPayword("the proof word does not hash down to the latest known word")


def check_index_advance(
    coin: CoinRecordView,
    at: IndexedWord,
    bound_units: int,
    *,
    verify: WordVerifier = verify_word,
) -> None:
    """A holder's CoinIndex is at or above the latest known word and hashes down to it.

    Equal to the latest known word it must carry the same word (zero hash
    steps); above it, the step count is bounded before hashing.
    """
    latest = coin.latest
    if at.index < latest.index:
        raise PreconditionFailed(
            f"index {at.index} is below the latest known index {latest.index}",
            index=latest.index,
            payword=latest.word,
        )
    if at.index == latest.index:
        if not hmac.compare_digest(at.word, latest.word):
            raise BadPayword("the word differs from the latest known word at the same index")
        return
    if at.index > coin.n:
        raise Insufficient(f"the coin has {coin.n} units, the index is {at.index}")
    if at.index - latest.index > bound_units:
        raise LimitExceeded(
            f"the index lies {at.index - latest.index} units above the latest known word; "
            f"at most {bound_units}"
        )
    if not verify(coin.ecoin_bytes, latest.index, latest.word, at.index, at.word, bound_units):
        raise BadPayword("the word does not hash down to the latest known word")


class AcquireDecision(enum.Enum):
    """What an acceptable AcquireCoin does."""

    RENEW = "renew"  # the caller holds the current epoch: the original grant again
    GRANT = "grant"  # the coin is FREE: epoch + 1 for the caller
    HANDOFF = "handoff"  # another vendor holds it: a HandOffGrant
    RECALL = "recall"  # force: begin, or go on with, the caller's recall of the coin


def decide_acquire(
    coin: CoinRecordView,
    caller: str,
    now_ms: int,
    proof_index: int,
    proof_word: bytes,
    *,
    bound_units: int,
    force: bool = False,
    busy_retry_after_s: int = 5,
    verify: WordVerifier = verify_word,
    grant_proof: bool = False,
) -> AcquireDecision:
    """Decide an AcquireCoin (protocol.md, "Coin custody", step 1).

    ``grant_proof``: the caller proved itself with a checked WalletGrant for
    this coin (server-side wallets) instead of ``(proof_index, proof_word)``,
    which are then not looked at.
    """
    if effective_state(coin, now_ms) is CoinState.EXPIRED:
        raise Expired("the coin has expired")
    if coin.frozen:
        raise Revoked("the coin is frozen")
    if coin.holds(caller):
        return AcquireDecision.RENEW
    if coin.state is CoinState.RECALLING:
        if coin.grant_to_vendor == caller:
            return AcquireDecision.RECALL
        raise CoinBusy("the coin is being recalled", retry_after_s=busy_retry_after_s)
    if not grant_proof:
        check_acquire_proof(coin, proof_index, proof_word, bound_units, verify=verify)
    if coin.state is CoinState.FREE:
        return AcquireDecision.GRANT
    assert coin.state is CoinState.HELD and coin.holder is not None
    return AcquireDecision.RECALL if force else AcquireDecision.HANDOFF


def handoff_is_repeat(
    coin: CoinRecordView, current: EpochView, caller: str, index: CoinIndexView
) -> bool:
    """True when this RecordHandoff already took effect: it opened the current epoch."""
    return (
        coin.holds(caller)
        and coin.epoch == index.epoch + 1
        and current.epoch == coin.epoch
        and current.opened_by is EpochOpening.HANDOFF
        and current.opened_from == index.vendor_id
        # The base is the CoinIndex, or the broker's higher word for a server-side
        # coin whose drawn window never reached the holder (services._effective_at).
        and (current.base == index.at or current.base.index > index.at.index)
    )


def reclaim_is_repeat(
    coin: CoinRecordView, current: EpochView, caller: str, epoch: int, index: CoinIndexView
) -> bool:
    """True when this Reclaim already took effect: it opened the current epoch."""
    return (
        coin.holds(caller)
        and coin.epoch == epoch + 1
        and current.epoch == coin.epoch
        and current.opened_by is EpochOpening.RECLAIM
        and current.opened_from == caller
        and (current.base == index.at or current.base.index > index.at.index)
    )


@dataclass(frozen=True)
class WindowRequest:
    """A DrawWindow as the spending rules see it."""

    units: int
    latest_index: int
    n: int
    max_window_units: int
    grant_max_units: int
    grant_drawn_units: int


def allowed_window_units(req: WindowRequest) -> int:
    """The units a server-side window may release: the one place spending limits live.

    ``1 <= units <= max_window_units``, no more than the coin has left
    (``insufficient``) and no more than the WalletGrant still allows
    (``limit_exceeded``). The reader's own daily limit (netpay.spending) is
    checked by the service with the day's counter, a compare-and-set.
    """
    if req.units < 1:
        raise InvalidArgument("a window has at least 1 unit")
    if req.units > req.max_window_units:
        raise LimitExceeded(f"a window has at most {req.max_window_units} units")
    left = req.n - req.latest_index
    if req.units > left:
        raise Insufficient(f"the coin has {left} words left, the window asks {req.units}")
    grant_left = req.grant_max_units - req.grant_drawn_units
    if req.units > grant_left:
        raise LimitExceeded(f"the wallet grant allows {max(grant_left, 0)} more units")
    return req.units


# -- ledger ---------------------------------------------------------------------

DEMO_FUNDING_OWNER = "bank:demo-funding"


class AccountKind(enum.StrEnum):
    READER_BANK = "reader_bank"  # a reader's account at the (demo) bank
    BROKER_FLOAT = "broker_float"  # money the broker holds for outstanding coins
    VENDOR_PAYABLE = "vendor_payable"  # redeemed, owed to a vendor until paid out
    VENDOR_BANK = "vendor_bank"  # a vendor's account at the (demo) bank
    READER_REFUND = "reader_refund"  # owed back to a reader (window credits, refunds)
    BROKER_LOSS = "broker_loss"  # the broker's losses (disputes); negative = lost
    EXTERNAL = "external"  # outside the books: the demo bank's funding source


@dataclass(frozen=True)
class AccountRef:
    kind: AccountKind
    owner: str  # reader id, "broker", or the external source's name
    currency: str

    @classmethod
    def reader(cls, reader_id: str, currency: str) -> AccountRef:
        return cls(AccountKind.READER_BANK, reader_id, currency)

    @classmethod
    def broker_float(cls, currency: str) -> AccountRef:
        return cls(AccountKind.BROKER_FLOAT, "broker", currency)

    @classmethod
    def demo_funding(cls, currency: str) -> AccountRef:
        return cls(AccountKind.EXTERNAL, DEMO_FUNDING_OWNER, currency)

    @classmethod
    def vendor_payable(cls, vendor_id: str, currency: str) -> AccountRef:
        return cls(AccountKind.VENDOR_PAYABLE, vendor_id, currency)

    @classmethod
    def vendor_bank(cls, vendor_id: str, currency: str) -> AccountRef:
        return cls(AccountKind.VENDOR_BANK, vendor_id, currency)

    @classmethod
    def reader_refund(cls, reader_id: str, currency: str) -> AccountRef:
        return cls(AccountKind.READER_REFUND, reader_id, currency)

    @classmethod
    def broker_loss(cls, currency: str) -> AccountRef:
        return cls(AccountKind.BROKER_LOSS, "broker", currency)


@dataclass(frozen=True)
class LedgerEntry:
    """One signed amount on one account: entries are never changed once written."""

    account: AccountRef
    amount_minor: int


@dataclass(frozen=True)
class Transaction:
    """A balanced set of entries: they sum to 0 in every currency."""

    kind: str
    idempotency_key: str
    at_ms: int
    entries: tuple[LedgerEntry, ...]

    def __post_init__(self) -> None:
        assert self.kind and self.idempotency_key
        assert len(self.entries) >= 2, "a transaction moves money between accounts"
        for entry in self.entries:
            assert isinstance(entry.amount_minor, int) and not isinstance(entry.amount_minor, bool)
            assert entry.amount_minor != 0, "zero entries are not written"
        assert_balanced(self.entries)

    @classmethod
    def transfer(
        cls,
        kind: str,
        idempotency_key: str,
        at_ms: int,
        *,
        source: AccountRef,
        destination: AccountRef,
        amount_minor: int,
    ) -> Transaction:
        """``amount_minor`` from ``source`` to ``destination`` (same currency)."""
        assert amount_minor > 0 and source.currency == destination.currency
        return cls(
            kind,
            idempotency_key,
            at_ms,
            (LedgerEntry(source, -amount_minor), LedgerEntry(destination, amount_minor)),
        )


def sums_by_currency(entries: tuple[LedgerEntry, ...]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for entry in entries:
        totals[entry.account.currency] += entry.amount_minor
    return dict(totals)


def assert_balanced(entries: tuple[LedgerEntry, ...]) -> None:
    totals = sums_by_currency(entries)
    assert all(total == 0 for total in totals.values()), f"unbalanced transaction: {totals}"
