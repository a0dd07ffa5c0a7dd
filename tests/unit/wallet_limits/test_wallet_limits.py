"""The reader's spending limits on every payment the wallet makes with its own coins.

A fake broker and a fake newspaper (clicks at 5 cents, windows) on loopback;
one FakeClock for all, so the next UTC day comes without sleeping.
"""

from __future__ import annotations

import pytest

from ewallet_client.bridge import Bridge
from ewallet_client.wallet import Wallet
from netpay.clock import FakeClock
from netpay.errors import LimitExceeded
from netpay.spending import DAY_MS, utc_day
from tests.fakes.vendor import FakeVendor
from tests.fakes.wallet_store import shortcuts


def _today(wallet: Wallet) -> dict[str, tuple[int, int]]:
    return shortcuts(wallet).spending(utc_day(wallet.clock.now_ms()))


def _to_midnight(clock: FakeClock) -> None:
    clock.advance((DAY_MS - clock.now_ms() % DAY_MS) / 1000)


def test_a_click_above_the_click_limit_is_refused_before_anything_moves(
    wallet: Wallet, vendor: FakeVendor
) -> None:
    coin = wallet.buy(100)
    wallet.set_spending_limits("EUR", max_click_minor=4)
    url = vendor.url + "/articles/1"
    with pytest.raises(LimitExceeded, match="above your limit of 4 per click"):
        wallet.read(url)
    with pytest.raises(LimitExceeded):
        wallet.authorize(url)
    assert vendor.paid_clicks == 0
    assert shortcuts(wallet).coin(coin.ecoin_id).index == 0
    assert shortcuts(wallet).outstanding_words(coin.ecoin_id) == 0
    assert _today(wallet) == {}
    wallet.set_spending_limits("EUR", max_click_minor=5)
    assert wallet.read(url).status == 200
    assert _today(wallet) == {"EUR": (5, 1)}


def test_read_and_authorize_share_the_day_limit_until_midnight_utc(
    wallet: Wallet, vendor: FakeVendor, clock: FakeClock
) -> None:
    coin = wallet.buy(100)
    wallet.set_spending_limits("EUR", max_day_minor=12)
    assert wallet.read(vendor.url + "/articles/1").status == 200
    header = wallet.authorize(vendor.url + "/articles/2")  # counts when printed
    assert header.startswith("NetPay ")
    assert _today(wallet) == {"EUR": (10, 2)}
    with pytest.raises(LimitExceeded, match="spent 10 of your daily limit of 12"):
        wallet.read(vendor.url + "/articles/3")
    assert vendor.paid_clicks == 1
    assert shortcuts(wallet).coin(coin.ecoin_id).index == 10
    report = wallet.spending_report("EUR")[0]
    assert (report["spent_today_minor"], report["left_today_minor"]) == (10, 2)
    _to_midnight(clock)
    assert wallet.read(vendor.url + "/articles/3").status == 200
    assert _today(wallet) == {"EUR": (5, 1)}


def test_a_window_counts_against_the_day_and_its_clicks_against_the_click_limit(
    wallet: Wallet, vendor: FakeVendor
) -> None:
    coin = wallet.buy(200)
    wallet.set_spending_limits("EUR", max_click_minor=5, max_day_minor=60)
    window = wallet.open_window(vendor.url + "/articles/1", 50)  # 50 cents > 5 per click
    assert window.words_left == 50
    assert _today(wallet) == {"EUR": (50, 1)}
    paid = wallet.read(vendor.url + "/articles/1")
    assert paid.window_id == window.window_id and paid.receipt is not None
    assert _today(wallet) == {"EUR": (50, 1)}  # paid from the window: already counted
    # A click of the window above the click limit is refused like any other.
    vendor.price_minor = 6
    with pytest.raises(LimitExceeded, match="per click"):
        wallet.read(vendor.url + "/articles/2")
    assert vendor.window_clicks == 1
    # ... and so is a window whose clicks would cost more (the open one stays).
    with pytest.raises(LimitExceeded, match="per click"):
        wallet.open_window(vendor.url + "/articles/2", 5)
    assert wallet.open_windows()[0].window_id == window.window_id
    vendor.price_minor = 5
    # A second window past the day: refused, the coin's index does not move.
    index = shortcuts(wallet).coin(coin.ecoin_id).index
    with pytest.raises(LimitExceeded, match="daily limit of 60"):
        wallet.authorize_window(vendor.url + "/articles/1", 11)
    assert shortcuts(wallet).coin(coin.ecoin_id).index == index
    assert _today(wallet) == {"EUR": (50, 1)}


def test_a_click_resynchronised_after_already_spent_is_counted_once(
    wallet: Wallet, vendor: FakeVendor
) -> None:
    coin = wallet.buy(100)
    wallet.set_spending_limits("EUR", max_day_minor=5)
    # A copy of the wallet spent (0, 5] at this vendor: the first header is refused.
    vendor.coins[coin.ecoin_id] = (5, shortcuts(wallet).word(coin.ecoin_id, 5))
    result = wallet.read(vendor.url + "/articles/1")
    assert result.receipt is not None
    assert (result.receipt.from_index, result.receipt.to_index) == (5, 10)
    assert _today(wallet) == {"EUR": (5, 1)}


def test_the_bridge_is_held_to_the_readers_limits_on_top_of_its_caps(
    wallet: Wallet, vendor: FakeVendor
) -> None:
    coin = wallet.buy(200)
    origin = vendor.url
    shortcuts(wallet).approve_origin(origin, max_click_minor=None, max_day_minor=None, now_ms=0)
    bridge = Bridge(wallet)  # caps 100 per click, 500 per day
    day = utc_day(wallet.clock.now_ms())
    wallet.set_spending_limits("EUR", max_click_minor=4)
    with pytest.raises(LimitExceeded, match="your limit of 4 per click"):
        bridge.authorize(origin, origin + "/articles/1")
    with pytest.raises(LimitExceeded, match="your limit of 4 per click"):
        bridge.window(origin, origin + "/articles/1", 10)
    assert shortcuts(wallet).bridge_spending(origin, day) == {}
    wallet.set_spending_limits("EUR", max_click_minor=None, max_day_minor=25)
    assert bridge.authorize(origin, origin + "/articles/1")["amount"] == 5
    assert bridge.window(origin, origin + "/articles/1", 20)["amount"] == 20
    with pytest.raises(LimitExceeded, match="spent 25 of your daily limit of 25"):
        bridge.authorize(origin, origin + "/articles/2")
    assert shortcuts(wallet).bridge_spending(origin, day) == {"EUR": (25, 2)}
    assert _today(wallet) == {"EUR": (25, 2)}
    assert shortcuts(wallet).coin(coin.ecoin_id).index == 25


def test_the_spending_report_lists_currencies_with_limits_spending_or_coins(
    wallet: Wallet, vendor: FakeVendor
) -> None:
    report = wallet.spending_report()
    assert [r["currency"] for r in report] == ["EUR"]  # nothing yet: the default
    assert report[0]["max_day_minor"] is None and report[0]["left_today_minor"] is None
    wallet.set_spending_limits("USD", max_day_minor=300)
    wallet.buy(10)
    wallet.read(vendor.url + "/articles/1")
    rows = {r["currency"]: r for r in wallet.spending_report()}
    assert set(rows) == {"EUR", "USD"}
    assert rows["EUR"]["spent_today_minor"] == 5 and rows["EUR"]["payments_today"] == 1
    assert rows["USD"]["left_today_minor"] == 300
    assert rows["USD"]["day"] == "2027-01-15"
