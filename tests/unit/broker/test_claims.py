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
