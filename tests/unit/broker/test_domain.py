"""The broker's domain: the custody transition function, the custody rules, the ledger."""

from __future__ import annotations

from dataclasses import replace

import pytest

from broker.domain import (
    AccountRef,
    Acquire,
    AcquireDecision,
    BeginRecall,
    CheckpointIndex,
    CoinIndexView,
    CoinRecordView,
    CoinState,
    CustodyEvent,
    EpochOpening,
    EpochView,
    Expire,
    FinishRecall,
    Freeze,
    HandOff,
    IndexedWord,
    IssueHandOffGrant,
    LedgerEntry,
    Reclaim,
    RenewLease,
    Transaction,
    Unfreeze,
    check_acquire_proof,
    check_index_advance,
    decide_acquire,
    effective_state,
    handoff_is_repeat,
    latest_known_word,
    proof_bound_units,
    reclaim_is_repeat,
    transition,
)
from netpay.chain import Chain, seen_of, verify_word
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    CoinBusy,
    Expired,
    Insufficient,
    LimitExceeded,
    PreconditionFailed,
    Revoked,
)
from netpay.limits import DEFAULT_LIMITS

ECOIN = bytes(range(16))
CHAIN = Chain.make(ECOIN, 50, b"\x11" * 32)
NOW_MS = 1_000_000
EXPIRES_MS = 5_000_000
LEASE_MS = NOW_MS + 60_000


def word(i: int) -> IndexedWord:
    return IndexedWord(i, CHAIN.word(i))


