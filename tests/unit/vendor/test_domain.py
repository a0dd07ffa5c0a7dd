"""The vendor's pure rules: the coin state machine and the payment checks."""

from __future__ import annotations

import pytest

from netpay.chain import Chain, seen_of
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    Expired,
    Insufficient,
    WrongAmount,
    WrongCurrency,
)
from netpay.limits import DEFAULT_LIMITS
from netpay.money import Money
from vendor.domain import (
    CoinEvent,
    CoinView,
    IllegalTransition,
    Item,
    VendorCoinState,
    check_payment,
    lease_deadline_ms,
    lease_is_live,
    needs_checkpoint,
    resync_refusal,
    transition,
    verify_payword,
)

HELD = VendorCoinState.HELD
HANDING_OFF = VendorCoinState.HANDING_OFF
CLOSED = VendorCoinState.CLOSED
NOW = 1_800_000_000_000
CHAIN = Chain.make(bytes(range(16)), 50, b"\x11" * 32)


def coin(**changes: object) -> CoinView:
    base: dict[str, object] = {
        "ecoin_id": CHAIN.ecoin_id.hex(),
        "epoch": 1,
        "state": HELD,
        "index": 10,
        "payword": CHAIN.word(10),
        "n": 50,
        "unit_value_minor": 1,
        "currency": "EUR",
        "expires_at_ms": NOW + 3_600_000,
        "lease_deadline_ms": NOW + 55_000,
        "acknowledged_index": 10,
        "max_accepted_index": 10,
    }
    base.update(changes)
    return CoinView(**base)  # type: ignore[arg-type]


def item(amount: int = 5, currency: str = "EUR") -> Item:
    return Item("a1", Money(amount, currency))


# -- the state machine ---------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "event", "expected"),
    [
        (None, CoinEvent.ACQUIRED, HELD),
        (CLOSED, CoinEvent.ACQUIRED, HELD),
        (HELD, CoinEvent.PAID, HELD),
        (HELD, CoinEvent.HANDOFF_STARTED, HANDING_OFF),
        (HANDING_OFF, CoinEvent.RECLAIMED, HELD),
        (HELD, CoinEvent.EPOCH_CLOSED, CLOSED),
        (HANDING_OFF, CoinEvent.EPOCH_CLOSED, CLOSED),
    ],
)
def test_allowed_transitions(
    state: VendorCoinState | None, event: CoinEvent, expected: VendorCoinState
) -> None:
    assert transition(state, event) is expected


@pytest.mark.parametrize(
    ("state", "event"),
    [
        (None, CoinEvent.PAID),
        (HANDING_OFF, CoinEvent.PAID),
        (CLOSED, CoinEvent.PAID),
        (HELD, CoinEvent.ACQUIRED),
        (HANDING_OFF, CoinEvent.ACQUIRED),
        (HANDING_OFF, CoinEvent.HANDOFF_STARTED),
        (CLOSED, CoinEvent.HANDOFF_STARTED),
        (HELD, CoinEvent.RECLAIMED),
        (CLOSED, CoinEvent.RECLAIMED),
        (CLOSED, CoinEvent.EPOCH_CLOSED),
        (None, CoinEvent.EPOCH_CLOSED),
    ],
)
def test_forbidden_transitions(state: VendorCoinState | None, event: CoinEvent) -> None:
    with pytest.raises(IllegalTransition):
        transition(state, event)


def test_every_pair_is_either_allowed_or_refused() -> None:
    states: list[VendorCoinState | None] = [None, *VendorCoinState]
    allowed = 0
    for state in states:
        for event in CoinEvent:
            try:
                transition(state, event)
                allowed += 1
            except IllegalTransition:
                pass
    assert allowed == 7


# -- the payment rules ---------------------------------------------------------


def test_a_good_payment_passes_every_check() -> None:
    plan = check_payment(coin(), 10, 15, item(5), DEFAULT_LIMITS, NOW)
    assert (plan.prev, plan.index, plan.words) == (10, 15, 5)
    verify_payword(CHAIN.ecoin_id, coin(), 15, CHAIN.word(15))


def test_unit_value_divides_the_price() -> None:
    c = coin(unit_value_minor=5)
    assert check_payment(c, 10, 12, item(10), DEFAULT_LIMITS, NOW).words == 2
    with pytest.raises(WrongAmount):
        check_payment(c, 10, 12, item(7), DEFAULT_LIMITS, NOW)


def test_wrong_amount_names_nothing_until_the_word_is_shown_genuine() -> None:
    # 1.1: the rule names no index; resync_refusal decides what the reader is told.
    with pytest.raises(WrongAmount) as err:
        check_payment(coin(), 10, 14, item(5), DEFAULT_LIMITS, NOW)
    assert (err.value.index, err.value.seen) == (None, None)


