"""VendorServices.wallet_signin / pay_with_wallet over the in-memory broker."""

from __future__ import annotations

import pytest

from netpay.errors import BrokerUnavailable, CoinBusy, Insufficient, NotFound
from netpay.money import Money
from tests.fakes.broker import FakeBroker
from vendor.domain import CloseReason, Item, VendorCoinState, WindowState


def item(cents: int, item_id: str | None = None) -> Item:
    return Item(item_id or f"a{cents}", Money(cents, "EUR"))


def test_sign_in_takes_custody_and_articles_draw_windows(
    broker: FakeBroker, make_wallet_vendor, new_code, clock
) -> None:
    chain = broker.issue(n=120)
    ecoin = chain.ecoin_id.hex()
    v1, client = make_wallet_vendor("v1")
    signed = v1.wallet_signin(new_code(ecoin, "v1"), clock.now_ms())
    assert signed.ecoin_id == ecoin and len(signed.handle) == 43
    stored = v1.coin(ecoin)
    assert stored is not None and stored.view.state is VendorCoinState.HELD
    # A code is single use.
    with pytest.raises(NotFound):
        v1.wallet_signin("x" * 43, clock.now_ms())

    r1 = v1.pay_with_wallet(signed.handle, item(1), clock.now_ms())
    assert (r1.words_left, r1.window_words_left, r1.to_index) == (119, 49, 1)
    assert r1.credit_left == Money(119, "EUR")
    r2 = v1.pay_with_wallet(signed.handle, item(45), clock.now_ms())
    assert (r2.words_left, r2.window_words_left) == (74, 4)
    # The price no longer fits in the window: a new draw closes it with a credit.
    r3 = v1.pay_with_wallet(signed.handle, item(10), clock.now_ms())
    assert client.draws == [(0, 50), (50, 100)]
    assert (r3.words_left, r3.window_words_left) == (60, 40)
    old, new = v1.windows(ecoin)
    assert old.state is WindowState.CLOSED and old.close_reason is CloseReason.CLOSED
    assert old.words_left == 4
    assert (new.window_from, new.window_top, new.consumed_index) == (50, 100, 60)
    stored = v1.coin(ecoin)
    assert stored is not None and stored.view.index == 100
    assert stored.view.acknowledged_index == 100  # the broker knows w[100] already
    # The same item again re-serves its Receipt.
    again = v1.pay_with_wallet(signed.handle, item(10), clock.now_ms())
    assert again.replayed and again.receipt == r3.receipt
    # The last 20 words: a draw capped by what is left; then nothing more.
    v1.pay_with_wallet(signed.handle, item(40, "b40"), clock.now_ms())
    r5 = v1.pay_with_wallet(signed.handle, item(15, "b15"), clock.now_ms())
    assert client.draws[-1] == (100, 120) and r5.words_left == 5
    with pytest.raises(Insufficient):
        v1.pay_with_wallet(signed.handle, item(7, "b7"), clock.now_ms())


def test_a_lost_draw_reply_costs_nothing(
    broker: FakeBroker, make_wallet_vendor, new_code, clock
) -> None:
    chain = broker.issue(n=200)
    ecoin = chain.ecoin_id.hex()
    v1, client = make_wallet_vendor("v1")
    signed = v1.wallet_signin(new_code(ecoin, "v1"), clock.now_ms())
    client.lose_next_draw = True
    with pytest.raises(BrokerUnavailable):
        v1.pay_with_wallet(signed.handle, item(1), clock.now_ms())
    result = v1.pay_with_wallet(signed.handle, item(1), clock.now_ms())
    # The next window starts at our stored index and covers the lost one.
    [window] = v1.windows(ecoin)
    assert (window.window_from, window.window_top) == (0, 100)
    assert result.words_left == 199


def test_a_payword_that_does_not_verify_is_not_trusted(
    broker: FakeBroker, make_wallet_vendor, new_code, clock
) -> None:
    chain = broker.issue(n=200)
    ecoin = chain.ecoin_id.hex()
    v1, client = make_wallet_vendor("v1")
    signed = v1.wallet_signin(new_code(ecoin, "v1"), clock.now_ms())
    client.wrong_word = True
    with pytest.raises(BrokerUnavailable):
        v1.pay_with_wallet(signed.handle, item(1), clock.now_ms())
    assert v1.windows(ecoin) == []
    stored = v1.coin(ecoin)
    assert stored is not None and stored.view.index == 0


