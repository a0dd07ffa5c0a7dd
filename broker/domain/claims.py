"""Redemption rules (protocol.md, "Redemption"): when a vendor's Claim is paid.

Pure functions over plain values, no I/O: the services gather what the
broker knows about the coin (its custody epoch, the words it holds, the
spans already paid, the window credits to net) inside one unit of work,
call :func:`check_claim`, and write the outcome.

A claim spans ``(from_index, to_index]`` of one epoch and carries
``w[to_index]``. The span is tiled by its Receipts, each listed as
``(void_from, prev, to)``, and its netted window credits: each Receipt's
``(prev, to]`` is paid to the vendor, its ``(void_from, prev]`` is void, and
the credits' ``(consumed_index, window_top]`` go back to the reader. Void
words are paid to nobody and go back to the reader at expiry. The whole span
is then "paid": no later claim may overlap it, in this epoch or any other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker.domain.coins import EpochView, IndexedWord
from broker.domain.custody import WordVerifier
from netpay.chain import verify_word
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    InvalidArgument,
    LimitExceeded,
    PreconditionFailed,
)

__all__ = [
    "MAX_RANGES_PER_CLAIM",
    "ClaimOutcome",
    "ClaimView",
    "CreditView",
    "PaidSpan",
    "RangeView",
    "check_claim",
    "nearest_known_at_or_below",
]

MAX_RANGES_PER_CLAIM = 100_000


@dataclass(frozen=True)
class RangeView:
    """One Receipt as a claim lists it, ``(void_from, from_index, to_index)``: it
    covers ``(void_from, to_index]`` of the claim, of which only ``(from_index,
    to_index]`` is paid. ``void_from`` is ``None`` for a Receipt signed before
    revision 1.1 (read as ``from_index``: no void words)."""

    from_index: int
    to_index: int
    item_id: str
    time_ms: int
    void_from: int | None = None

    @property
    def units(self) -> int:
        return self.to_index - self.from_index

    @property
    def start(self) -> int:
        """Where the Receipt's tile of the claim starts."""
        return self.from_index if self.void_from is None else self.void_from


@dataclass(frozen=True)
class ClaimView:
    """A parsed, signature-checked Claim."""

    vendor_id: str
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    word: bytes
    ranges: tuple[RangeView, ...]


@dataclass(frozen=True)
class CreditView:
    """A parsed, signature-checked WindowCredit."""

    vendor_id: str
    ecoin_id: str
    epoch: int
    window_top: int
    consumed_index: int
    refund_units: int


@dataclass(frozen=True)
class PaidSpan:
    """A span of a coin already claimed (any epoch)."""

    epoch: int
    from_index: int
    to_index: int


@dataclass(frozen=True)
class ClaimOutcome:
    """An acceptable claim: what is paid and what is netted."""

    paid_units: int
    refund_units: int
    void_units: int
    credits: tuple[CreditView, ...]  # the credits this claim nets
    hash_steps: int
    # Units also paid to the other vendor of a force-closed epoch: paid from the
    # broker-loss account (the reader re-spent them), with the claims they overlap.
    loss_units: int = 0
    overlapped: tuple[PaidSpan, ...] = ()


def nearest_known_at_or_below(known: Sequence[IndexedWord], index: int) -> IndexedWord | None:
    """The known word with the highest index at or below ``index``."""
    best: IndexedWord | None = None
    for word in known:
        if word.index <= index and (best is None or word.index > best.index):
            best = word
    return best


def _check_shape(claim: ClaimView, n: int) -> None:
    if not claim.from_index < claim.to_index <= n:
        raise InvalidArgument(
            f"a claim spans (from, to] with from < to <= n = {n}; "
            f"got ({claim.from_index}, {claim.to_index}]"
        )
    if len(claim.ranges) > MAX_RANGES_PER_CLAIM:
        raise LimitExceeded(f"a claim lists at most {MAX_RANGES_PER_CLAIM} receipt ranges")


@dataclass(frozen=True)
class _Tile:
    """A piece of a claim's span: a Receipt's ``(void_from, to]`` (void up to
    ``paid_from``), or a netted window credit's ``(consumed, top]``."""

    start: int
    paid_from: int
    end: int
    receipt: bool
    # Untiled words (void, as in 1.0) may come right before a tile that states no
    # void words of its own: a Receipt with void_from = prev or without void_from
    # (signed before revision 1.1), or a window credit (the words skipped below a
    # window no click was paid from: a WindowCredit does not say where its window
    # starts). A Receipt that states void words starts where the tile before it
    # ends: the vendor's index stood there.
    after_gap: bool

    def describe(self) -> str:
        if not self.receipt:
            return f"the window credit ({self.start}, {self.end}]"
        return f"the receipt ({self.start}, {self.paid_from}, {self.end})"


