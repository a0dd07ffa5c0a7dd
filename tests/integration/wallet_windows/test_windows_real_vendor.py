"""The wallet's windows against the real vendor (vendor/web/), broker and chain."""

from __future__ import annotations

import pytest
import requests

from ewallet_client import Wallet
from ewallet_client.bridge import start_bridge
from ewallet_client.domain import WindowState
from ewallet_client.store import WindowRow
from netpay.envelope import open_envelope
from netpay.v1 import statements_pb2 as pb
from tests.fakes.wallet_store import shortcuts

from .conftest import COIN_UNITS, World


def test_open_read_three_close_refund_then_per_click(world: World) -> None:
    wallet = world.wallet
    paid = world.articles("daily")
    site = world.origin("daily")
    window = wallet.open_window(site + "/", 100)
    assert window.state is WindowState.OPEN
    assert (window.window_from, window.window_top, window.words_left) == (0, 100, 100)
    assert wallet.coins()[0].index == 100

    consumed = 0
    for art in paid[:3]:
        result = wallet.read(art["url"])
        assert result.status == 200, result.body[:200]
        assert result.window_id == window.window_id
        r = result.receipt
        assert r is not None and result.receipt_error is None, result.receipt_error
        assert (r.from_index, r.to_index) == (consumed, consumed + art["amount"])
        assert r.amount_minor == art["amount"] and r.vendor_id == "daily"
        consumed += art["amount"]
        assert result.window_words_left == 100 - consumed
        assert result.vendor_balance_words == 100 - consumed
    assert wallet.coins()[0].index == 100  # the clicks moved no coin index
    tops = [sum(a["amount"] for a in paid[: k + 1]) for k in range(3)]
    assert [(h["from_index"], h["to_index"]) for h in wallet.history()] == list(
        zip([0, *tops[:2]], tops, strict=True)
    )

    closed = wallet.close_window(site)
    credit = closed.credit
    assert credit is not None
    assert (credit.window_top, credit.consumed_index) == (100, consumed)
    assert credit.refund_units == 100 - consumed and credit.reason == "closed"
    assert closed.window.state is WindowState.CLOSED
    assert closed.window.credit is not None
    cert = open_envelope(
        world.broker_certificate("daily"), pb.VendorCertificate, world.broker_key()
    )
    stored = open_envelope(
        pb.Envelope.FromString(closed.window.credit), pb.WindowCredit, cert.public_key
    )
    assert stored == credit
    assert shortcuts(wallet).window_handle(window.window_id) is None

    after = wallet.read(paid[0]["url"])
    assert after.status == 200 and after.window_id is None
    assert after.receipt is not None
    assert (after.receipt.from_index, after.receipt.to_index) == (100, 100 + paid[0]["amount"])
    assert wallet.coins()[0].words_left == COIN_UNITS - 100 - paid[0]["amount"]


def test_another_newspaper_does_not_use_the_first_ones_window(world: World) -> None:
    wallet = world.wallet
    window = wallet.open_window(world.origin("daily") + "/", 50)
    art = world.articles("gazette")[0]
    result = wallet.read(art["url"])
    assert result.status == 200 and result.window_id is None
    assert result.receipt is not None and result.receipt.vendor_id == "gazette"
    # Paid from the range above the window.
    assert result.receipt.from_index >= window.window_top
    assert shortcuts(wallet).window(window.window_id).consumed_index == 0


def test_a_window_the_vendor_does_not_honour_falls_back_to_per_click(world: World) -> None:
    wallet = world.wallet
    art = world.articles("daily")[0]
    window = wallet.open_window(art["url"], 50)
    # The wallet's copy of the handle is wrong (a stale or foreign handle).
    with wallet.store.begin() as s:  # reach into the test's own store
        row = s.session.get(WindowRow, window.window_id)
        assert row is not None
        row.handle = "A" * 43
        s.commit()
    result = wallet.read(art["url"])
    assert result.status == 200 and result.window_id is None
    assert result.receipt is not None and result.receipt.from_index == 50
    assert shortcuts(wallet).window(window.window_id).state is WindowState.UNUSABLE
    gone = wallet.close_window(art["url"])
    assert gone.credit is None and gone.window.state is WindowState.GONE


@pytest.mark.parametrize("units", [1, 500])
def test_window_sizes_at_the_bounds(world: World, units: int) -> None:
    window = world.wallet.open_window(world.origin("daily") + "/", units)
    assert window.units == units and window.state is WindowState.OPEN


def test_a_bridge_window_is_opened_by_the_page_and_pays_its_clicks(world: World) -> None:
    """What netpay-bridge.js does, with a requests.Session standing in for the browser."""
    site = world.origin("daily")
    shortcuts(world.wallet).approve_origin(
        site, max_click_minor=None, max_day_minor=None, now_ms=world.clock.now_ms()
    )
    bridge = start_bridge(
        Wallet(world.tmp / "wallet", clock=world.clock), listen="127.0.0.1:0", close_wallet=True
    )
    try:
        art = world.articles("daily")[0]
        auth = requests.post(
            bridge.url + "/v1/window",
            json={"url": art["url"], "units": 40},
            headers={"Origin": site},
            timeout=10,
        )
        assert auth.status_code == 200, auth.text
        body = auth.json()
        assert body["window_url"] == site + "/netpay/window"
        with requests.Session() as browser:
            opened = browser.post(
                body["window_url"],
                headers={"Authorization": body["authorization"], "Accept": "application/json"},
                timeout=10,
            )
            assert opened.status_code == 200, opened.text
            assert opened.json()["words_left"] == 40
            assert "netpay_window" in browser.cookies
            page = browser.get(art["url"], headers={"Sec-Fetch-Site": "same-origin"}, timeout=10)
            assert page.status_code == 200
            assert page.headers["NetPay-Window"] == str(40 - art["amount"])
        # The wallet moved its index once, for the window, and keeps no handle.
        assert world.wallet.coins()[0].index == 40
        assert world.wallet.windows() == []
    finally:
        bridge.stop()
