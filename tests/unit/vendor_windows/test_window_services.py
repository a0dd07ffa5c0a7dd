"""Cookie-cache windows at one vendor: VendorServices over a fake broker and
real SQLite (opening, clicks, retries, closing, expiry, hand-off, races)."""

from __future__ import annotations

import secrets
import threading

import pytest

from netpay.chain import seen_of
from netpay.encoding import b64url_encode
from netpay.envelope import open_envelope, seal
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    CoinBusy,
    Expired,
    Insufficient,
    LimitExceeded,
    Malformed,
    NotFound,
    Revoked,
    WrongCurrency,
)
from netpay.money import Money
from netpay.v1 import statements_pb2 as pb
from vendor.domain import CloseReason, Item, VendorCoinState, WindowState
from vendor.services import PaymentResult, WindowOpened

from .conftest import header, open_window, receipt_of, window_header


def credit_of(envelope: pb.Envelope, vendor) -> pb.WindowCredit:
    return open_envelope(envelope, pb.WindowCredit, vendor._ports.identity.key.public_key)


def the_window(vendor, chain):
    [window] = [w for w in vendor.windows(chain.ecoin_id.hex()) if w.state is WindowState.OPEN]
    return window


def test_open_then_clicks_consume_exactly_the_prices_with_contiguous_receipts(
    vendor, broker, clock, items
) -> None:
    chain = broker.issue(100, expires_in_s=30 * 86_400)
    opened = open_window(vendor, chain, 0, 30)
    w = opened.window
    assert (w.window_from, w.window_top, w.consumed_index, w.words_left) == (0, 30, 0, 30)
    assert (w.epoch, w.state, w.unit_value_minor, w.currency) == (1, WindowState.OPEN, 1, "EUR")
    assert w.expires_at_ms == clock.now_ms() + 86_400_000
    assert opened.max_age_s(clock.now_ms()) == 86_400
    assert not opened.replayed and opened.vendor_id == "daily-hash"
    assert len(opened.handle) == 43
    # The window is a spend of (0, 30]: the coin stands at the top at once.
    coin = vendor.coin(chain.ecoin_id.hex())
    assert coin is not None
    assert (coin.view.index, coin.view.payword) == (30, chain.word(30))

    edges = [0]
    for article in ("4", "7", "1", "2"):  # 5 + 10 + 1 + 2 words
        clock.advance(1)
        result = vendor.pay_from_window(opened.handle, items[article], clock.now_ms())
        r = receipt_of(result, vendor)
        assert (r.from_index, r.epoch, r.item_id) == (edges[-1], 1, article)
        assert r.to_index - r.from_index == items[article].price.amount_minor
        assert (r.amount_minor, r.currency, r.vendor_id) == (
            items[article].price.amount_minor,
            "EUR",
            "daily-hash",
        )
        edges.append(r.to_index)
        assert result.words_left == 30 - r.to_index
        assert not result.replayed
        assert result.credit_left == Money(30 - r.to_index, "EUR")
    assert edges == [0, 5, 15, 16, 18]
    assert the_window(vendor, chain).consumed_index == 18
    clicks = vendor.window_clicks(w.window_id)
    assert [(c.from_index, c.to_index, c.item_id) for c in clicks] == [
        (0, 5, "4"),
        (5, 15, "7"),
        (15, 16, "1"),
        (16, 18, "2"),
    ]
    # The window clicks are not per-click spends: the coin did not move again.
    assert vendor.coin(chain.ecoin_id.hex()).view.index == 30
    assert vendor.clicks(chain.ecoin_id.hex()) == []
    # ...but they are revenue: the dashboard counts what was consumed, not the prepayment.
    board = vendor.dashboard()
    assert board.click_count == 4
    [revenue] = board.revenue
    assert (revenue.currency, revenue.amount_minor, revenue.clicks) == ("EUR", 18, 4)