def refusal(err: WrongAmount | AlreadySpent, j: int, word: bytes, **kw: object) -> object:
    held = kw.pop("held", [])
    steps = kw.pop("max_steps", 5)
    return resync_refusal(err, CHAIN.ecoin_id, coin(**kw), held, (j, word), steps)  # type: ignore[arg-type]


def test_a_genuine_word_learns_the_index_and_its_seen_never_the_word() -> None:
    for err in (WrongAmount("w"), AlreadySpent("s")):
        for j in (10, 14, 15, 6, 5):  # at s, above it, and below it (w[s] hashes down to it)
            answer = refusal(err, j, CHAIN.word(j))
            assert type(answer) is type(err), (err, j)
            assert isinstance(answer, WrongAmount | AlreadySpent)
            assert (answer.index, answer.seen) == (10, seen_of(CHAIN.word(10)))
            assert answer.seen != CHAIN.word(10) and CHAIN.word(10).hex() not in answer.detail


def test_a_word_far_from_every_held_word_is_bad_payword() -> None:
    assert isinstance(refusal(AlreadySpent("s"), 16, CHAIN.word(16)), BadPayword)
    assert isinstance(refusal(AlreadySpent("s"), 4, CHAIN.word(4)), BadPayword)
    # A held word of the click log near it shows it genuine.
    near = refusal(AlreadySpent("s"), 3, CHAIN.word(3), held=[(1, CHAIN.word(1))])
    assert isinstance(near, AlreadySpent) and near.index == 10


def test_a_made_up_word_is_bad_payword_naming_nothing() -> None:
    for j in (12, 10, 8):
        for err in (WrongAmount("w"), AlreadySpent("s")):
            answer = refusal(err, j, bytes(32), held=[(0, CHAIN.root)])
            assert isinstance(answer, BadPayword)
            assert (answer.index, answer.seen) == (None, None)
    # Another position's word is no word at j.
    assert isinstance(refusal(WrongAmount("w"), 12, CHAIN.word(13)), BadPayword)


def test_wrong_currency() -> None:
    with pytest.raises(WrongCurrency):
        check_payment(coin(), 10, 15, item(5, "USD"), DEFAULT_LIMITS, NOW)


def test_prev_below_the_stored_index_is_already_spent() -> None:
    with pytest.raises(AlreadySpent) as err:
        check_payment(coin(), 9, 14, item(5), DEFAULT_LIMITS, NOW)
    assert (err.value.index, err.value.seen) == (None, None)  # resync_refusal names it


def test_prev_below_the_highest_index_ever_accepted_is_already_spent() -> None:
    c = coin(index=10, max_accepted_index=20)
    with pytest.raises(AlreadySpent):
        check_payment(c, 12, 17, item(5), DEFAULT_LIMITS, NOW)


def test_insufficient_words() -> None:
    with pytest.raises(Insufficient):
        check_payment(coin(index=48, payword=CHAIN.word(48)), 48, 53, item(5), DEFAULT_LIMITS, NOW)


def test_gap_too_large_is_refused_before_hashing() -> None:
    limits = DEFAULT_LIMITS.replace(max_gap_units=3)
    check_payment(coin(), 13, 18, item(5), limits, NOW)  # a gap of exactly 3 is fine
    with pytest.raises(BadPayword, match="gap"):
        check_payment(coin(), 14, 19, item(5), limits, NOW)


def test_expired_coin_stops_max_skew_before_expiry() -> None:
    c = coin(expires_at_ms=NOW + 5_000)
    with pytest.raises(Expired):
        check_payment(c, 10, 15, item(5), DEFAULT_LIMITS, NOW)
    check_payment(c, 10, 15, item(5), DEFAULT_LIMITS, NOW - 1)


def test_bad_payword() -> None:
    with pytest.raises(BadPayword):
        verify_payword(CHAIN.ecoin_id, coin(), 15, CHAIN.word(16))
    with pytest.raises(BadPayword):
        verify_payword(CHAIN.ecoin_id, coin(), 15, b"\x00" * 32)


def test_lease_and_unreported_units() -> None:
    assert lease_deadline_ms(NOW, 60, 5) == NOW + 55_000
    assert lease_is_live(coin(), NOW)
    assert not lease_is_live(coin(lease_deadline_ms=NOW), NOW)
    assert not lease_is_live(coin(state=HANDING_OFF), NOW)
    limits = DEFAULT_LIMITS.replace(max_unreported_units=5)
    assert not needs_checkpoint(coin(), 15, limits)
    assert needs_checkpoint(coin(), 16, limits)
