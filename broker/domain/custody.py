"""Custody rules: which change an AcquireCoin, a RecordHandoff or a Reclaim asks for. No I/O.

The services call these pure functions inside one unit of work, then pass
the chosen event to :func:`broker.domain.coins.transition`: how far a proof
or a CoinIndex may lie above the latest known word and whether it hashes
down to it (:func:`check_acquire_proof`, :func:`check_index_advance`), what
an acceptable acquisition does (:func:`decide_acquire`), and whether a
hand-off or a reclaim already took effect (:func:`handoff_is_repeat`,
:func:`reclaim_is_repeat`).
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Callable, Sequence

from broker.domain.coins import (
    CoinIndexView,
    CoinRecordView,
    CoinState,
    EpochOpening,
    EpochView,
    IndexedWord,
    effective_state,
)
from netpay.chain import is_genuine, seen_of, verify_word
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    CoinBusy,
    Expired,
    Insufficient,
    LimitExceeded,
    NetPayError,
    PreconditionFailed,
    Revoked,
)
from netpay.limits import Limits

__all__ = [
    "AcquireDecision",
    "KnownWords",
    "WordVerifier",
    "check_acquire_proof",
    "check_index_advance",
    "decide_acquire",
    "handoff_is_repeat",
    "proof_bound_units",
    "reclaim_is_repeat",
    "refusal_below_latest",
]

WordVerifier = Callable[[bytes, int, bytes, int, bytes, int], bool]
# Every word of the coin the broker holds (its latest, the epochs' bases and ends, the
# tops of paid claims), read only on a refusal's path.
KnownWords = Callable[[], Sequence[IndexedWord]]


def proof_bound_units(limits: Limits, unit_value_minor: int) -> int:
    """How far above the latest known word a proof or a CoinIndex may lie."""
    assert unit_value_minor >= 1
    return limits.acquire_bound_units(limits.max_click_amount_minor // unit_value_minor)


def refusal_below_latest(
    coin: CoinRecordView,
    at: IndexedWord,
    known: KnownWords,
    bound_units: int,
    refusal: type[NetPayError],
    detail: str,
) -> NetPayError:
    """The answer to a word ``at`` at or below the latest known word ``L``: ``refusal``
    naming ``L`` and its ``seen`` (never ``w[L]``) when ``at.word`` is genuine — it
    hashes down to a word the broker holds, or one it holds hashes down to it, within
    ``bound_units`` — else ``bad_payword`` naming nothing (protocol.md, "Coin
    custody", step 1). Nobody learns a word, nor an index for a made-up word.
    """
    latest = coin.latest
    words = [(w.index, w.word) for w in (latest, *known())]
    if not is_genuine(coin.ecoin_bytes, words, at.index, at.word, bound_units):
        return BadPayword("the word is not this coin's")
    return refusal(
        f"{detail}; the latest known index is {latest.index}",
        index=latest.index,
        seen=seen_of(latest.word),
    )


def check_acquire_proof(
    coin: CoinRecordView,
    proof_index: int,
    proof_word: bytes,
    bound_units: int,
    *,
    known: KnownWords = tuple,
    verify: WordVerifier = verify_word,
) -> None:
    """The reader's pending payment ``(j, w[j])`` proves the caller is being paid.

    ``latest < j <= n`` and ``j - latest <= bound_units`` are checked before
    any hashing; then ``w[j]`` must hash down to the latest known word. A spent
    ``j`` is :func:`refusal_below_latest` (``already_spent`` or ``bad_payword``).
    """
    latest = coin.latest
    # B = max(L, the current epoch's base) is L until forced bases exist (custody,
    # issue 9 item 2): a j at or below a forced base F above L answers
    # already_spent with index = F and no seen, before this check.
    if proof_index <= latest.index:
        raise refusal_below_latest(
            coin,
            IndexedWord(proof_index, proof_word),
            known,
            bound_units,
            AlreadySpent,
            f"index {proof_index} is spent",
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
    known: KnownWords = tuple,
    verify: WordVerifier = verify_word,
) -> None:
    """A holder's CoinIndex is at or above the latest known word and hashes down to it.

    Equal to the latest known word it must carry the same word (zero hash
    steps); above it, the step count is bounded before hashing. Below it:
    :func:`refusal_below_latest` (``failed_precondition`` or ``bad_payword``).
    """
    latest = coin.latest
    if at.index < latest.index:
        raise refusal_below_latest(
            coin, at, known, bound_units, PreconditionFailed, f"index {at.index} is below it"
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
    known: KnownWords = tuple,
    force: bool = False,
    busy_retry_after_s: int = 5,
    verify: WordVerifier = verify_word,
    grant_proof: bool = False,
) -> AcquireDecision:
    """Decide an AcquireCoin (protocol.md, "Coin custody", step 1).

    ``grant_proof``: the caller proved itself with a checked WalletGrant for
    this coin (server-side wallets) instead of ``(proof_index, proof_word)``,
    which are then not looked at. ``known``: the coin's words the broker holds,
    read only to answer a spent proof.
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
        check_acquire_proof(coin, proof_index, proof_word, bound_units, known=known, verify=verify)
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
