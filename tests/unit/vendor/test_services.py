"""The vendor's use cases over a fake broker and a real SQLite file."""

from __future__ import annotations

import threading

import pytest

from netpay.chain import seen_of
from netpay.envelope import open_envelope
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    BrokerUnavailable,
    CoinBusy,
    Expired,
    Insufficient,
    Malformed,
    PermissionDenied,
    PreconditionFailed,
    Revoked,
    WrongAmount,
    WrongCurrency,
)
from netpay.money import Money
from netpay.v1 import statements_pb2 as pb
from vendor.domain import Item, VendorCoinState
from vendor.services import PaymentResult

ART = Item("1", Money(5, "EUR"))
OTHER = Item("2", Money(5, "EUR"))


@pytest.fixture
def p(make_header):
    """pay(vendor, chain, prev, index, item=ART, word=...)"""

    def run(vendor, chain, prev, index, item=ART, **kw):
        return vendor.pay(make_header(chain, prev, index, **kw), item, vendor._ports.clock.now_ms())

    return run


def receipt(result: PaymentResult, vendor) -> pb.Receipt:
    env = pb.Envelope()
    env.ParseFromString(result.receipt)
    return open_envelope(env, pb.Receipt, vendor._ports.identity.key.public_key)


# -- paying --------------------------------------------------------------------


def test_first_payment_acquires_then_pays_locally(vendor, broker, p) -> None:
    chain = broker.issue(100)
    first = p(vendor, chain, 0, 5)
    r = receipt(first, vendor)
    assert (r.vendor_id, r.ecoin_id, r.epoch) == ("daily-hash", chain.ecoin_id.hex(), 1)
    assert (r.from_index, r.to_index, r.amount_minor, r.currency, r.item_id) == (
        0,
        5,
        5,
        "EUR",
        "1",
    )
    assert first.words_left == 95 and not first.replayed
    assert broker.calls["AcquireCoin"] == 1

    second = p(vendor, chain, 5, 10, OTHER)
    assert second.words_left == 90
    assert broker.calls["AcquireCoin"] == 1  # paying at the holder is local
    assert sum(broker.calls.values()) == 1
    stored = vendor.coin(chain.ecoin_id.hex())
    assert (stored.view.state, stored.view.index) == (VendorCoinState.HELD, 10)
    assert [c.to_index for c in vendor.clicks(chain.ecoin_id.hex())] == [5, 10]


def test_wrong_amount_carries_index_and_seen(vendor, broker, p) -> None:
    # 1.1: the index and seen = SHA-256("NP1-seen" || w[index]), never the word.
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    with pytest.raises(WrongAmount) as err:
        p(vendor, chain, 5, 9)
    assert (err.value.index, err.value.seen) == (5, seen_of(chain.word(5)))


def test_already_spent_carries_index_and_seen(vendor, broker, p) -> None:
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    p(vendor, chain, 5, 10)
    with pytest.raises(AlreadySpent) as err:
        p(vendor, chain, 3, 8)
    assert (err.value.index, err.value.seen) == (10, seen_of(chain.word(10)))


@pytest.mark.parametrize(("prev", "index"), [(5, 9), (3, 8), (0, 5), (12, 14)])
def test_a_made_up_word_learns_no_index(vendor, broker, p, prev, index) -> None:
    """Whatever the refusal would have been (wrong amount, already spent, the
    replay of another item), a word that is not the coin's is bad_payword and
    names no index: nobody probes a coin's position without one of its words."""
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    p(vendor, chain, 5, 10)
    with pytest.raises(BadPayword) as err:
        p(vendor, chain, prev, index, OTHER, word=bytes(32))
    assert (err.value.index, err.value.seen) == (None, None)
    assert vendor.coin(chain.ecoin_id.hex()).view.index == 10