def _tiles(
    claim: ClaimView, credits: Sequence[CreditView]
) -> tuple[list[_Tile], tuple[CreditView, ...]]:
    """The claim's tiles (its Receipts and netted credits) in order, and the credits."""
    netted = tuple(c for c in credits if claim.from_index < c.window_top <= claim.to_index)
    tiles: list[_Tile] = []
    for r in claim.ranges:
        if r.from_index >= r.to_index:
            raise InvalidArgument(f"an empty or reversed range ({r.from_index}, {r.to_index}]")
        if r.start > r.from_index:
            raise InvalidArgument(
                f"a range's void_from {r.start} is above its from index {r.from_index}"
            )
        tiles.append(_Tile(r.start, r.from_index, r.to_index, True, r.start == r.from_index))
    for c in netted:
        if c.consumed_index + c.refund_units != c.window_top:
            raise InvalidArgument("a window credit's refund is not window_top - consumed_index")
        if c.refund_units:
            tiles.append(_Tile(c.consumed_index, c.consumed_index, c.window_top, False, True))
    if not tiles:
        raise InvalidArgument("a claim covers at least one receipt range or window credit")
    tiles.sort(key=lambda t: (t.start, t.end))
    return tiles, netted


def _over_void(a: _Tile, b: _Tile) -> bool:
    """Does one Receipt's paid part overlap the other's void words?"""
    if not (a.receipt and b.receipt):
        return False
    return max(a.paid_from, b.start) < min(a.end, b.paid_from) or max(b.paid_from, a.start) < min(
        b.end, a.paid_from
    )


def _check_tiling(claim: ClaimView, tiles: Sequence[_Tile]) -> None:
    """The tiles cover ``(from, to]`` in order without overlap. A Receipt paid over
    another's void words is :class:`AlreadySpent` (the service keeps it as a
    dispute), whatever else is wrong; any other overlap, or untiled words anywhere
    else, is invalid."""
    reach = tiles[0]
    problem: str | None = None
    for tile in tiles[1:]:
        if tile.start < reach.end:
            if _over_void(reach, tile):
                raise AlreadySpent(
                    f"the claim is paid for void words: {tile.describe()} and "
                    f"{reach.describe()} overlap"
                )
            problem = problem or (
                f"the claim's ranges and window credits overlap: {reach.describe()} "
                f"and {tile.describe()}"
            )
        elif tile.start > reach.end and not tile.after_gap:
            problem = problem or (
                f"({reach.end}, {tile.start}] of the claim is in no receipt's "
                "(void_from, to] nor any window credit"
            )
        if tile.end > reach.end:
            reach = tile
    if problem is not None:
        raise InvalidArgument(problem)
    if tiles[0].start != claim.from_index:
        raise InvalidArgument(
            f"the claim starts at {claim.from_index} but its first range at {tiles[0].start}"
        )
    if reach.end != claim.to_index:
        raise InvalidArgument(
            f"the claim ends at {claim.to_index} but its last range at {reach.end}"
        )


def check_claim(
    claim: ClaimView,
    *,
    n: int,
    epoch: EpochView | None,
    current_epoch: int,
    credits: Sequence[CreditView],
    paid: Sequence[PaidSpan],
    known: Sequence[IndexedWord],
    hash_budget: int,
    epochs: Mapping[int, EpochView] | None = None,
    verify: WordVerifier = verify_word,
) -> ClaimOutcome:
    """Is ``claim`` payable? Checks in the order of protocol.md, all before hashing.

    - the caller held the epoch, and ``base <= from < to <= end`` (``<= n``
      for the current, open epoch);
    - the span is tiled in order, without overlap, by the Receipts' ``(void_from,
      to]`` and the netted credits' ``(consumed, top]``, from ``from`` to ``to``
      (untiled words, void, only before a tile that states no void words); a
      Receipt paid over another's void words is :class:`AlreadySpent`;
    - the span overlaps nothing already paid (:class:`AlreadySpent`), except
      inside ``(base, forced end]`` of a force-closed epoch and the next one:
      those units are paid from the broker-loss account (``loss_units``);
    - ``w[to]`` hashes down to the nearest word the broker holds at or
      below ``from``, in at most ``hash_budget`` steps (else
      :class:`LimitExceeded`: try again in a smaller batch).
    """
    _check_shape(claim, n)
    _check_epoch(claim, epoch, current_epoch)
    tiles, netted = _tiles(claim, credits)
    _check_tiling(claim, tiles)
    loss_units, overlapped = _overlaps(claim, paid, epochs or {})
    steps = _check_word(claim, known, hash_budget, verify)
    paid_units = sum(r.units for r in claim.ranges)
    refund_units = sum(c.refund_units for c in netted)
    return ClaimOutcome(
        paid_units=paid_units,
        refund_units=refund_units,
        void_units=(claim.to_index - claim.from_index) - paid_units - refund_units,
        credits=netted,
        hash_steps=steps,
        loss_units=min(loss_units, paid_units),
        overlapped=overlapped,
    )


