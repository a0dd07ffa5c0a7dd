"""The redemption rules (broker.claims.check_claim), one rule per test, on a real chain."""

from __future__ import annotations

import pytest

from broker.domain import EpochOpening, EpochView, IndexedWord
from broker.domain.claims import (
    ClaimView,
    CreditView,
    PaidSpan,
    RangeView,
    check_claim,
    nearest_known_at_or_below,
)
from netpay.chain import Chain
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    InvalidArgument,
    LimitExceeded,
    PreconditionFailed,
)

CHAIN = Chain.make(bytes(range(16)), 100, b"\x07" * 32)
ECOIN = CHAIN.ecoin_id.hex()


def word(i: int) -> IndexedWord:
    return IndexedWord(i, CHAIN.word(i))


def epoch(no: int = 1, base: int = 0, end: int | None = None, holder: str = "v1") -> EpochView:
    return EpochView(
        epoch=no,
        holder=holder,
        base=word(base),
        opened_by=EpochOpening.ACQUIRE,
        opened_from=None,
        end=None if end is None else word(end),
    )


def claim(ranges: list[tuple[int, int]], to: int | None = None, **kw: object) -> ClaimView:
    top = ranges[-1][1] if to is None else to
    fields: dict[str, object] = {
        "vendor_id": "v1",
        "ecoin_id": ECOIN,
        "epoch": 1,
        "from_index": ranges[0][0],
        "to_index": top,
        "word": CHAIN.word(top),
        "ranges": tuple(RangeView(f, t, "item", 0) for f, t in ranges),
    }
    fields.update(kw)
    return ClaimView(**fields)  # type: ignore[arg-type]


def check(c: ClaimView, **kw: object):
    args: dict[str, object] = {
        "n": 100,
        "epoch": epoch(),
        "current_epoch": 1,
        "credits": [],
        "paid": [],
        "known": [word(0)],
        "hash_budget": 1000,
    }
    args.update(kw)
    return check_claim(c, **args)  # type: ignore[arg-type]


def test_receipt_ranges_are_paid_and_gaps_are_void() -> None:
    outcome = check(claim([(0, 5), (5, 15), (18, 20)]))
    assert (outcome.paid_units, outcome.refund_units, outcome.void_units) == (17, 0, 3)
    assert outcome.hash_steps == 20


def test_a_window_credit_covers_the_unconsumed_rest_and_is_netted() -> None:
    credit = CreditView("v1", ECOIN, 1, window_top=40, consumed_index=15, refund_units=25)
    outcome = check(claim([(0, 5), (5, 15)], to=40), credits=[credit])
    assert (outcome.paid_units, outcome.refund_units, outcome.void_units) == (15, 25, 0)
    assert outcome.credits == (credit,)


def test_a_credit_outside_the_claim_is_not_netted_by_it() -> None:
    later = CreditView("v1", ECOIN, 1, window_top=60, consumed_index=50, refund_units=10)
    assert check(claim([(0, 5)]), credits=[later]).credits == ()


def test_the_span_must_be_covered_from_its_start_to_its_end() -> None:
    with pytest.raises(InvalidArgument, match="starts at"):
        check(claim([(2, 5)], from_index=0))
    with pytest.raises(InvalidArgument, match="ends at"):
        check(claim([(0, 5)], to=9))
    with pytest.raises(InvalidArgument, match="overlap"):
        check(claim([(0, 5), (4, 9)]))
    with pytest.raises(InvalidArgument, match="empty or reversed"):
        check(claim([(0, 5), (7, 7), (7, 9)]))
    with pytest.raises(InvalidArgument):
        check(claim([(0, 5)], to_index=101))


def test_only_the_holder_of_the_epoch_inside_its_bounds_may_claim() -> None:
    with pytest.raises(PreconditionFailed, match="did not hold"):
        check(claim([(0, 5)]), epoch=epoch(holder="v2"))
    with pytest.raises(PreconditionFailed, match="did not hold"):
        check(claim([(0, 5)]), epoch=None)
    with pytest.raises(PreconditionFailed, match="below the epoch's base"):
        check(claim([(3, 8)]), epoch=epoch(base=5), known=[word(5)])
    with pytest.raises(PreconditionFailed, match="above the epoch's end"):
        check(claim([(0, 12)]), epoch=epoch(end=10), current_epoch=2)
    # A closed epoch is claimed up to its end, an open one (the current) up to n.
    assert check(claim([(0, 10)]), epoch=epoch(end=10), current_epoch=2).paid_units == 10
    assert check(claim([(0, 90)]), hash_budget=100).paid_units == 90


def test_words_already_paid_are_never_paid_again() -> None:
    paid = [PaidSpan(1, 0, 10)]
    with pytest.raises(AlreadySpent):
        check(claim([(5, 15)]), paid=paid, known=[word(0), word(10)])
    # Right after the paid span it is fine, checked from the paid span's word.
    outcome = check(claim([(10, 15)]), paid=paid, known=[word(0), word(10)])
    assert outcome.paid_units == 5 and outcome.hash_steps == 5


def test_the_word_must_hash_down_to_the_nearest_word_the_broker_holds() -> None:
    forged = claim([(0, 5)], word=CHAIN.word(6))
    with pytest.raises(BadPayword):
        check(forged)
    other_chain = Chain.make(bytes(range(16)), 100, b"\x08" * 32)
    with pytest.raises(BadPayword):
        check(claim([(0, 5)], word=other_chain.word(5)))


