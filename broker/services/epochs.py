"""The custody log's steps that every custody use case shares (no use case lives here).

What a holder is granted (:class:`CustodyGrantView`), where a CoinIndex
moves a coin (:func:`checked_at`, with a server-side coin's drawn words),
renewing the current epoch's lease, closing an epoch and opening the next
(:func:`switch_epoch`), and reading a signed CoinIndex. Used by
:mod:`broker.services.custody`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from broker.domain import (
    CoinIndexView,
    CoinRecordView,
    EpochOpening,
    EpochView,
    IndexedWord,
    RenewLease,
    WalletKind,
    check_index_advance,
    proof_bound_units,
    transition,
)
from broker.services.common import apply_coin, envelope, known_words
from broker.storage import Repos, StoredCoin
from netpay.chain import WORD_BYTES, verify_word
from netpay.encoding import check_ecoin_id, check_party_id
from netpay.envelope import open_envelope
from netpay.errors import Conflict, InvalidArgument, SignatureInvalid, Unauthenticated
from netpay.limits import Limits
from netpay.v1 import statements_pb2 as pb

__all__ = [
    "CustodyGrantView",
    "SignerKey",
    "bound_units",
    "caller_key",
    "checked_at",
    "current_epoch",
    "grant_view",
    "open_coin_index",
    "renew",
    "switch_epoch",
    "vendor_key_lookup",
]

# The key a CoinIndex is verified with, or how to find it from the message.
SignerKey = bytes | Callable[[pb.CoinIndex], bytes]


@dataclass(frozen=True)
class CustodyGrantView:
    ecoin_id: str
    epoch: int
    base: IndexedWord
    touchstone: pb.Envelope
    lease_ttl_s: int
    max_skew_s: int
    holder: str
    # Window-credit units of the coin on their way back to the reader.
    refund_pending_units: int = 0


def grant_view(
    repos: Repos, stored: StoredCoin, epoch: EpochView, limits: Limits
) -> CustodyGrantView:
    return CustodyGrantView(
        ecoin_id=stored.view.ecoin_id,
        epoch=epoch.epoch,
        base=epoch.base,
        touchstone=envelope(stored.touchstone),
        lease_ttl_s=limits.lease_ttl_s,
        max_skew_s=limits.max_skew_s,
        holder=epoch.holder,
        refund_pending_units=repos.redemption.pending_refund_units(stored.view.ecoin_id),
    )


def bound_units(coin: CoinRecordView, limits: Limits) -> int:
    return proof_bound_units(limits, coin.unit_value_minor)


def _effective_at(stored: StoredCoin, at: IndexedWord, limits: Limits) -> IndexedWord:
    """The holder's index, or for a server-side coin whose latest word is above it
    (a window drawn for the holder whose reply never arrived, or whose worker died
    before recording it) the broker's own latest word, once ``w[latest]`` is shown to
    hash down to the holder's word. Those drawn words are then void (refunded to the
    reader after expiry) instead of stranding the coin."""
    coin = stored.view
    if stored.wallet_kind != WalletKind.SERVER_SIDE.value or at.index >= coin.latest.index:
        return at
    steps = coin.latest.index - at.index
    if steps > bound_units(coin, limits) or not verify_word(
        coin.ecoin_bytes, at.index, at.word, coin.latest.index, coin.latest.word, steps
    ):
        return at  # the normal check refuses it
    return coin.latest


def checked_at(
    repos: Repos, stored: StoredCoin, index: CoinIndexView, limits: Limits
) -> IndexedWord:
    """The word a holder's CoinIndex moves the coin to, checked against the latest word
    (one below it is refused naming the latest index only for a genuine word)."""
    at = _effective_at(stored, index.at, limits)
    check_index_advance(
        stored.view,
        at,
        bound_units(stored.view, limits),
        known=lambda: known_words(repos, stored.view),
    )
    return at


def current_epoch(repos: Repos, coin: CoinRecordView) -> EpochView | None:
    if coin.epoch == 0:
        return None
    current = repos.coins.epoch(coin.ecoin_id, coin.epoch)
    assert current is not None, (coin.ecoin_id, coin.epoch)
    return current


def renew(repos: Repos, stored: StoredCoin, caller: str, lease_expires_ms: int) -> EpochView:
    """The holder repeats itself: its current epoch's lease is renewed."""
    coin = stored.view
    current = current_epoch(repos, coin)
    assert current is not None and current.holder == caller
    apply_coin(repos, coin, transition(coin, RenewLease(caller, coin.epoch, lease_expires_ms)))
    return current


def switch_epoch(
    repos: Repos,
    before: CoinRecordView,
    after: CoinRecordView,
    at: IndexedWord,
    how: EpochOpening,
    previous_holder: str,
    now_ms: int,
    forced_end: int | None = None,
) -> EpochView:
    """Write a hand-off, reclaim or recall: the coin, the closed epoch and the
    opened one (a forced recall closes the epoch at ``forced_end``)."""
    assert after.epoch == before.epoch + 1 and after.holder is not None
    apply_coin(repos, before, after)
    end: IndexedWord | int = at if forced_end is None else forced_end
    if not repos.coins.close_epoch(before.ecoin_id, before.epoch, end, now_ms, how):
        raise Conflict(f"epoch {before.epoch} is not open")
    opened = EpochView(
        epoch=after.epoch,
        holder=after.holder,
        base=at,
        opened_by=how,
        opened_from=previous_holder,
    )
    repos.coins.open_epoch(before.ecoin_id, opened, now_ms)
    return opened


def vendor_key_lookup(repos: Repos) -> Callable[[pb.CoinIndex], bytes]:
    """The signer's key of a CoinIndex, looked up by the vendor it names."""

    def key_for(index: pb.CoinIndex) -> bytes:
        if not 1 <= len(index.vendor_id) <= 32:
            raise SignatureInvalid("the CoinIndex names no valid vendor")
        key = repos.vendors.public_key(index.vendor_id)
        if key is None:
            raise SignatureInvalid(f"unknown signer {index.vendor_id}")
        return key

    return key_for


def caller_key(repos: Repos, caller: str) -> bytes:
    key = repos.vendors.public_key(caller)
    if key is None:
        raise Unauthenticated(f"vendor {caller} is not enrolled")
    return key


def open_coin_index(coin_index: pb.Envelope, signer_key: SignerKey) -> CoinIndexView:
    """A signed CoinIndex, verified and checked for shape."""
    msg = open_envelope(coin_index, pb.CoinIndex, signer_key)
    check_ecoin_id(msg.ecoin_id)
    check_party_id(msg.vendor_id)
    if msg.to_vendor:
        check_party_id(msg.to_vendor)
    if len(msg.payword) != WORD_BYTES:
        raise InvalidArgument(f"payword must be {WORD_BYTES} bytes")
    return CoinIndexView(
        ecoin_id=msg.ecoin_id,
        epoch=msg.epoch,
        at=IndexedWord(msg.index, msg.payword),
        vendor_id=msg.vendor_id,
        to_vendor=msg.to_vendor,
        issued_at_ms=msg.issued_at_ms,
    )
