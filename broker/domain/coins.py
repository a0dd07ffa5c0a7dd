"""Coin custody at the broker: the state enum, the events and the ONE transition function. No I/O.

Coin custody (protocol.md, "Coin custody: one holder per epoch") is one
explicit state enum, :class:`CoinState`, with a ``frozen`` flag beside it,
and ONE function, :func:`transition`, through which every custody change of
a coin passes: it checks that the state accepts the event, hands the event
to its named step (``_acquire``, ``_hand_off``, ...) and checks the
invariants of the result. The rules that decide *which* change a request
asks for are in :mod:`broker.domain.custody`; the services call them inside
one unit of work and storage writes the result with a compare-and-set.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace

from netpay.chain import WORD_BYTES
from netpay.errors import CoinBusy, Expired, PreconditionFailed, Revoked

__all__ = [
    "FINAL_STATES",
    "Acquire",
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
    "Reclaim",
    "RenewLease",
    "Unfreeze",
    "WalletKind",
    "allowed_events",
    "check_can_draw",
    "effective_state",
    "latest_known_word",
    "transition",
]


class CoinState(enum.StrEnum):
    """Custody state of a coin at the broker. EXPIRED is final."""

    FREE = "free"
    HELD = "held"
    RECALLING = "recalling"
    EXPIRED = "expired"


FINAL_STATES = frozenset({CoinState.EXPIRED})


class WalletKind(enum.StrEnum):
    """Where a coin's chain lives: with the reader, or sealed at the broker."""

    UNSPECIFIED = "unspecified"
    CLIENT_SIDE = "client_side"
    SERVER_SIDE = "server_side"


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
        case Acquire():
            new = _acquire(coin, event)
        case RenewLease():
            new = _renew_lease(coin, event)
        case IssueHandOffGrant():
            new = _issue_handoff_grant(coin, event)
        case CheckpointIndex():
            new = _checkpoint_index(coin, event)
        case ClaimIndex():
            new = _claim_index(coin, event)
        case BeginRecall():
            new = _begin_recall(coin, event)
        case FinishRecall():
            new = _finish_recall(coin, event)
        case HandOff():
            new = _hand_off(coin, event)
        case Reclaim():
            new = _reclaim(coin, event)
        case DrawWindow():
            new = _draw_window(coin, event)
        case Freeze():
            new = replace(coin, frozen=True)
        case Unfreeze():
            new = replace(coin, frozen=False)
        case Expire():
            new = _expire(coin, event)
    _check_invariants(coin, new)
    return new


# -- the steps of transition(): one per event ------------------------------------------


def _acquire(coin: CoinRecordView, event: Acquire) -> CoinRecordView:
    _refuse_new_custody(coin, event.now_ms)
    return replace(
        coin,
        state=CoinState.HELD,
        holder=event.vendor_id,
        epoch=coin.epoch + 1,
        latest=latest_known_word(coin.latest, None),
        lease_expires_ms=event.lease_expires_ms,
        grant_epoch=None,
        grant_to_vendor=None,
        grant_expires_ms=None,
    )


def _renew_lease(coin: CoinRecordView, event: RenewLease) -> CoinRecordView:
    _require_holder(coin, event.vendor_id, event.epoch)
    return replace(coin, lease_expires_ms=max(event.lease_expires_ms, coin.lease_expires_ms or 0))


def _issue_handoff_grant(coin: CoinRecordView, event: IssueHandOffGrant) -> CoinRecordView:
    if coin.epoch != event.epoch:
        raise PreconditionFailed(f"epoch {event.epoch} is not the current epoch {coin.epoch}")
    if event.to_vendor == coin.holder:
        raise PreconditionFailed("a hand-off grant cannot name the holder")
    return replace(
        coin,
        grant_epoch=event.epoch,
        grant_to_vendor=event.to_vendor,
        grant_expires_ms=event.expires_at_ms,
    )


def _checkpoint_index(coin: CoinRecordView, event: CheckpointIndex) -> CoinRecordView:
    _require_holder(coin, event.vendor_id, event.epoch)
    _require_at_or_above(coin, event.at)
    return replace(
        coin,
        latest=latest_known_word(coin.latest, event.at),
        lease_expires_ms=max(event.lease_expires_ms, coin.lease_expires_ms or 0),
    )


def _claim_index(coin: CoinRecordView, event: ClaimIndex) -> CoinRecordView:
    _require_holder(coin, event.vendor_id, event.epoch)
    return replace(coin, latest=latest_known_word(coin.latest, event.at))


def _begin_recall(coin: CoinRecordView, event: BeginRecall) -> CoinRecordView:
    if coin.epoch != event.epoch:
        raise PreconditionFailed(f"epoch {event.epoch} is not the current epoch {coin.epoch}")
    if event.to_vendor == coin.holder:
        raise PreconditionFailed("the holder cannot recall its own coin")
    if coin.grant_epoch != event.epoch or coin.grant_to_vendor != event.to_vendor:
        raise PreconditionFailed(
            "a forced acquisition follows a failed hand-off: acquire without force first"
        )
    _refuse_new_custody(coin, event.now_ms)
    return replace(coin, state=CoinState.RECALLING, grant_expires_ms=event.deadline_ms)


def _finish_recall(coin: CoinRecordView, event: FinishRecall) -> CoinRecordView:
    if coin.epoch != event.epoch or coin.grant_to_vendor != event.to_vendor:
        raise PreconditionFailed(f"{event.to_vendor} is not recalling epoch {event.epoch}")
    _refuse_new_custody(coin, event.now_ms)
    if event.forced:
        if event.at != coin.latest:
            raise PreconditionFailed("a forced recall starts at the latest known word")
        if coin.grant_expires_ms is None or event.now_ms < coin.grant_expires_ms:
            raise PreconditionFailed("the holder's lease may still be live")
    else:
        _require_at_or_above(coin, event.at)
    return _open_epoch(coin, event.to_vendor, event.at, event.lease_expires_ms)


def _hand_off(coin: CoinRecordView, event: HandOff) -> CoinRecordView:
    _require_holder(coin, event.from_vendor, event.epoch)
    if event.to_vendor == event.from_vendor:
        raise PreconditionFailed("a hand-off must name another vendor")
    _refuse_new_custody(coin, event.now_ms)
    _require_at_or_above(coin, event.at)
    return _open_epoch(coin, event.to_vendor, event.at, event.lease_expires_ms)


def _reclaim(coin: CoinRecordView, event: Reclaim) -> CoinRecordView:
    _require_holder(coin, event.vendor_id, event.epoch)
    _refuse_new_custody(coin, event.now_ms)
    _require_at_or_above(coin, event.at)
    return _open_epoch(coin, event.vendor_id, event.at, event.lease_expires_ms)


def _draw_window(coin: CoinRecordView, event: DrawWindow) -> CoinRecordView:
    check_can_draw(
        coin,
        event.vendor_id,
        event.epoch,
        event.now_ms,
        busy_retry_after_s=event.busy_retry_after_s,
    )
    if event.at.index <= coin.latest.index:
        raise PreconditionFailed("a window must move the latest known index up")
    return replace(coin, latest=event.at)


def _expire(coin: CoinRecordView, event: Expire) -> CoinRecordView:
    if event.now_ms < coin.expires_at_ms:
        raise PreconditionFailed("the coin has not expired yet")
    return replace(coin, state=CoinState.EXPIRED, lease_expires_ms=None)


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