def test_the_hash_budget_is_checked_before_hashing() -> None:
    with pytest.raises(LimitExceeded, match="another batch"):
        check(claim([(0, 50)]), hash_budget=49)


def test_nearest_known_word() -> None:
    known = [word(0), word(10), word(30)]
    assert nearest_known_at_or_below(known, 29) == word(10)
    assert nearest_known_at_or_below(known, 30) == word(30)
    assert nearest_known_at_or_below([word(5)], 4) is None


# -- void_from (revision 1.1): the span is tiled by (void_from, to] -------------------


def tiled(tiles: list[tuple[int | None, int, int]], **kw: object) -> ClaimView:
    """A claim listing each Receipt as ``(void_from, prev, to)`` (None: from before 1.1)."""
    ranges = tuple(RangeView(p, t, "item", 0, v) for v, p, t in tiles)
    top = int(kw.pop("to_index", tiles[-1][2]))  # type: ignore[call-overload]
    start = claim([(ranges[0].start, top)], word=CHAIN.word(top), **kw)
    return ClaimView(**{**start.__dict__, "ranges": ranges})


def test_only_each_receipts_prev_to_is_paid_and_its_void_words_are_nobodys() -> None:
    outcome = check(tiled([(0, 0, 5), (5, 8, 18), (18, 18, 20)]))
    assert (outcome.paid_units, outcome.refund_units, outcome.void_units) == (17, 0, 3)
    # The first tile's void words start the claim; with a window's rest netted.
    credit = CreditView("v1", ECOIN, 1, window_top=40, consumed_index=25, refund_units=15)
    outcome = check(tiled([(2, 4, 9), (9, 12, 25)], to_index=40), credits=[credit], known=[word(0)])
    assert (outcome.paid_units, outcome.refund_units, outcome.void_units) == (18, 15, 5)


def test_a_receipt_stating_void_words_starts_where_the_tile_before_it_ends() -> None:
    """The vendor's index stood at void_from: words between the tile before and it
    are in no Receipt's (void_from, to]."""
    with pytest.raises(InvalidArgument, match=r"\(5, 7\] of the claim is in no receipt"):
        check(tiled([(0, 0, 5), (7, 8, 18)]))
    with pytest.raises(InvalidArgument, match="starts at 0 but its first range at 2"):
        check(tiled([(2, 4, 9)], from_index=0))
    with pytest.raises(InvalidArgument, match="above its from index"):
        check(tiled([(0, 0, 5), (9, 8, 18)]))


def test_untiled_words_may_come_only_before_a_tile_that_states_no_void_words() -> None:
    # A Receipt signed before 1.1 has no void_from: the words before it are void, as in
    # 1.0; the same before one that states none (void_from = prev).
    for void_from in (None, 8):
        outcome = check(tiled([(0, 0, 5), (void_from, 8, 18)]))
        assert (outcome.paid_units, outcome.void_units) == (15, 3)
    # A window no click was paid from: the words its opening skipped are void.
    credit = CreditView("v1", ECOIN, 1, window_top=40, consumed_index=12, refund_units=28)
    outcome = check(tiled([(0, 0, 5)], to_index=40), credits=[credit])
    assert (outcome.paid_units, outcome.refund_units, outcome.void_units) == (5, 28, 7)


def test_a_receipt_paid_over_another_receipts_void_words_is_already_spent() -> None:
    """The dishonest vendor lists a made-up Receipt (5, 8] over the void words (5, 8]
    of its Receipt (5, 8, 18]: refused, and the service keeps it as a dispute."""
    with pytest.raises(AlreadySpent, match="void words"):
        check(tiled([(0, 0, 5), (5, 5, 8), (5, 8, 18)]))
    with pytest.raises(AlreadySpent, match="void words"):
        check(tiled([(0, 0, 5), (5, 8, 18), (6, 6, 7)]))
    # Two Receipts over the same paid words: a malformed claim, not a void claim.
    with pytest.raises(InvalidArgument, match="overlap"):
        check(tiled([(0, 0, 5), (4, 4, 9)]))


def test_after_a_forced_close_only_paid_words_are_paid_from_broker_losses() -> None:
    """1.0's rule (item 3 of issue 9 removes it): units paid in both epochs come from
    broker losses. A Receipt's void words inside the overlap cost nobody anything."""
    closed = EpochView(1, "v1", word(0), EpochOpening.ACQUIRE, None, forced_end=205)
    forced = EpochView(2, "v2", word(5), EpochOpening.ACQUIRE, None)
    args: dict[str, object] = {
        "epoch": forced,
        "current_epoch": 2,
        "epochs": {1: closed, 2: forced},
        "paid": [PaidSpan(1, 0, 15)],
        "known": [word(5), word(15)],
    }
    honest = tiled([(5, 15, 16)], vendor_id="v2", epoch=2)  # the wallet paid from 15
    assert (check(honest, **args).paid_units, check(honest, **args).loss_units) == (1, 0)
    replayed = tiled([(5, 5, 15), (15, 15, 16)], vendor_id="v2", epoch=2)
    assert check(replayed, **args).loss_units == 10