def test_a_genuine_word_far_below_is_checked_against_the_click_log(make_vendor, broker, p) -> None:
    vendor = make_vendor(limits=broker.limits.replace(max_gap_units=3))
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    p(vendor, chain, 5, 10)
    p(vendor, chain, 10, 15)
    p(vendor, chain, 15, 20)
    # (6, 7]: 13 words below the coin's 20 and 7 above the epoch's base, beyond the
    # bound (3 + 1 word); the clicks at 5 and 10 are within it.
    with pytest.raises(AlreadySpent) as err:
        p(vendor, chain, 6, 7, Item("b", Money(1, "EUR")))
    assert (err.value.index, err.value.seen) == (20, seen_of(chain.word(20)))


def test_bad_payword(vendor, broker, p) -> None:
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    with pytest.raises(BadPayword):
        p(vendor, chain, 5, 10, word=chain.word(11))
    assert vendor.coin(chain.ecoin_id.hex()).view.index == 5


def test_gap_too_large(make_vendor, broker, p) -> None:
    vendor = make_vendor(limits=broker.limits.replace(max_gap_units=10))
    chain = broker.issue(200)
    p(vendor, chain, 0, 5)
    p(vendor, chain, 15, 20)  # a gap of 10 void words is fine
    with pytest.raises(BadPayword, match="gap"):
        p(vendor, chain, 31, 36)


def test_insufficient(vendor, broker, p) -> None:
    chain = broker.issue(12)
    p(vendor, chain, 0, 5)
    p(vendor, chain, 5, 10)
    with pytest.raises(Insufficient):
        p(vendor, chain, 10, 15, word=b"\x01" * 32)  # no w[15] exists: refused before hashing


def test_expired(vendor, broker, p, clock) -> None:
    chain = broker.issue(100, expires_in_s=100)
    p(vendor, chain, 0, 5)
    clock.advance(96)  # within max_skew_s of expiry
    with pytest.raises(Expired):
        p(vendor, chain, 5, 10)


def test_wrong_currency(vendor, broker, p) -> None:
    chain = broker.issue(100, currency="USD")
    with pytest.raises(WrongCurrency):
        p(vendor, chain, 0, 5)


def test_malformed_and_windows(vendor, broker, p) -> None:
    chain = broker.issue(100)
    with pytest.raises(Malformed):
        vendor.pay('NetPay ecoin="zz"', ART, 0)
    with pytest.raises(Malformed, match="windows"):
        p(vendor, chain, 0, 5, window=5)
    assert broker.calls["AcquireCoin"] == 0


def test_broker_already_spent_is_passed_on(make_vendor, broker, p) -> None:
    v1 = make_vendor("daily-hash")
    v2 = make_vendor("chain-gazette")
    chain = broker.issue(100)
    p(v1, chain, 0, 5)
    v1.checkpoint_all()  # the broker now knows index 5
    broker.coins[chain.ecoin_id.hex()].holder = None  # released: FREE at the broker
    with pytest.raises(AlreadySpent) as err:
        p(v2, chain, 0, 5)
    assert (err.value.index, err.value.seen) == (5, seen_of(chain.word(5)))


def test_broker_unreachable_on_acquire(vendor, broker, p) -> None:
    chain = broker.issue(100)
    broker.down = True
    with pytest.raises(BrokerUnavailable):
        p(vendor, chain, 0, 5)


# -- retries -------------------------------------------------------------------


def test_same_header_same_item_is_served_again_with_the_original_receipt(
    vendor, broker, p, clock
) -> None:
    chain = broker.issue(100)
    first = p(vendor, chain, 0, 5)
    p(vendor, chain, 5, 10, OTHER)
    broker.down = True  # a retry needs no broker and no lease
    clock.advance(120)
    again = p(vendor, chain, 0, 5)
    assert again.replayed and again.receipt == first.receipt and again.words_left == 95
    assert len(vendor.clicks(chain.ecoin_id.hex())) == 2


def test_same_header_other_item_is_already_spent(vendor, broker, p) -> None:
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    with pytest.raises(AlreadySpent) as err:
        p(vendor, chain, 0, 5, OTHER)
    assert (err.value.index, err.value.seen) == (5, seen_of(chain.word(5)))