def test_coin_busy_and_unknown_or_expired_sessions(
    broker: FakeBroker, make_wallet_vendor, new_code, clock
) -> None:
    chain = broker.issue(n=200, expires_in_s=3600)
    ecoin = chain.ecoin_id.hex()
    v1, client = make_wallet_vendor("v1")
    signed = v1.wallet_signin(new_code(ecoin, "v1"), clock.now_ms())
    client.busy = True
    with pytest.raises(CoinBusy):
        v1.pay_with_wallet(signed.handle, item(1), clock.now_ms())
    client.busy = False
    for handle in ("", "short", "A" * 43, "!" * 43):
        with pytest.raises(NotFound):
            v1.pay_with_wallet(handle, item(1), clock.now_ms())
    # The session ends before the coin stops being accepted.
    assert signed.expires_at_ms <= clock.now_ms() + 3600 * 1000
    clock.advance(3600)
    with pytest.raises(NotFound):
        v1.pay_with_wallet(signed.handle, item(1), clock.now_ms())


def test_a_second_vendor_takes_the_coin_over_by_hand_off(
    broker: FakeBroker, make_wallet_vendor, new_code, clock
) -> None:
    chain = broker.issue(n=200)
    ecoin = chain.ecoin_id.hex()
    v1, _ = make_wallet_vendor("v1")
    v2, c2 = make_wallet_vendor("v2")
    s1 = v1.wallet_signin(new_code(ecoin, "v1"), clock.now_ms())
    v1.pay_with_wallet(s1.handle, item(5), clock.now_ms())
    # Another vendor's code is not ours.
    with pytest.raises(NotFound):
        v2.wallet_signin(new_code(ecoin, "v1"), clock.now_ms())
    s2 = v2.wallet_signin(new_code(ecoin, "v2"), clock.now_ms())
    held = v2.coin(ecoin)
    assert held is not None and held.view.state is VendorCoinState.HELD
    assert held.view.index == 50  # the CoinIndex at v1's window top
    [closed] = v1.windows(ecoin)
    assert closed.close_reason is CloseReason.HANDOFF and closed.words_left == 45
    r = v2.pay_with_wallet(s2.handle, item(2), clock.now_ms())
    assert r.words_left == 148 and c2.draws == [(50, 100)]
    # Back at v1 with its own session: the coin comes back.
    r1 = v1.pay_with_wallet(s1.handle, item(3), clock.now_ms())
    assert r1.words_left == 97


def test_a_draw_that_loses_its_commit_to_a_twin_is_opened_not_dropped(
    broker: FakeBroker, make_wallet_vendor, new_code, clock
) -> None:
    chain = broker.issue(n=300)
    ecoin = chain.ecoin_id.hex()
    v1, client = make_wallet_vendor("v1")
    signed = v1.wallet_signin(new_code(ecoin, "v1"), clock.now_ms())
    twin_results = []
    # While our draw is on its way, a twin request (another worker) draws (0, 50]
    # and commits first; ours gets (50, 100] and its commit loses the race.
    client.twin = lambda: twin_results.append(
        v1.pay_with_wallet(signed.handle, item(3, "twin"), clock.now_ms())
    )
    ours = v1.pay_with_wallet(signed.handle, item(60, "ours"), clock.now_ms())
    assert client.draws == [(0, 50), (50, 110)]
    [twin] = twin_results
    assert twin.to_index == 3
    # Ours is opened from the coin's index then (50), not dropped: the broker's
    # latest word and the vendor's agree, so checkpoints and hand-offs still work.
    assert ours.to_index == 110
    stored = v1.coin(ecoin)
    assert stored is not None and stored.view.index == 110 == broker.coins[ecoin].latest_index
    first, second = v1.windows(ecoin)
    assert (first.window_from, first.window_top, first.state) == (0, 50, WindowState.CLOSED)
    assert first.words_left == 47  # credited back to the reader
    assert (second.window_from, second.window_top, second.consumed_index) == (50, 110, 110)