def test_a_retried_click_consumes_nothing_and_reserves_the_receipt(
    vendor, broker, clock, items
) -> None:
    chain = broker.issue(100)
    opened = open_window(vendor, chain, 0, 20)
    first = vendor.pay_from_window(opened.handle, items["4"], clock.now_ms())
    clock.advance(599)
    again = vendor.pay_from_window(opened.handle, items["4"], clock.now_ms())
    assert again.replayed and again.receipt == first.receipt
    assert again.words_left == 15
    assert the_window(vendor, chain).consumed_index == 5
    # Past retry_ttl_s the same article is a new click.
    clock.advance(2)
    later = vendor.pay_from_window(opened.handle, items["4"], clock.now_ms())
    assert not later.replayed
    assert (receipt_of(later, vendor).from_index, receipt_of(later, vendor).to_index) == (5, 10)


def test_a_click_that_does_not_fit_spends_nothing(vendor, broker, clock, items) -> None:
    chain = broker.issue(100)
    opened = open_window(vendor, chain, 0, 12)
    vendor.pay_from_window(opened.handle, items["7"], clock.now_ms())  # 10 of 12
    with pytest.raises(Insufficient):
        vendor.pay_from_window(opened.handle, items["4"], clock.now_ms())  # 5 > 2
    assert the_window(vendor, chain).consumed_index == 10
    vendor.pay_from_window(opened.handle, items["2"], clock.now_ms())  # 2 fits exactly
    assert the_window(vendor, chain).words_left == 0


def test_a_price_in_another_currency_is_refused(vendor, broker, clock) -> None:
    chain = broker.issue(100)
    opened = open_window(vendor, chain, 0, 12)
    with pytest.raises(WrongCurrency):
        vendor.pay_from_window(opened.handle, Item("x", Money(5, "USD")), clock.now_ms())
    assert the_window(vendor, chain).consumed_index == 0


@pytest.mark.parametrize(
    "handle",
    [
        b64url_encode(secrets.token_bytes(32)),  # well formed, unknown
        "x" * 43,  # 43 chars but no 32-byte value ("x" is fine base64url: still unknown)
        "short",
        "!" * 43,
        "",
        "a" * 200,
    ],
)
def test_a_foreign_or_garbled_handle_spends_nothing(vendor, broker, clock, items, handle) -> None:
    chain = broker.issue(100)
    open_window(vendor, chain, 0, 20)
    with pytest.raises(NotFound):
        vendor.pay_from_window(handle, items["1"], clock.now_ms())
    with pytest.raises(NotFound):
        vendor.close_window(handle, clock.now_ms())
    assert the_window(vendor, chain).consumed_index == 0


def test_close_signs_the_credit_and_the_handle_then_pays_nothing(
    vendor, broker, clock, items
) -> None:
    chain = broker.issue(100)
    opened = open_window(vendor, chain, 0, 40)
    vendor.pay_from_window(opened.handle, items["7"], clock.now_ms())
    vendor.pay_from_window(opened.handle, items["5"], clock.now_ms())
    clock.advance(5)
    closed = vendor.close_window(opened.handle, clock.now_ms())
    credit = credit_of(closed.credit, vendor)
    assert (credit.vendor_id, credit.ecoin_id, credit.epoch) == (
        "daily-hash",
        chain.ecoin_id.hex(),
        1,
    )
    assert (credit.window_top, credit.consumed_index, credit.refund_units) == (40, 17, 23)
    assert (credit.reason, credit.time_ms) == ("closed", clock.now_ms())
    assert closed.refund_units == 23
    [stored] = vendor.windows(chain.ecoin_id.hex())
    assert (stored.state, stored.close_reason, stored.closed_at_ms) == (
        WindowState.CLOSED,
        CloseReason.CLOSED,
        clock.now_ms(),
    )
    # A repeated close returns the same credit (a lost reply costs nothing).
    assert vendor.close_window(opened.handle, clock.now_ms() + 9).credit == closed.credit
    # The replayed handle pays for nothing new.
    with pytest.raises(Expired):
        vendor.pay_from_window(opened.handle, items["1"], clock.now_ms())
    assert vendor.windows(chain.ecoin_id.hex())[0].consumed_index == 17
    # An article it already paid for within retry_ttl_s is served again, for nothing.
    again = vendor.pay_from_window(opened.handle, items["7"], clock.now_ms())
    assert again.replayed and receipt_of(again, vendor).to_index == 10


