"""The reader's spending limits against the real newspaper, broker and bridge."""

from __future__ import annotations

import pytest

from ewallet_client.bridge import start_bridge
from netpay.errors import LimitExceeded
from netpay.spending import DAY_MS, utc_day
from tests.fakes.wallet_store import shortcuts

from .conftest import World, json_post


def test_click_and_day_limits_on_read_and_authorize_until_the_next_utc_day(
    world: World,
) -> None:
    wallet = world.wallet
    coin = wallet.buy(500)
    wallet.set_spending_limits("EUR", max_click_minor=10, max_day_minor=20)
    day = utc_day(world.clock.now_ms())
    with pytest.raises(LimitExceeded, match="per click"):
        wallet.read(world.article(12))
    first = wallet.read(world.article(10))
    assert first.status == 200 and first.receipt is not None
    header = wallet.authorize(world.article(8))  # counted when printed, used or not
    assert header.startswith("NetPay ")
    assert shortcuts(wallet).spending(day) == {"EUR": (18, 2)}
    with pytest.raises(LimitExceeded, match="spent 18 of your daily limit of 20"):
        wallet.read(world.article(3))
    assert shortcuts(wallet).coin(coin.ecoin_id).index == 18  # the refusal moved nothing
    assert wallet.read(world.article(2)).status == 200  # exactly up to the limit
    # The next UTC day starts from nothing.
    world.clock.advance((DAY_MS - world.clock.now_ms() % DAY_MS) / 1000)
    again = wallet.read(world.article(10))
    assert again.status == 200 and again.receipt is not None
    assert shortcuts(wallet).spending(day + 1) == {"EUR": (10, 1)}
    assert shortcuts(wallet).coin(coin.ecoin_id).index == 30


def test_open_window_counts_against_the_day_only(world: World) -> None:
    wallet = world.wallet
    coin = wallet.buy(500)
    wallet.set_spending_limits("EUR", max_click_minor=5, max_day_minor=60)
    day = utc_day(world.clock.now_ms())
    window = wallet.open_window(world.origin + "/", 50)  # 50 cents: one payment, not a click
    assert window.words_left == 50
    assert shortcuts(wallet).spending(day) == {"EUR": (50, 1)}
    for amount in (5, 3, 2):
        paid = wallet.read(world.article(amount))
        assert paid.window_id == window.window_id and paid.receipt is not None
    assert shortcuts(wallet).spending(day) == {"EUR": (50, 1)}  # the window's clicks: counted
    with pytest.raises(LimitExceeded, match="per click"):
        wallet.read(world.article(7))
    index = shortcuts(wallet).coin(coin.ecoin_id).index
    with pytest.raises(LimitExceeded, match="daily limit of 60"):
        wallet.authorize_window(world.origin + "/", 11)
    assert shortcuts(wallet).coin(coin.ecoin_id).index == index == 50
    assert shortcuts(wallet).spending(day) == {"EUR": (50, 1)}


def test_the_bridge_answers_a_readers_limit_with_its_error_json(world: World) -> None:
    world.wallet.buy(500)
    shortcuts(world.wallet).approve_origin(
        world.origin, max_click_minor=None, max_day_minor=None, now_ms=world.clock.now_ms()
    )
    world.wallet.set_spending_limits("EUR", max_click_minor=4, max_day_minor=30)
    bridge = start_bridge(world.new_wallet(), listen="127.0.0.1:0")
    try:
        day = utc_day(world.clock.now_ms())
        resp = json_post(bridge.url + "/v1/authorize", {"url": world.article(5)}, world.origin)
        assert resp.status_code == 402
        assert resp.json()["error"] == "limit_exceeded"
        assert "your limit of 4 per click" in resp.json()["detail"]
        assert resp.headers["Access-Control-Allow-Origin"] == world.origin
        ok = json_post(bridge.url + "/v1/authorize", {"url": world.article(3)}, world.origin)
        assert ok.status_code == 200 and ok.json()["amount"] == 3
        window = {"url": world.article(2), "units": 28}
        refused = json_post(bridge.url + "/v1/window", window, world.origin)
        assert refused.status_code == 402 and refused.json()["error"] == "limit_exceeded"
        assert shortcuts(world.wallet).bridge_spending(world.origin, day) == {"EUR": (3, 1)}
        window["units"] = 27
        opened = json_post(bridge.url + "/v1/window", window, world.origin)
        assert opened.status_code == 200 and opened.json()["amount"] == 27
        assert shortcuts(world.wallet).spending(day) == {"EUR": (30, 2)}
    finally:
        bridge.stop()
