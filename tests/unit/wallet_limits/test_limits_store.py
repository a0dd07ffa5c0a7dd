"""The reader's spending limits in the wallet store: one rule, one transaction.

``ranges.allocate`` checks the limits (``netpay.spending.check_spend``)
and counts the UTC day's spending with a compare-and-set in the transaction
that moves the coin's index, so these tests drive it directly (through
``StoreShortcuts.allocate``, tests/fakes/wallet_store.py) — also from several
threads, each with its own store (its own connections), as separate wallet
processes would.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ewallet_client.store import KEEP, BridgeCharge, WindowRequest
from netpay.errors import InvalidArgument, LimitExceeded
from netpay.spending import SpendingLimits, utc_day
from tests.fakes.wallet_store import StoreShortcuts

from .conftest import add_coin, allocate

NOW_MS = 1_800_000_000_000
DAY = utc_day(NOW_MS)
NEXT_DAY_MS = (DAY + 1) * 86_400_000


def test_limits_are_set_kept_and_cleared_per_currency(store: StoreShortcuts) -> None:
    assert store.spending_limits("EUR") is None
    assert store.set_spending_limits("EUR", now_ms=NOW_MS, max_click_minor=10) == SpendingLimits(
        "EUR", 10, None
    )
    # A limit not passed stays; None clears one.
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=100)
    assert store.spending_limits("EUR") == SpendingLimits("EUR", 10, 100)
    store.set_spending_limits("USD", now_ms=NOW_MS, max_day_minor=0)
    assert store.all_spending_limits() == [
        SpendingLimits("EUR", 10, 100),
        SpendingLimits("USD", None, 0),
    ]
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_click_minor=None, max_day_minor=KEEP)
    assert store.spending_limits("EUR") == SpendingLimits("EUR", None, 100)
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=None)
    assert store.spending_limits("EUR") is None
    assert store.all_spending_limits() == [SpendingLimits("USD", None, 0)]


@pytest.mark.parametrize("bad", [-1, 10_000_001])
def test_a_limit_out_of_range_is_refused_and_nothing_changes(
    store: StoreShortcuts, bad: int
) -> None:
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_click_minor=7)
    with pytest.raises(InvalidArgument):
        store.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=bad)
    assert store.spending_limits("EUR") == SpendingLimits("EUR", 7, None)


def test_the_click_limit_refuses_and_moves_nothing(store: StoreShortcuts) -> None:
    ecoin = add_coin(store, NOW_MS)
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_click_minor=5)
    assert allocate(store, 5, NOW_MS) == 5  # exactly the limit is allowed
    with pytest.raises(LimitExceeded, match="above your limit of 5 per click"):
        allocate(store, 6, NOW_MS)
    assert store.coin(ecoin).index == 5
    assert store.outstanding_words(ecoin) == 5
    assert store.spending(DAY) == {"EUR": (5, 1)}


def test_the_day_limit_refuses_moves_nothing_and_resets_the_next_utc_day(
    store: StoreShortcuts,
) -> None:
    ecoin = add_coin(store, NOW_MS)
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=12)
    assert allocate(store, 5, NOW_MS) == 5
    assert allocate(store, 5, NOW_MS) == 10
    with pytest.raises(LimitExceeded, match="spent 10 of your daily limit of 12"):
        allocate(store, 5, NOW_MS)
    assert store.coin(ecoin).index == 10
    assert store.outstanding_words(ecoin) == 10
    assert store.spending(DAY) == {"EUR": (10, 2)}
    assert allocate(store, 2, NOW_MS) == 12  # up to the limit exactly
    with pytest.raises(LimitExceeded):
        allocate(store, 1, NEXT_DAY_MS - 1)  # the last millisecond of the day
    # 00:00 UTC: a new day, nothing spent yet.
    assert allocate(store, 5, NEXT_DAY_MS) == 17
    assert store.spending(DAY) == {"EUR": (12, 3)}
    assert store.spending(DAY + 1) == {"EUR": (5, 1)}


def test_other_currencies_have_their_own_limits_and_days(store: StoreShortcuts) -> None:
    add_coin(store, NOW_MS)
    usd = add_coin(store, NOW_MS, currency="USD")
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=0)
    with pytest.raises(LimitExceeded):
        allocate(store, 1, NOW_MS)
    alloc = store.allocate(
        amount_minor=7, currency="USD", realm="daily", url="u", now_ms=NOW_MS, skew_ms=0
    )
    assert alloc.coin.ecoin_id == usd
    assert store.spending(DAY) == {"USD": (7, 1)}  # the refusal left no EUR row


def test_spending_is_counted_without_limits_and_a_later_day_limit_counts_it(
    store: StoreShortcuts,
) -> None:
    add_coin(store, NOW_MS)
    allocate(store, 8, NOW_MS)
    assert store.spending(DAY) == {"EUR": (8, 1)}
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=10)
    with pytest.raises(LimitExceeded, match="spent 8"):
        allocate(store, 3, NOW_MS)
    assert allocate(store, 2, NOW_MS) == 10


def test_a_window_counts_against_the_day_only(store: StoreShortcuts) -> None:
    ecoin = add_coin(store, NOW_MS)
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_click_minor=5, max_day_minor=60)
    # 50 words at once: above the click limit, but a window is not a click.
    alloc = store.allocate(
        amount_minor=5,
        currency="EUR",
        realm="daily",
        url="http://127.0.0.1:1/",
        now_ms=NOW_MS,
        skew_ms=0,
        window=WindowRequest(50, "http://127.0.0.1:1"),
    )
    assert (alloc.prev, alloc.index, alloc.amount_minor) == (0, 50, 50)
    assert store.spending(DAY) == {"EUR": (50, 1)}
    with pytest.raises(LimitExceeded, match="daily limit of 60"):
        store.allocate(
            amount_minor=5,
            currency="EUR",
            realm="daily",
            url="http://127.0.0.1:1/",
            now_ms=NOW_MS,
            skew_ms=0,
            window=WindowRequest(11, "http://127.0.0.1:1"),
        )
    assert store.coin(ecoin).index == 50
    assert len(store.windows()) == 1  # the refused window was never recorded
    assert allocate(store, 5, NOW_MS) == 55


def test_a_header_reissued_for_the_same_click_is_not_counted(store: StoreShortcuts) -> None:
    add_coin(store, NOW_MS)
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=5)
    assert allocate(store, 5, NOW_MS) == 5
    assert allocate(store, 5, NOW_MS, spend=False) == 10  # after a resync
    assert store.spending(DAY) == {"EUR": (5, 1)}


def test_a_reader_limit_and_a_bridge_cap_refuse_together_in_one_transaction(
    store: StoreShortcuts,
) -> None:
    ecoin = add_coin(store, NOW_MS)
    origin = "http://127.0.0.1:8001"
    store.approve_origin(origin, max_click_minor=None, max_day_minor=None, now_ms=NOW_MS)
    charge = BridgeCharge(origin=origin, day=DAY, max_click_minor=100, max_day_minor=8)
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=6)
    assert allocate(store, 5, NOW_MS, charge=charge) == 5
    # The reader's limit refuses: the origin's spending is rolled back with it.
    with pytest.raises(LimitExceeded, match="your daily limit of 6"):
        allocate(store, 2, NOW_MS, charge=charge)
    assert store.bridge_spending(origin, DAY) == {"EUR": (5, 1)}
    # The bridge's cap refuses: the reader's spending is rolled back with it.
    store.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=None)
    with pytest.raises(LimitExceeded, match="daily cap of 8"):
        allocate(store, 4, NOW_MS, charge=charge)
    assert store.spending(DAY) == {"EUR": (5, 1)}
    assert store.coin(ecoin).index == 5


def test_concurrent_wallets_never_pass_the_day_limit_together(tmp_path: Path) -> None:
    """Eight writers, each with its own store on one file, race for a 20-cent day."""
    wallet_dir = tmp_path / "store"
    first = StoreShortcuts.open(wallet_dir)
    ecoin = add_coin(first, NOW_MS)
    first.set_spending_limits("EUR", now_ms=NOW_MS, max_day_minor=20)
    allocate(first, 5, NOW_MS)
    stores = [StoreShortcuts.open(wallet_dir) for _ in range(8)]
    barrier = threading.Barrier(len(stores))
    outcomes: list[str] = []
    lock = threading.Lock()

    def pay(s: StoreShortcuts) -> None:
        barrier.wait()
        try:
            allocate(s, 5, NOW_MS)
            outcome = "paid"
        except LimitExceeded:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=pay, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["paid"] * 3 + ["refused"] * 5
    assert first.spending(DAY) == {"EUR": (20, 4)}
    assert first.coin(ecoin).index == 20
    assert first.outstanding_words(ecoin) == 20
    for s in [first, *stores]:
        s.close()