def test_a_retried_window_header_returns_the_same_window_and_spends_nothing(
    vendor, broker, clock
) -> None:
    chain = broker.issue(100)
    first = open_window(vendor, chain, 0, 20)
    clock.advance(30)
    again = open_window(vendor, chain, 0, 20)
    assert again.replayed and again.handle == first.handle
    assert again.window.window_id == first.window.window_id
    assert len(vendor.windows(chain.ecoin_id.hex())) == 1
    assert vendor.coin(chain.ecoin_id.hex()).view.index == 20
    # Past retry_ttl_s the header is spent like any other.
    clock.advance(600)
    with pytest.raises(AlreadySpent) as info:
        open_window(vendor, chain, 0, 20)
    assert (info.value.index, info.value.seen) == (20, seen_of(chain.word(20)))


def test_a_second_window_closes_the_first(vendor, broker, clock, items) -> None:
    chain = broker.issue(200)
    first = open_window(vendor, chain, 0, 20)
    vendor.pay_from_window(first.handle, items["4"], clock.now_ms())
    second = open_window(vendor, chain, 20, 50)
    assert second.handle != first.handle
    old, new = vendor.windows(chain.ecoin_id.hex())
    assert (old.state, old.close_reason, new.state) == (
        WindowState.CLOSED,
        CloseReason.CLOSED,
        WindowState.OPEN,
    )
    assert old.credit is not None
    credit = credit_of(pb.Envelope.FromString(old.credit), vendor)
    assert (credit.window_top, credit.consumed_index, credit.refund_units, credit.reason) == (
        20,
        5,
        15,
        "closed",
    )
    with pytest.raises(Expired):
        vendor.pay_from_window(first.handle, items["1"], clock.now_ms())
    paid = vendor.pay_from_window(second.handle, items["1"], clock.now_ms())
    assert (receipt_of(paid, vendor).from_index, paid.words_left) == (20, 49)


def test_window_payment_rules(vendor, broker, clock) -> None:
    chain = broker.issue(1000)
    now = clock.now_ms()
    with pytest.raises(LimitExceeded):
        vendor.open_window(window_header(chain, 0, 501), now)
    with pytest.raises(Malformed):
        vendor.open_window(header(chain, 0, 5, window=0), now)
    with pytest.raises(Malformed):
        vendor.open_window(header(chain, 0, 6, window=5), now)
    with pytest.raises(Malformed):
        vendor.open_window(header(chain, 0, 5), now)  # no window=
    assert broker.calls["AcquireCoin"] == 0
    with pytest.raises(BadPayword):
        vendor.open_window(window_header(chain, 0, 5, word=bytes(32)), now)
    assert vendor.windows(chain.ecoin_id.hex()) == []
    open_window(vendor, chain, 0, 500)  # the largest window
    with pytest.raises(AlreadySpent):
        open_window(vendor, chain, 499, 10)  # below the coin's index
    assert vendor.coin(chain.ecoin_id.hex()).view.index == 500
    # A window header is never a paid click.
    from vendor.articles import load_newspaper

    article = load_newspaper(None).article("1")
    assert article is not None
    with pytest.raises(Malformed, match="window"):
        vendor.pay(window_header(chain, 500, 1), article.item(), now)


def test_a_window_past_the_coin_end_is_insufficient(vendor, broker, clock) -> None:
    chain = broker.issue(10)
    open_window(vendor, chain, 0, 2)
    with pytest.raises(Insufficient):  # checked before any hashing
        vendor.open_window(window_header(chain, 2, 9, word=bytes(32)), clock.now_ms())
    assert vendor.coin(chain.ecoin_id.hex()).view.index == 2


def test_per_click_payments_continue_from_the_window_top(vendor, broker, clock, items) -> None:
    chain = broker.issue(100)
    open_window(vendor, chain, 0, 20)
    paid = vendor.pay(header(chain, 20, 25), items["4"], clock.now_ms())
    assert receipt_of(paid, vendor).from_index == 20
    # The window stays open (the coin moved past it, but its words are prepaid).
    assert the_window(vendor, chain).words_left == 20