def _check_epoch(claim: ClaimView, epoch: EpochView | None, current_epoch: int) -> None:
    """The caller held the epoch, and ``base <= from < to <= end`` (or it is current)."""
    if epoch is None or epoch.holder != claim.vendor_id:
        raise PreconditionFailed(f"{claim.vendor_id} did not hold epoch {claim.epoch}")
    if claim.from_index < epoch.base.index:
        raise PreconditionFailed(
            f"the claim starts at {claim.from_index}, below the epoch's base {epoch.base.index}"
        )
    end_index = epoch.end_index
    if end_index is not None and claim.to_index > end_index:
        raise PreconditionFailed(
            f"the claim ends at {claim.to_index}, above the epoch's end {end_index}"
        )
    if end_index is None and epoch.epoch != current_epoch:
        raise PreconditionFailed(f"epoch {epoch.epoch} was never closed nor is it current")


def _overlaps(
    claim: ClaimView, paid: Sequence[PaidSpan], epochs: Mapping[int, EpochView]
) -> tuple[int, tuple[PaidSpan, ...]]:
    """The paid units the claim shares with spans already paid (allowed only after a
    forced recall, :func:`_overlap_allowed`), with those spans; AlreadySpent for any
    other. Its void words inside such a span cost nobody anything."""
    loss_units = 0
    overlapped: list[PaidSpan] = []
    for span in paid:
        if span.from_index < claim.to_index and claim.from_index < span.to_index:
            low = max(span.from_index, claim.from_index)
            high = min(span.to_index, claim.to_index)
            if not _overlap_allowed(span.epoch, claim.epoch, low, high, epochs):
                raise AlreadySpent(
                    f"({claim.from_index}, {claim.to_index}] overlaps ({span.from_index}, "
                    f"{span.to_index}] already claimed in epoch {span.epoch}"
                )
            loss_units += sum(
                max(0, min(r.to_index, high) - max(r.from_index, low)) for r in claim.ranges
            )
            overlapped.append(span)
    return loss_units, tuple(overlapped)


def _check_word(
    claim: ClaimView, known: Sequence[IndexedWord], hash_budget: int, verify: WordVerifier
) -> int:
    """``w[to]`` hashes down to the nearest known word at or below ``from``, within the
    budget (checked before hashing); returns the hash steps it took."""
    anchor = nearest_known_at_or_below(known, claim.from_index)
    if anchor is None:
        raise PreconditionFailed("the broker holds no word at or below the claim's start")
    steps = claim.to_index - anchor.index
    if steps > hash_budget:
        raise LimitExceeded(
            f"checking this claim takes {steps} hash steps; {hash_budget} are left in "
            "this batch: send it again in another batch"
        )
    ecoin = bytes.fromhex(claim.ecoin_id)
    if not verify(ecoin, anchor.index, anchor.word, claim.to_index, claim.word, steps):
        raise BadPayword("the claim's word does not hash down to the word the broker holds")
    return steps


def _overlap_allowed(
    epoch_a: int, epoch_b: int, low: int, high: int, epochs: Mapping[int, EpochView]
) -> bool:
    """Only inside ``(base, forced end]`` of a force-closed epoch and the next one may
    two claims overlap (protocol.md, "Redemption")."""
    first, second = sorted((epoch_a, epoch_b))
    if second != first + 1:
        return False
    closed, after = epochs.get(first), epochs.get(second)
    if closed is None or after is None or closed.forced_end is None:
        return False
    return after.base.index <= low and high <= closed.forced_end
