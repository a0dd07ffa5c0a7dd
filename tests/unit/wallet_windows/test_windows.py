"""Wallet.open_window / read from a window / close_window against the fake newspaper."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from ewallet_client.domain import WindowState
from ewallet_client.wallet import Wallet
from netpay.clock import FakeClock
from netpay.envelope import SigningKey
from netpay.errors import InvalidArgument, Malformed, NotFound, SignatureInvalid
from netpay.header import parse_authorization
from netpay.v1 import statements_pb2 as pb
from tests.fakes.vendor import FakeVendor
from tests.fakes.wallet_store import shortcuts

PRICE = 5


def _article(v: FakeVendor, item: str = "1") -> str:
    return f"{v.url}/articles/{item}"


def _coin_index(w: Wallet) -> int:
    return sum(c.index for c in w.coins())


def test_open_read_three_close_then_per_click(wallet: Wallet, vendor: FakeVendor) -> None:
    window = wallet.open_window(_article(vendor), 20)
    assert window.state is WindowState.OPEN
    assert (window.window_from, window.window_top, window.units) == (0, 20, 20)
    assert (window.vendor_id, window.epoch, window.words_left) == ("daily", 7, 20)
    coin = wallet.coins()[0]
    assert (coin.index, coin.accepted_index, coin.last_vendor) == (20, 20, "daily")
    assert shortcuts(wallet).outstanding_words(coin.ecoin_id) == 0
    header = vendor.requests[-1]["Authorization"]
    cred = parse_authorization(header)
    assert (cred.prev, cred.index, cred.window) == (0, 20, 20)
    assert wallet.open_windows() == [window]

    for i in range(3):
        before = len(vendor.requests)
        result = wallet.read(_article(vendor, str(i)))
        assert result.status == 200 and result.body.startswith(b"<html>")
        assert result.window_id == window.window_id
        r = result.receipt
        assert r is not None and result.receipt_error is None
        assert (r.from_index, r.to_index, r.amount_minor) == (5 * i, 5 * i + 5, PRICE)
        assert result.window_words_left == 20 - 5 * (i + 1)
        assert result.vendor_balance_words == 20 - 5 * (i + 1)
        assert result.amount_paid_minor == PRICE
        # The unpaid request for the price, then the click with the cookie only.
        unpaid, click = vendor.requests[before:]
        assert "Cookie" not in unpaid and "Authorization" not in unpaid
        assert "Authorization" not in click and "Sec-Fetch-Site" not in click
        assert click["Cookie"].startswith("netpay_window=")
    assert vendor.window_clicks == 3 and vendor.paid_clicks == 0
    assert _coin_index(wallet) == 20  # the clicks moved no coin index
    history = wallet.history()
    assert [(h["from_index"], h["to_index"]) for h in history] == [(0, 5), (5, 10), (10, 15)]
    assert shortcuts(wallet).window(window.window_id).consumed_index == 15

    closed = wallet.close_window(vendor.url + "/")
    assert closed.credit is not None
    assert (closed.credit.consumed_index, closed.credit.refund_units) == (15, 5)
    assert closed.credit.reason == "closed"
    assert closed.window.state is WindowState.CLOSED
    assert (closed.window.refund_units, closed.window.words_left) == (5, 0)
    assert closed.window.credit is not None
    assert shortcuts(wallet).window_handle(window.window_id) is None  # the secret is gone
    assert "Cookie" in vendor.requests[-1]
    assert wallet.open_windows() == []

    result = wallet.read(_article(vendor, "9"))
    assert result.window_id is None and result.receipt is not None
    assert (result.receipt.from_index, result.receipt.to_index) == (20, 25)
    assert "Authorization" in vendor.requests[-1] and "Cookie" not in vendor.requests[-1]
    assert vendor.paid_clicks == 1


def test_another_newspaper_never_sees_the_window(
    wallet: Wallet, vendor: FakeVendor, start_vendor: Callable[..., FakeVendor]
) -> None:
    other = start_vendor("gazette")
    wallet.open_window(_article(vendor), 10)
    result = wallet.read(_article(other))
    assert result.window_id is None and result.receipt is not None
    assert result.receipt.vendor_id == "gazette"
    assert all("Cookie" not in h for h in other.requests)
    assert other.paid_clicks == 1 and vendor.window_clicks == 0
    # The gazette paid from a coin range above the window: nothing overlaps.
    assert result.receipt.from_index >= 10


def test_a_refused_window_click_falls_back_to_paying_per_click(
    wallet: Wallet, vendor: FakeVendor
) -> None:
    window = wallet.open_window(_article(vendor), 10)
    vendor.refuse_window_clicks = True
    result = wallet.read(_article(vendor))
    assert result.status == 200 and result.window_id is None
    assert result.receipt is not None and result.receipt.from_index == 10
    assert shortcuts(wallet).window(window.window_id).state is WindowState.UNUSABLE
    assert any("no longer usable" in w for w in result.warnings)
    # The next read does not try the window again.
    before = len(vendor.requests)
    wallet.read(_article(vendor, "2"))
    assert all("Cookie" not in h for h in vendor.requests[before:])
    # An unusable window can still be closed for its credit.
    closed = wallet.close_window(vendor.url)
    assert closed.credit is not None and closed.credit.refund_units == 10


def test_a_window_too_small_for_the_price_is_not_used(wallet: Wallet, vendor: FakeVendor) -> None:
    window = wallet.open_window(_article(vendor), 3)
    result = wallet.read(_article(vendor))
    assert result.window_id is None and vendor.window_clicks == 0
    assert shortcuts(wallet).window(window.window_id).state is WindowState.OPEN


def test_an_expired_window_is_not_used(
    wallet: Wallet, vendor: FakeVendor, clock: FakeClock
) -> None:
    wallet.open_window(_article(vendor), 10)
    clock.advance(86_400)
    vendor.broker.certify(vendor.vendor_id, vendor.key.public_key, vendor.url)  # renewed
    result = wallet.read(_article(vendor))
    assert result.window_id is None and vendor.window_clicks == 0
    assert wallet.open_windows() == []


def test_window_units_are_bounded_and_nothing_moves(wallet: Wallet, vendor: FakeVendor) -> None:
    for units in (0, -1, 501):
        with pytest.raises(InvalidArgument):
            wallet.open_window(_article(vendor), units)
    assert _coin_index(wallet) == 0 and wallet.windows() == []
    assert vendor.requests == []


def test_a_site_url_without_a_price_learns_the_vendor_from_netpay_window(
    wallet: Wallet, vendor: FakeVendor
) -> None:
    window = wallet.open_window(vendor.url + "/", 10)
    assert window.state is WindowState.OPEN
    # GET / (200), POST /netpay/window without a header (402), then with it.
    assert "Authorization" not in vendor.requests[0]
    assert parse_authorization(vendor.requests[-1]["Authorization"]).window == 10


def test_opening_again_closes_the_old_window_first(wallet: Wallet, vendor: FakeVendor) -> None:
    first = wallet.open_window(_article(vendor), 10)
    wallet.read(_article(vendor))
    second = wallet.open_window(_article(vendor), 10)
    old = shortcuts(wallet).window(first.window_id)
    assert old.state is WindowState.CLOSED and old.refund_units == 5
    assert (second.window_from, second.window_top) == (10, 20)
    assert [w.window_id for w in wallet.open_windows()] == [second.window_id]


@pytest.mark.parametrize(
    ("tamper", "word"),
    [
        ({"window_top": 11}, "window_top"),
        ({"window_from": 1}, "window_from"),
        ({"units": 9}, "units"),
        ({"vendor_id": "gazette"}, "vendor"),
        ({"unit_value": 2}, "unit value"),
        ({"currency": "USD"}, "currency"),
        ({"expires_at_ms": 1}, "expiry"),
    ],
)
def test_a_window_that_does_not_match_the_header_is_refused(
    wallet: Wallet, vendor: FakeVendor, tamper: dict[str, object], word: str
) -> None:
    vendor.tamper_window = tamper
    with pytest.raises(SignatureInvalid, match=word):
        wallet.open_window(_article(vendor), 10)
    [window] = wallet.windows()
    assert window.state is WindowState.FAILED
    assert shortcuts(wallet).window_handle(window.window_id) is None
    assert wallet.open_windows() == []
    # The range stays spent: the next click pays above it.
    assert wallet.read(_article(vendor)).receipt is not None
    assert _coin_index(wallet) == 15


def test_a_window_without_a_handle_cookie_is_refused(wallet: Wallet, vendor: FakeVendor) -> None:
    vendor.no_cookie = True
    with pytest.raises(Malformed, match="netpay_window"):
        wallet.open_window(_article(vendor), 10)
    assert wallet.windows()[0].state is WindowState.FAILED


@pytest.mark.parametrize(
    "tamper",
    [
        {"frm": 0, "to": 30, "amount": 30},  # beyond the window top
        {"amount": 4},  # not the words consumed times the unit value
    ],
)
def test_a_window_receipt_outside_the_window_or_wrong_is_reported(
    wallet: Wallet, vendor: FakeVendor, tamper: dict[str, object]
) -> None:
    window = wallet.open_window(_article(vendor), 20)
    vendor.tamper_receipt = tamper
    result = wallet.read(_article(vendor))
    assert result.status == 200 and result.receipt is None
    assert isinstance(result.receipt_error, SignatureInvalid)
    assert wallet.history() == []
    assert shortcuts(wallet).window(window.window_id).consumed_index == 0


def test_a_window_receipt_signed_by_another_key_is_reported(
    wallet: Wallet, vendor: FakeVendor
) -> None:
    wallet.open_window(_article(vendor), 20)
    vendor.sign_with = SigningKey.generate()
    result = wallet.read(_article(vendor))
    assert result.receipt is None and isinstance(result.receipt_error, SignatureInvalid)


@pytest.mark.parametrize(
    "tamper",
    [
        {"refund_units": 20},  # more than top - consumed
        {"consumed_index": 0, "refund_units": 20},  # un-consumes a receipted click
        {"window_top": 25, "refund_units": 20},
        {"epoch": 8},
        {"ecoin_id": "00" * 16},
        {"reason": "whatever"},
    ],
)
def test_a_window_credit_that_does_not_match_is_refused(
    wallet: Wallet, vendor: FakeVendor, tamper: dict[str, object]
) -> None:
    window = wallet.open_window(_article(vendor), 20)
    wallet.read(_article(vendor))
    vendor.tamper_credit = tamper
    with pytest.raises(SignatureInvalid):
        wallet.close_window(vendor.url)
    kept = shortcuts(wallet).window(window.window_id)
    assert kept.state is WindowState.OPEN and kept.credit is None


def test_a_window_credit_signed_by_another_key_is_refused(
    wallet: Wallet, vendor: FakeVendor
) -> None:
    wallet.open_window(_article(vendor), 20)
    vendor.sign_with = SigningKey.generate()
    with pytest.raises(SignatureInvalid):
        wallet.close_window(vendor.url)


def test_closing_a_window_the_vendor_closed_itself(wallet: Wallet, vendor: FakeVendor) -> None:
    window = wallet.open_window(_article(vendor), 20)
    vendor.windows[0].open = False  # expired or handed off at the vendor
    closed = wallet.close_window(vendor.url)
    assert closed.credit is None and closed.window.state is WindowState.GONE
    assert shortcuts(wallet).window_handle(window.window_id) is None
    with pytest.raises(NotFound):
        wallet.close_window(vendor.url)


def test_the_stored_window_credit_verifies(wallet: Wallet, vendor: FakeVendor) -> None:
    wallet.open_window(_article(vendor), 20)
    closed = wallet.close_window(vendor.url)
    assert closed.window.credit is not None
    env = pb.Envelope.FromString(closed.window.credit)
    from netpay.envelope import open_envelope

    credit = open_envelope(env, pb.WindowCredit, vendor.key.public_key)
    assert credit.refund_units == 20 and credit.window_top == 20


def test_a_retried_window_click_is_not_counted_twice(wallet: Wallet, vendor: FakeVendor) -> None:
    window = wallet.open_window(_article(vendor), 20)
    first = wallet.read(_article(vendor, "1"))
    again = wallet.read(_article(vendor, "1"))  # the vendor re-serves the same receipt
    assert first.receipt is not None and again.receipt is not None
    assert first.receipt == again.receipt
    assert shortcuts(wallet).window(window.window_id).consumed_index == 5
    assert len(wallet.history()) == 1


def test_the_handle_stays_out_of_logs_and_views(
    wallet: Wallet, vendor: FakeVendor, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    window = wallet.open_window(_article(vendor), 20)
    handle = shortcuts(wallet).window_handle(window.window_id)
    assert handle is not None and len(handle) == 43
    wallet.read(_article(vendor))
    wallet.close_window(vendor.url)
    assert handle not in caplog.text
    assert handle not in repr(window) and handle not in str(window.to_json())
    for w in wallet.windows():
        assert handle not in str(w.to_json())
    # The only copy was in the 0600 store, and closing erased it.
    for suffix in ("", "-wal", "-shm"):
        p = wallet.store.path.with_name(wallet.store.path.name + suffix)
        if p.exists():
            assert p.stat().st_mode & 0o777 == 0o600


def test_the_session_keeps_no_cookies(wallet: Wallet, vendor: FakeVendor) -> None:
    wallet.open_window(_article(vendor), 20)
    assert len(wallet.session.cookies) == 0