def test_expired_windows_are_closed_by_the_loop(vendor, broker, clock, items) -> None:
    chain = broker.issue(100, expires_in_s=10 * 86_400)
    opened = open_window(vendor, chain, 0, 30)
    vendor.pay_from_window(opened.handle, items["7"], clock.now_ms())
    clock.advance(86_399)
    assert vendor.close_expired_windows() == 0
    vendor.checkpoint_all()  # the lease, renewed by the loop meanwhile
    vendor.pay_from_window(opened.handle, items["4"], clock.now_ms())
    clock.advance(1)
    with pytest.raises(Expired):  # past its expiry it pays nothing, closed or not
        vendor.pay_from_window(opened.handle, items["1"], clock.now_ms())
    assert vendor.close_expired_windows() == 1
    assert vendor.close_expired_windows() == 0
    [w] = vendor.windows(chain.ecoin_id.hex())
    assert (w.state, w.close_reason, w.consumed_index) == (
        WindowState.CLOSED,
        CloseReason.EXPIRED,
        15,
    )
    credit = credit_of(pb.Envelope.FromString(w.credit), vendor)
    assert (credit.reason, credit.refund_units) == ("expired", 15)
    assert vendor.close_window(opened.handle, clock.now_ms()).refund_units == 15


def test_a_window_never_outlives_the_coin(vendor, broker, clock) -> None:
    chain = broker.issue(100, expires_in_s=3600)
    opened = open_window(vendor, chain, 0, 10)
    expected = clock.now_ms() + 3600 * 1000 - 5_000  # expires_at - max_skew_s
    assert opened.window.expires_at_ms == expected


def test_a_lapsed_lease_is_renewed_before_consuming(vendor, broker, clock, items) -> None:
    chain = broker.issue(100)
    opened = open_window(vendor, chain, 0, 30)
    calls = broker.calls["Checkpoint"]
    clock.advance(120)  # the lease ran out
    paid = vendor.pay_from_window(opened.handle, items["4"], clock.now_ms())
    assert receipt_of(paid, vendor).to_index == 5
    assert broker.calls["Checkpoint"] == calls + 1
    # A frozen coin's lease is not renewed: the window pays nothing.
    broker.coins[chain.ecoin_id.hex()].frozen = True
    clock.advance(120)
    with pytest.raises(Revoked):
        vendor.pay_from_window(opened.handle, items["1"], clock.now_ms())
    assert the_window(vendor, chain).consumed_index == 5


def test_an_epoch_closed_behind_our_back_closes_the_window(vendor, broker, clock, items) -> None:
    chain = broker.issue(100)
    opened = open_window(vendor, chain, 0, 30)
    vendor.pay_from_window(opened.handle, items["1"], clock.now_ms())
    broker.move_elsewhere(chain.ecoin_id.hex())
    assert vendor.checkpoint_all().closed == 1
    [w] = vendor.windows(chain.ecoin_id.hex())
    assert (w.state, w.close_reason, w.words_left) == (WindowState.CLOSED, CloseReason.CLOSED, 29)
    with pytest.raises(Expired):
        vendor.pay_from_window(opened.handle, items["2"], clock.now_ms())


def test_hand_off_closes_the_window_in_the_same_step(make_vendor, broker, clock, items) -> None:
    v1 = make_vendor("daily-hash")
    v2 = make_vendor("chain-gazette")
    chain = broker.issue(200)
    opened = open_window(v1, chain, 0, 40)
    v1.pay_from_window(opened.handle, items["7"], clock.now_ms())
    v1.pay_from_window(opened.handle, items["2"], clock.now_ms())
    # The reader pays the Gazette from the window top: the coin moves by HandOff.
    paid = v2.pay(header(chain, 40, 45), items["4"], clock.now_ms())
    assert (receipt_of(paid, v2).from_index, receipt_of(paid, v2).epoch) == (40, 2)
    stored = v1.coin(chain.ecoin_id.hex())
    assert stored is not None and stored.view.state is VendorCoinState.HANDING_OFF
    ci = open_envelope(
        pb.Envelope.FromString(stored.handoff_coin_index),
        pb.CoinIndex,
        v1._ports.identity.key.public_key,
    )
    assert (ci.index, ci.payword, ci.to_vendor) == (40, chain.word(40), "chain-gazette")
    [w] = v1.windows(chain.ecoin_id.hex())
    assert (w.state, w.close_reason, w.consumed_index) == (
        WindowState.CLOSED,
        CloseReason.HANDOFF,
        12,
    )
    credit = credit_of(pb.Envelope.FromString(w.credit), v1)
    assert (credit.window_top, credit.consumed_index, credit.refund_units, credit.reason) == (
        40,
        12,
        28,
        "handoff",
    )
    with pytest.raises(Expired):
        v1.pay_from_window(opened.handle, items["1"], clock.now_ms())
    # A repeated HandOff returns the same CoinIndex and the same credit.
    grant = seal(
        pb.HandOffGrant(
            ecoin_id=chain.ecoin_id.hex(),
            from_vendor="daily-hash",
            to_vendor="chain-gazette",
            epoch=1,
            expires_at_ms=clock.now_ms() + 30_000,
            broker_id="broker",
        ),
        broker.key,
    )
    again = v1.hand_off_with_credit(grant, "chain-gazette", clock.now_ms())
    assert again.coin_index.SerializeToString() == stored.handoff_coin_index
    assert again.window_credit is not None
    assert again.window_credit.SerializeToString() == w.credit