def test_retry_after_retry_ttl_is_not_the_same_purchase(vendor, broker, p, clock) -> None:
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    clock.advance(vendor.limits.retry_ttl_s + 1)
    with pytest.raises(AlreadySpent):
        p(vendor, chain, 0, 5)


def test_cas_race_exactly_one_payment_wins(vendor, broker, make_header) -> None:
    chain = broker.issue(100)
    vendor.pay(make_header(chain, 0, 5), ART, vendor._ports.clock.now_ms())
    value = make_header(chain, 5, 10)
    barrier = threading.Barrier(2)
    outcomes: list[object] = []

    def run(item: Item) -> None:
        barrier.wait()
        try:
            outcomes.append(vendor.pay(value, item, vendor._ports.clock.now_ms()))
        except Exception as err:
            outcomes.append(err)

    threads = [threading.Thread(target=run, args=(i,)) for i in (ART, OTHER)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [o for o in outcomes if isinstance(o, PaymentResult)]
    losses = [o for o in outcomes if isinstance(o, AlreadySpent)]
    assert len(wins) == 1 and len(losses) == 1, outcomes
    assert (losses[0].index, losses[0].seen) == (10, seen_of(chain.word(10)))
    assert [c.to_index for c in vendor.clicks(chain.ecoin_id.hex())] == [5, 10]


def test_racing_twins_of_one_purchase_get_one_receipt(vendor, broker, make_header) -> None:
    chain = broker.issue(100)
    value = make_header(chain, 0, 5)
    barrier = threading.Barrier(6)
    results: list[object] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(vendor.pay(value, ART, vendor._ports.clock.now_ms()))
        except Exception as err:
            results.append(err)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, PaymentResult) for r in results), results
    assert len(results) == 6
    assert len({r.receipt for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert len(vendor.clicks(chain.ecoin_id.hex())) == 1
    assert broker.coins[chain.ecoin_id.hex()].epoch == 1


# -- leases and checkpoints ----------------------------------------------------


def test_expired_lease_is_renewed_synchronously(vendor, broker, p, clock) -> None:
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    clock.advance(56)  # past lease_ttl_s - max_skew_s
    p(vendor, chain, 5, 10)
    assert broker.calls["Checkpoint"] == 1
    assert broker.coins[chain.ecoin_id.hex()].latest_index == 5
    assert vendor.coin(chain.ecoin_id.hex()).view.acknowledged_index == 5


def test_lease_renewal_failure_is_broker_unavailable(vendor, broker, p, clock) -> None:
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    clock.advance(56)
    broker.down = True
    with pytest.raises(BrokerUnavailable):
        p(vendor, chain, 5, 10)
    assert vendor.coin(chain.ecoin_id.hex()).view.index == 5


def test_a_frozen_coin_is_refused_within_one_lease(vendor, broker, p, clock) -> None:
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    broker.coins[chain.ecoin_id.hex()].frozen = True
    p(vendor, chain, 5, 10)  # still inside the lease: no broker call
    clock.advance(56)
    with pytest.raises(Revoked):
        p(vendor, chain, 10, 15)
    assert vendor.coin(chain.ecoin_id.hex()).view.lease_deadline_ms == 0


def test_expired_coins_are_not_checkpointed(vendor, broker, p, clock) -> None:
    short = broker.issue(100, expires_in_s=40)
    long = broker.issue(100)
    p(vendor, short, 0, 5)
    p(vendor, long, 0, 5)
    clock.advance(41)
    summary = vendor.checkpoint_all()
    assert (summary.leased, summary.closed, summary.rejected) == (1, 0, 0)


def test_restart_holds_no_lease_until_renewed(vendor, broker, p) -> None:
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    vendor.reset_leases()
    assert vendor.coin(chain.ecoin_id.hex()).view.lease_deadline_ms == 0
    p(vendor, chain, 5, 10)
    assert broker.calls["Checkpoint"] == 1


def test_unreported_units_force_a_synchronous_checkpoint(make_vendor, broker, p) -> None:
    vendor = make_vendor(limits=broker.limits.replace(max_unreported_units=12))
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    p(vendor, chain, 5, 10)
    assert broker.calls["Checkpoint"] == 0
    p(vendor, chain, 10, 15)  # 15 - 0 > 12: checkpoint index 10 first
    assert broker.calls["Checkpoint"] == 1
    assert broker.coins[chain.ecoin_id.hex()].latest_index == 10


def test_checkpoint_all_renews_and_closes(make_vendor, broker, p, clock) -> None:
    vendor = make_vendor()
    kept = broker.issue(100)
    lost = broker.issue(100)
    p(vendor, kept, 0, 5)
    p(vendor, lost, 0, 5)
    broker.move_elsewhere(lost.ecoin_id.hex())
    clock.advance(30)
    summary = vendor.checkpoint_all()
    assert (summary.leased, summary.closed, summary.rejected) == (1, 1, 0)
    assert vendor.coin(kept.ecoin_id.hex()).view.lease_deadline_ms == clock.now_ms() + 55_000
    assert vendor.coin(lost.ecoin_id.hex()).view.state is VendorCoinState.CLOSED
    assert broker.coins[kept.ecoin_id.hex()].latest_index == 5


def test_a_closed_coin_is_acquired_again(make_vendor, broker, p) -> None:
    vendor = make_vendor()
    chain = broker.issue(100)
    p(vendor, chain, 0, 5)
    vendor.checkpoint_all()
    coin = broker.coins[chain.ecoin_id.hex()]
    coin.holder = None  # released, FREE at epoch 1
    vendor.checkpoint_all()  # CLOSED here
    assert vendor.coin(chain.ecoin_id.hex()).view.state is VendorCoinState.CLOSED
    p(vendor, chain, 5, 10)
    stored = vendor.coin(chain.ecoin_id.hex())
    assert (stored.view.state, stored.view.epoch, stored.view.index) == (
        VendorCoinState.HELD,
        2,
        10,
    )


# -- hand-off ------------------------------------------------------------------


def test_hand_off_between_two_vendors(make_vendor, broker, p) -> None:
    v1 = make_vendor("daily-hash")
    v2 = make_vendor("chain-gazette")
    chain = broker.issue(100)
    ecoin = chain.ecoin_id.hex()
    p(v1, chain, 0, 5)
    p(v1, chain, 5, 10)
    result = p(v2, chain, 10, 15)
    r = receipt(result, v2)
    assert (r.vendor_id, r.epoch, r.from_index, r.to_index) == ("chain-gazette", 2, 10, 15)
    assert (broker.coins[ecoin].holder, broker.coins[ecoin].epoch) == ("chain-gazette", 2)
    s1 = v1.coin(ecoin)
    assert s1.view.state is VendorCoinState.HANDING_OFF and s1.handoff_to == "chain-gazette"

    # The reader returns to V1: the broker says V1's epoch is over, so V1 takes
    # the coin back from V2 by the same route instead of answering coin_busy.
    back = receipt(p(v1, chain, 15, 20), v1)
    assert (back.epoch, back.from_index, back.to_index) == (3, 15, 20)
    assert (broker.coins[ecoin].holder, broker.coins[ecoin].epoch) == ("daily-hash", 3)
    assert v2.coin(ecoin).view.state is VendorCoinState.HANDING_OFF


def test_completed_hand_off_closes_the_old_epoch_at_reclaim(make_vendor, broker, p, clock):
    v1 = make_vendor("daily-hash")
    v2 = make_vendor("chain-gazette")
    chain = broker.issue(100)
    ecoin = chain.ecoin_id.hex()
    p(v1, chain, 0, 5)
    p(v2, chain, 5, 10)
    assert v1.reclaim_due() == 0
    clock.advance(v1.limits.handoff_ttl_s + 1)
    assert v1.reclaim_due() == 1  # Reclaim loses to the recorded hand-off
    assert v1.coin(ecoin).view.state is VendorCoinState.CLOSED
    assert (broker.coins[ecoin].holder, broker.coins[ecoin].epoch) == ("chain-gazette", 2)


def test_hand_off_is_idempotent_and_refuses_another_vendor(make_vendor, broker, p) -> None:
    v1 = make_vendor("daily-hash")
    make_vendor("chain-gazette")
    make_vendor("third")
    chain = broker.issue(100)
    ecoin = chain.ecoin_id.hex()
    p(v1, chain, 0, 5)
    grant = broker.hand_off_grant(ecoin, "chain-gazette")
    now = v1._ports.clock.now_ms()
    first = v1.hand_off(grant, "chain-gazette", now)
    again = v1.hand_off(grant, "chain-gazette", now)
    assert first.SerializeToString() == again.SerializeToString()
    ci = open_envelope(first, pb.CoinIndex, v1._ports.identity.key.public_key)
    assert (ci.index, ci.payword, ci.to_vendor, ci.epoch) == (5, chain.word(5), "chain-gazette", 1)
    with pytest.raises(CoinBusy):
        v1.hand_off(broker.hand_off_grant(ecoin, "third"), "third", now)
    with pytest.raises(PermissionDenied):
        v1.hand_off(grant, "third", now)
    with pytest.raises(CoinBusy) as busy:  # the hand-off is under way: V1 accepts nothing
        p(v1, chain, 5, 10)
    assert busy.value.retry_after_s and busy.value.retry_after_s >= 1


def test_hand_off_refuses_another_epoch_and_expired_grants(make_vendor, broker, p, clock) -> None:
    v1 = make_vendor("daily-hash")
    make_vendor("chain-gazette")
    chain = broker.issue(100)
    ecoin = chain.ecoin_id.hex()
    p(v1, chain, 0, 5)
    grant = broker.hand_off_grant(ecoin, "chain-gazette")
    broker.coins[ecoin].epoch += 1
    stale = broker.hand_off_grant(ecoin, "chain-gazette")
    with pytest.raises(PreconditionFailed):
        v1.hand_off(stale, "chain-gazette", clock.now_ms())
    clock.advance(31)
    with pytest.raises(PreconditionFailed, match="expired"):
        v1.hand_off(grant, "chain-gazette", clock.now_ms())
    assert v1.coin(ecoin).view.state is VendorCoinState.HELD


def test_abandoned_hand_off_is_reclaimed(make_vendor, broker, p, clock) -> None:
    v1 = make_vendor("daily-hash")
    make_vendor("chain-gazette")
    chain = broker.issue(100)
    ecoin = chain.ecoin_id.hex()
    p(v1, chain, 0, 5)
    v1.hand_off(broker.hand_off_grant(ecoin, "chain-gazette"), "chain-gazette", clock.now_ms())
    assert v1.reclaim_due() == 0  # not due yet
    clock.advance(v1.limits.handoff_ttl_s)
    assert v1.reclaim_due() == 1
    stored = v1.coin(ecoin)
    assert (stored.view.state, stored.view.epoch, stored.view.index) == (
        VendorCoinState.HELD,
        2,
        5,
    )
    assert (broker.coins[ecoin].holder, broker.coins[ecoin].epoch) == ("daily-hash", 2)
    r = receipt(p(v1, chain, 5, 10), v1)
    assert (r.epoch, r.from_index, r.to_index) == (2, 5, 10)


def test_unreachable_holder_gives_coin_busy(make_vendor, broker, p, peer_registry) -> None:
    v1 = make_vendor("daily-hash")
    v2 = make_vendor("chain-gazette")
    chain = broker.issue(100)
    p(v1, chain, 0, 5)
    peer_registry["daily-hash.test:1"] = None
    with pytest.raises(CoinBusy, match="unreachable"):
        p(v2, chain, 5, 10)
    assert broker.coins[chain.ecoin_id.hex()].holder == "daily-hash"