def coin(state: CoinState, **changes: object) -> CoinRecordView:
    base = CoinRecordView(
        ecoin_id=ECOIN.hex(),
        n=CHAIN.n,
        unit_value_minor=1,
        expires_at_ms=EXPIRES_MS,
        state=state,
        frozen=False,
        holder=None if state is CoinState.FREE else "v1",
        epoch=0 if state is CoinState.FREE else 1,
        latest=word(0),
        lease_expires_ms=None if state is CoinState.FREE else LEASE_MS,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# One event of each kind, each valid for a coin in the state that accepts it
# (FREE for Acquire, HELD by v1 in epoch 1 for the holder's events).
EVENTS: dict[str, CustodyEvent] = {
    "acquire": Acquire("v2", NOW_MS, LEASE_MS),
    "renew": RenewLease("v1", 1, LEASE_MS + 1),
    "grant": IssueHandOffGrant("v2", 1, NOW_MS + 30_000),
    "checkpoint": CheckpointIndex("v1", 1, word(3), LEASE_MS),
    "handoff": HandOff("v1", "v2", 1, word(4), NOW_MS, LEASE_MS),
    "reclaim": Reclaim("v1", 1, word(4), NOW_MS, LEASE_MS),
    "freeze": Freeze(),
    "unfreeze": Unfreeze(),
    "expire": Expire(EXPIRES_MS),
}

# The transition table, written out independently of the implementation.
ALLOWED: dict[CoinState, set[str]] = {
    CoinState.FREE: {"acquire", "freeze", "unfreeze", "expire"},
    CoinState.HELD: {
        "renew",
        "grant",
        "checkpoint",
        "handoff",
        "reclaim",
        "freeze",
        "unfreeze",
        "expire",
    },
    CoinState.RECALLING: {"freeze", "unfreeze", "expire"},
    CoinState.EXPIRED: set(),
}

EXPECTED_STATE = {
    "acquire": CoinState.HELD,
    "renew": CoinState.HELD,
    "grant": CoinState.HELD,
    "checkpoint": CoinState.HELD,
    "handoff": CoinState.HELD,
    "reclaim": CoinState.HELD,
    "expire": CoinState.EXPIRED,
}


@pytest.mark.parametrize("state", list(CoinState))
@pytest.mark.parametrize("name", list(EVENTS))
def test_transition_table(state: CoinState, name: str) -> None:
    before = coin(state)
    if name in ALLOWED[state]:
        after = transition(before, EVENTS[name])
        assert after.state is EXPECTED_STATE.get(name, state)
    else:
        with pytest.raises(PreconditionFailed, match="not allowed"):
            transition(before, EVENTS[name])


def test_acquire_opens_the_next_epoch_at_the_latest_word() -> None:
    free = coin(CoinState.FREE, latest=word(7), epoch=3)
    after = transition(free, Acquire("v2", NOW_MS, LEASE_MS))
    assert (after.state, after.holder, after.epoch) == (CoinState.HELD, "v2", 4)
    assert after.latest == word(7)
    assert after.lease_expires_ms == LEASE_MS
    assert after.grant_to_vendor is None


def test_no_new_custody_for_frozen_or_expired_coins() -> None:
    with pytest.raises(Revoked):
        transition(coin(CoinState.FREE, frozen=True), Acquire("v2", NOW_MS, LEASE_MS))
    with pytest.raises(Expired):
        transition(coin(CoinState.FREE), Acquire("v2", EXPIRES_MS, LEASE_MS))
    held = coin(CoinState.HELD, frozen=True)
    with pytest.raises(Revoked):
        transition(held, HandOff("v1", "v2", 1, word(4), NOW_MS, LEASE_MS))
    with pytest.raises(Revoked):
        transition(held, Reclaim("v1", 1, word(4), NOW_MS, LEASE_MS))
    with pytest.raises(Expired):
        transition(coin(CoinState.HELD), HandOff("v1", "v2", 1, word(4), EXPIRES_MS, LEASE_MS))


def test_handoff_closes_the_epoch_and_opens_the_next_for_the_new_holder() -> None:
    held = coin(CoinState.HELD, grant_epoch=1, grant_to_vendor="v2", grant_expires_ms=NOW_MS)
    after = transition(held, HandOff("v1", "v2", 1, word(4), NOW_MS, LEASE_MS))
    assert (after.holder, after.epoch, after.latest) == ("v2", 2, word(4))
    assert (after.grant_epoch, after.grant_to_vendor) == (None, None)


@pytest.mark.parametrize(
    "event",
    [
        HandOff("v1", "v2", 2, word(4), NOW_MS, LEASE_MS),  # wrong epoch
        HandOff("v3", "v2", 1, word(4), NOW_MS, LEASE_MS),  # not the holder
        HandOff("v1", "v1", 1, word(4), NOW_MS, LEASE_MS),  # to itself
        Reclaim("v2", 1, word(4), NOW_MS, LEASE_MS),  # not the holder
        Reclaim("v1", 0, word(4), NOW_MS, LEASE_MS),  # wrong epoch
        CheckpointIndex("v2", 1, word(4), LEASE_MS),  # not the holder
        CheckpointIndex("v1", 1, word(1), LEASE_MS),  # below the latest word
        RenewLease("v2", 1, LEASE_MS),
        IssueHandOffGrant("v1", 1, NOW_MS),  # names the holder
        IssueHandOffGrant("v2", 2, NOW_MS),  # wrong epoch
        Expire(EXPIRES_MS - 1),  # too early
    ],
)
def test_mismatched_events_are_refused(event: CustodyEvent) -> None:
    held = coin(CoinState.HELD, latest=word(2))
    with pytest.raises(PreconditionFailed):
        transition(held, event)


def test_reclaim_keeps_the_holder_and_moves_to_the_next_epoch() -> None:
    after = transition(coin(CoinState.HELD), Reclaim("v1", 1, word(5), NOW_MS, LEASE_MS + 9))
    assert (after.holder, after.epoch, after.latest) == ("v1", 2, word(5))
    assert after.lease_expires_ms == LEASE_MS + 9


def test_checkpoint_raises_the_latest_word_and_renews_the_lease() -> None:
    held = coin(CoinState.HELD, latest=word(2))
    after = transition(held, CheckpointIndex("v1", 1, word(6), LEASE_MS + 5))
    assert after.latest == word(6) and after.epoch == 1
    assert after.lease_expires_ms == LEASE_MS + 5
    same = transition(held, CheckpointIndex("v1", 1, word(2), LEASE_MS + 7))
    assert same.latest == word(2)


def test_a_renewal_never_shortens_the_lease() -> None:
    held = coin(CoinState.HELD)
    assert transition(held, RenewLease("v1", 1, LEASE_MS - 1)).lease_expires_ms == LEASE_MS
    assert transition(held, RenewLease("v1", 1, LEASE_MS + 1)).lease_expires_ms == LEASE_MS + 1


def test_freeze_and_unfreeze_only_move_the_flag() -> None:
    held = coin(CoinState.HELD)
    frozen = transition(held, Freeze())
    assert frozen.frozen and frozen.state is CoinState.HELD and frozen.epoch == 1
    assert not transition(frozen, Unfreeze()).frozen


def test_expired_is_final() -> None:
    expired = transition(coin(CoinState.HELD), Expire(EXPIRES_MS))
    assert expired.state is CoinState.EXPIRED
    for event in EVENTS.values():
        with pytest.raises(PreconditionFailed):
            transition(expired, event)


def test_effective_state_reports_expiry_without_a_write() -> None:
    free = coin(CoinState.FREE)
    assert effective_state(free, EXPIRES_MS - 1) is CoinState.FREE
    assert effective_state(free, EXPIRES_MS) is CoinState.EXPIRED


def test_latest_known_word_is_the_higher_of_base_and_checkpoint() -> None:
    assert latest_known_word(word(3), None) == word(3)
    assert latest_known_word(word(3), word(5)) == word(5)
    assert latest_known_word(word(3), word(1)) == word(3)


# -- proofs and indexes ----------------------------------------------------------


class CountingVerifier:
    """A fake verifier: records its calls, delegates to the real one."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int, int]] = []

    def __call__(
        self, ecoin: bytes, known_index: int, known_word: bytes, j: int, w: bytes, max_steps: int
    ) -> bool:
        self.calls.append((known_index, j, max_steps))
        return verify_word(ecoin, known_index, known_word, j, w, max_steps)


def test_proof_bound_units_adds_every_allowance() -> None:
    lim = DEFAULT_LIMITS
    expected = lim.max_unreported_units + lim.max_window_units + lim.max_gap_units
    assert proof_bound_units(lim, 1) == expected + lim.max_click_amount_minor
    assert proof_bound_units(lim, 100) == expected + lim.max_click_amount_minor // 100


def test_a_spent_genuine_proof_is_already_spent_with_the_latest_index_and_its_seen() -> None:
    # 1.1: (L, seen) for a genuine word, never w[L].
    verify = CountingVerifier()
    held = coin(CoinState.HELD, latest=word(5))
    for j in (0, 4, 5):
        with pytest.raises(AlreadySpent) as info:
            check_acquire_proof(held, j, CHAIN.word(j), 100, verify=verify)
        assert (info.value.index, info.value.seen) == (5, seen_of(CHAIN.word(5)))
    assert verify.calls == []


def test_a_spent_made_up_proof_is_bad_payword_naming_no_index() -> None:
    held = coin(CoinState.HELD, latest=word(5))
    for j, w in ((4, b"\x01" * 32), (5, b"\x01" * 32), (4, CHAIN.word(3))):
        with pytest.raises(BadPayword) as info:
            check_acquire_proof(held, j, w, 100)
        assert (info.value.index, info.value.seen) == (None, None)


def test_a_spent_proof_is_genuine_only_within_the_bound_of_a_known_word() -> None:
    held = coin(CoinState.HELD, latest=word(30))
    with pytest.raises(BadPayword):  # 20 below L, no known word near: not shown genuine
        check_acquire_proof(held, 10, CHAIN.word(10), 5)
    for near in (word(7), word(12)):  # an epoch base, a claim's top...
        with pytest.raises(AlreadySpent) as info:
            check_acquire_proof(held, 10, CHAIN.word(10), 5, known=lambda n=near: [n])
        assert (info.value.index, info.value.seen) == (30, seen_of(CHAIN.word(30)))


def test_proof_bound_is_checked_before_hashing() -> None:
    verify = CountingVerifier()
    held = coin(CoinState.HELD, latest=word(2))
    with pytest.raises(LimitExceeded):
        check_acquire_proof(held, 13, CHAIN.word(13), 10, verify=verify)
    assert verify.calls == []
    check_acquire_proof(held, 12, CHAIN.word(12), 10, verify=verify)
    assert verify.calls == [(2, 12, 10)]


def test_proof_beyond_the_chain_is_insufficient_and_never_hashed() -> None:
    verify = CountingVerifier()
    with pytest.raises(Insufficient):
        check_acquire_proof(coin(CoinState.FREE), CHAIN.n + 1, b"\0" * 32, 10**6, verify=verify)
    assert verify.calls == []


def test_proof_word_must_hash_down_to_the_latest_word() -> None:
    held = coin(CoinState.HELD, latest=word(2))
    with pytest.raises(BadPayword):
        check_acquire_proof(held, 6, CHAIN.word(7), 100)
    check_acquire_proof(held, 6, CHAIN.word(6), 100)


def test_index_equal_to_latest_needs_the_same_word_and_no_hashing() -> None:
    verify = CountingVerifier()
    held = coin(CoinState.HELD, latest=word(4))
    check_index_advance(held, word(4), 10, verify=verify)
    with pytest.raises(BadPayword):
        check_index_advance(held, IndexedWord(4, CHAIN.word(5)), 10, verify=verify)
    assert verify.calls == []


def test_index_advance_rules() -> None:
    verify = CountingVerifier()
    held = coin(CoinState.HELD, latest=word(4))
    with pytest.raises(PreconditionFailed) as below:
        check_index_advance(held, word(3), 10, verify=verify)
    assert (below.value.index, below.value.seen) == (4, seen_of(CHAIN.word(4)))
    with pytest.raises(BadPayword) as made_up:
        check_index_advance(held, IndexedWord(3, b"\x01" * 32), 10, verify=verify)
    assert (made_up.value.index, made_up.value.seen) == (None, None)
    with pytest.raises(LimitExceeded):
        check_index_advance(held, word(15), 10, verify=verify)
    with pytest.raises(Insufficient):
        check_index_advance(held, IndexedWord(CHAIN.n + 1, b"\0" * 32), 10**6, verify=verify)
    assert verify.calls == []
    with pytest.raises(BadPayword):
        check_index_advance(held, IndexedWord(9, CHAIN.word(10)), 10, verify=verify)
    check_index_advance(held, word(14), 10, verify=verify)
    assert verify.calls == [(4, 9, 10), (4, 14, 10)]


# -- the acquire decision ----------------------------------------------------------


def decide(c: CoinRecordView, caller: str = "v2", j: int = 3, **kw: object) -> AcquireDecision:
    return decide_acquire(c, caller, NOW_MS, j, CHAIN.word(j), bound_units=100, **kw)  # type: ignore[arg-type]


def test_acquire_decisions() -> None:
    assert decide(coin(CoinState.FREE)) is AcquireDecision.GRANT
    assert decide(coin(CoinState.HELD)) is AcquireDecision.HANDOFF
    assert decide(coin(CoinState.HELD), force=True) is AcquireDecision.RECALL
    # The recalling vendor goes on with its recall, force or not.
    recalling = coin(CoinState.RECALLING, grant_to_vendor="v2", grant_epoch=1)
    assert decide(recalling) is AcquireDecision.RECALL
    # The holder repeating its call gets its grant back, whatever the proof.
    assert decide(coin(CoinState.HELD, latest=word(9)), caller="v1") is AcquireDecision.RENEW


def test_acquire_refusals() -> None:
    with pytest.raises(Expired):
        decide_acquire(coin(CoinState.FREE), "v2", EXPIRES_MS, 3, CHAIN.word(3), bound_units=100)
    with pytest.raises(Expired):
        decide(coin(CoinState.EXPIRED))
    with pytest.raises(Revoked):
        decide(coin(CoinState.HELD, frozen=True), caller="v1")
    with pytest.raises(CoinBusy) as busy:
        decide(coin(CoinState.RECALLING, grant_to_vendor="v3"), busy_retry_after_s=7)
    assert busy.value.retry_after_s == 7
    with pytest.raises(BadPayword):  # a forced acquisition needs a proof too
        decide_acquire(
            coin(CoinState.HELD), "v2", NOW_MS, 3, CHAIN.word(4), bound_units=100, force=True
        )
    with pytest.raises(BadPayword):
        decide_acquire(coin(CoinState.FREE), "v2", NOW_MS, 3, CHAIN.word(4), bound_units=100)
    with pytest.raises(AlreadySpent):
        decide(coin(CoinState.HELD, latest=word(3)))


# -- repeats -----------------------------------------------------------------------


def index_view(vendor: str, epoch: int, at: IndexedWord, to: str = "") -> CoinIndexView:
    return CoinIndexView(ECOIN.hex(), epoch, at, vendor, to, NOW_MS)


def test_handoff_repeat_is_recognised_only_for_the_epoch_it_opened() -> None:
    after = coin(CoinState.HELD, holder="v2", epoch=2, latest=word(6))
    opened = EpochView(2, "v2", word(4), EpochOpening.HANDOFF, "v1")
    ci = index_view("v1", 1, word(4), "v2")
    assert handoff_is_repeat(after, opened, "v2", ci)
    assert not handoff_is_repeat(after, opened, "v3", ci)
    assert not handoff_is_repeat(after, opened, "v2", index_view("v1", 1, word(5), "v2"))
    assert not handoff_is_repeat(after, opened, "v2", index_view("v1", 2, word(4), "v2"))
    reclaimed = EpochView(2, "v2", word(4), EpochOpening.RECLAIM, "v2")
    assert not handoff_is_repeat(after, reclaimed, "v2", ci)


def test_reclaim_repeat_is_recognised_only_for_the_epoch_it_opened() -> None:
    after = coin(CoinState.HELD, holder="v1", epoch=2, latest=word(4))
    opened = EpochView(2, "v1", word(4), EpochOpening.RECLAIM, "v1")
    ci = index_view("v1", 1, word(4))
    assert reclaim_is_repeat(after, opened, "v1", 1, ci)
    assert not reclaim_is_repeat(after, opened, "v1", 2, ci)
    assert not reclaim_is_repeat(after, opened, "v2", 1, ci)
    handed = EpochView(2, "v1", word(4), EpochOpening.HANDOFF, "v3")
    assert not reclaim_is_repeat(after, handed, "v1", 1, ci)


# -- ledger --------------------------------------------------------------------------

READER = AccountRef.reader("r1", "EUR")
FLOAT = AccountRef.broker_float("EUR")


def test_transfer_is_balanced() -> None:
    tx = Transaction.transfer("buy_coin", "k", 1, source=READER, destination=FLOAT, amount_minor=30)
    assert [e.amount_minor for e in tx.entries] == [-30, 30]


def test_unbalanced_transactions_are_refused() -> None:
    with pytest.raises(AssertionError, match="unbalanced"):
        Transaction("x", "k", 1, (LedgerEntry(READER, -30), LedgerEntry(FLOAT, 29)))


def test_balance_is_checked_per_currency() -> None:
    usd_reader = AccountRef.reader("r1", "USD")
    usd_float = AccountRef.broker_float("USD")
    Transaction(
        "x",
        "k",
        1,
        (
            LedgerEntry(READER, -5),
            LedgerEntry(FLOAT, 5),
            LedgerEntry(usd_reader, -7),
            LedgerEntry(usd_float, 7),
        ),
    )
    # The grand total is 0, but each currency is off: still refused.
    with pytest.raises(AssertionError, match="unbalanced"):
        Transaction("x", "k", 1, (LedgerEntry(READER, -5), LedgerEntry(usd_float, 5)))


@pytest.mark.parametrize(
    "entries",
    [
        (LedgerEntry(READER, 0), LedgerEntry(FLOAT, 0)),
        (LedgerEntry(READER, 0),),
    ],
)
def test_degenerate_transactions_are_refused(entries: tuple[LedgerEntry, ...]) -> None:
    with pytest.raises(AssertionError):
        Transaction("x", "k", 1, entries)


# -- recall (forced acquisition) ------------------------------------------------------


def test_a_recall_needs_a_hand_off_grant_and_stops_the_holder() -> None:
    held = coin(CoinState.HELD, latest=word(5))
    with pytest.raises(PreconditionFailed, match="acquire without force first"):
        transition(held, BeginRecall("v2", 1, NOW_MS, LEASE_MS + 5_000))
    granted = replace(held, grant_epoch=1, grant_to_vendor="v2", grant_expires_ms=NOW_MS)
    with pytest.raises(PreconditionFailed):
        transition(granted, BeginRecall("v1", 1, NOW_MS, LEASE_MS))  # the holder itself
    recalling = transition(granted, BeginRecall("v2", 1, NOW_MS, LEASE_MS + 5_000))
    assert (recalling.state, recalling.holder, recalling.grant_expires_ms) == (
        CoinState.RECALLING,
        "v1",
        LEASE_MS + 5_000,
    )
    # A recalling coin renews nobody's lease and takes no hand-off.
    with pytest.raises(PreconditionFailed):
        transition(recalling, RenewLease("v1", 1, LEASE_MS + 60_000))
    with pytest.raises(PreconditionFailed):
        transition(recalling, HandOff("v1", "v3", 1, word(6), NOW_MS, LEASE_MS))


def test_a_recall_finishes_at_the_final_index_or_forced_after_the_deadline() -> None:
    recalling = coin(
        CoinState.RECALLING,
        latest=word(5),
        grant_epoch=1,
        grant_to_vendor="v2",
        grant_expires_ms=LEASE_MS + 5_000,
    )
    final = transition(recalling, FinishRecall("v2", 1, word(8), NOW_MS, LEASE_MS, forced=False))
    assert (final.state, final.holder, final.epoch, final.latest) == (
        CoinState.HELD,
        "v2",
        2,
        word(8),
    )
    with pytest.raises(PreconditionFailed):  # below the latest known word
        transition(recalling, FinishRecall("v2", 1, word(4), NOW_MS, LEASE_MS, forced=False))
    with pytest.raises(PreconditionFailed):  # someone else
        transition(recalling, FinishRecall("v3", 1, word(8), NOW_MS, LEASE_MS, forced=False))
    with pytest.raises(PreconditionFailed, match="lease may still be live"):
        transition(recalling, FinishRecall("v2", 1, word(5), NOW_MS, LEASE_MS, forced=True))
    late = LEASE_MS + 5_000
    forced = transition(recalling, FinishRecall("v2", 1, word(5), late, late + 60_000, forced=True))
    assert (forced.holder, forced.epoch, forced.latest) == ("v2", 2, word(5))