def test_hand_off_without_a_window_carries_no_credit(make_vendor, broker, clock, items) -> None:
    v1 = make_vendor("daily-hash")
    chain = broker.issue(100)
    v1.pay(header(chain, 0, 5), items["4"], clock.now_ms())
    grant = seal(
        pb.HandOffGrant(
            ecoin_id=chain.ecoin_id.hex(),
            from_vendor="daily-hash",
            to_vendor="chain-gazette",
            epoch=1,
            expires_at_ms=clock.now_ms() + 30_000,
            broker_id="broker",
        ),
        broker.key,
    )
    result = v1.hand_off_with_credit(grant, "chain-gazette", clock.now_ms())
    assert result.window_credit is None
    assert (
        open_envelope(result.coin_index, pb.CoinIndex, v1._ports.identity.key.public_key).index == 5
    )


def test_concurrent_clicks_never_consume_more_than_the_window(vendor, broker, clock) -> None:
    chain = broker.issue(200)
    opened = open_window(vendor, chain, 0, 50)
    results: list[object] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def reader(n: int) -> None:
        start.wait()
        for k in range(4):  # 8 readers x 4 articles x 5 words: far more than 50
            try:
                outcome: object = vendor.pay_from_window(
                    opened.handle, Item(f"a{n}-{k}", Money(5, "EUR")), clock.now_ms()
                )
            except (Insufficient, CoinBusy) as err:
                outcome = err
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    paid = [r for r in results if isinstance(r, PaymentResult)]
    assert paid and not any(r.replayed for r in paid)
    w = the_window(vendor, chain)
    assert w.consumed_index == 5 * len(paid) <= 50
    ranges = sorted(
        (receipt_of(r, vendor).from_index, receipt_of(r, vendor).to_index) for r in paid
    )
    assert ranges == [(5 * i, 5 * i + 5) for i in range(len(paid))]  # contiguous, disjoint
    assert len(vendor.window_clicks(w.window_id)) == len(paid)
    # What the race left is still there, and not a word more.
    while w.words_left:
        vendor.pay_from_window(
            opened.handle, Item(f"b{w.words_left}", Money(5, "EUR")), clock.now_ms()
        )
        w = the_window(vendor, chain)
    assert w.consumed_index == 50
    with pytest.raises(Insufficient):
        vendor.pay_from_window(opened.handle, Item("last", Money(1, "EUR")), clock.now_ms())


def test_two_windows_opened_at_once_leave_one_open(vendor, broker, clock) -> None:
    chain = broker.issue(400)
    open_window(vendor, chain, 0, 10)  # the vendor holds the coin, one window open
    start = threading.Barrier(2)
    outcomes: list[object] = []

    def opener(units: int) -> None:
        start.wait()
        try:
            outcomes.append(open_window(vendor, chain, 10, units))
        except (AlreadySpent, CoinBusy) as err:
            outcomes.append(err)

    threads = [threading.Thread(target=opener, args=(u,)) for u in (50, 60)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    [won] = [o for o in outcomes if isinstance(o, WindowOpened)]
    [lost] = [o for o in outcomes if not isinstance(o, WindowOpened)]
    assert isinstance(lost, AlreadySpent)
    windows = vendor.windows(chain.ecoin_id.hex())
    assert [w.state for w in windows] == [WindowState.CLOSED, WindowState.OPEN]
    assert windows[1].window_top == won.window.window_top
    assert vendor.coin(chain.ecoin_id.hex()).view.index == won.window.window_top
