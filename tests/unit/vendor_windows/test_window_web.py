"""The window routes through Flask's test client (fake broker, real SQLite):
the cookie, the same-origin rule, the headers, closing, and typed errors."""

from __future__ import annotations

import secrets

import pytest

from netpay.chain import seen_of
from netpay.encoding import b64url_decode, b64url_encode
from netpay.envelope import open_envelope
from netpay.header import parse_challenge
from netpay.v1 import statements_pb2 as pb
from vendor.articles import load_newspaper
from vendor.web import WINDOW_COOKIE, WebDeps, create_app

from .conftest import header, window_header

JSON = {"Accept": "application/json"}


@pytest.fixture
def app(vendor, clock):
    return create_app(
        WebDeps(services=vendor, newspaper=load_newspaper("The Daily Hash"), clock=clock)
    )


@pytest.fixture
def client(app):
    return app.test_client(use_cookies=False)  # explicit Cookie headers only


def open_via_http(client, chain, prev: int, units: int, **kw):
    return client.post(
        "/netpay/window",
        headers={**JSON, "Authorization": window_header(chain, prev, units)},
        **kw,
    )


def handle_of(resp) -> str:
    [cookie] = resp.headers.getlist("Set-Cookie")
    return cookie.split(";", 1)[0].split("=", 1)[1]


def get_with_window(client, article: str, handle: str, **headers: str):
    return client.get(
        f"/articles/{article}", headers={**JSON, "Cookie": f"{WINDOW_COOKIE}={handle}", **headers}
    )


def consumed(vendor, chain) -> int:
    return vendor.windows(chain.ecoin_id.hex())[-1].consumed_index


def test_open_sets_the_cookie_and_answers_the_window(client, vendor, broker, clock) -> None:
    chain = broker.issue(100, expires_in_s=30 * 86_400)
    resp = open_via_http(client, chain, 0, 40)
    assert resp.status_code == 200
    assert resp.get_json() == {
        "vendor_id": "daily-hash",
        "ecoin_id": chain.ecoin_id.hex(),
        "epoch": 1,
        "window_from": 0,
        "window_top": 40,
        "units": 40,
        "words_left": 40,
        "unit_value": 1,
        "currency": "EUR",
        "expires_at_ms": clock.now_ms() + 86_400_000,
    }
    [cookie] = resp.headers.getlist("Set-Cookie")
    parts = [p.strip() for p in cookie.split(";")]
    handle = parts[0].split("=", 1)[1]
    assert parts[0].startswith(f"{WINDOW_COOKIE}=") and len(b64url_decode(handle)) == 32
    assert {"HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=86400"} <= set(parts)
    assert "Secure" not in parts  # loopback (the test client's Host is localhost)
    assert resp.headers["Cache-Control"] == "private, no-store"
    # The same header again: the same cookie, nothing spent.
    again = open_via_http(client, chain, 0, 40)
    assert again.status_code == 200 and handle_of(again) == handle
    assert vendor.coin(chain.ecoin_id.hex()).view.index == 40


def test_the_cookie_is_secure_off_loopback(client, broker) -> None:
    chain = broker.issue(100)
    resp = open_via_http(client, chain, 0, 10, base_url="http://news.example")
    assert resp.status_code == 200
    assert "Secure" in [p.strip() for p in resp.headers["Set-Cookie"].split(";")]


def test_window_clicks_carry_receipt_balance_and_window_headers(client, vendor, broker) -> None:
    chain = broker.issue(100)
    handle = handle_of(open_via_http(client, chain, 0, 30))
    resp = get_with_window(client, "7", handle)  # 10 cents
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert (resp.headers["NetPay-Balance"], resp.headers["NetPay-Window"]) == ("20", "20")
    # The page says what the number is: the window's, not the whole coin's.
    assert "Left in your reading window" in resp.get_data(as_text=True)
    env = pb.Envelope.FromString(b64url_decode(resp.headers["NetPay-Receipt"]))
    receipt = open_envelope(env, pb.Receipt, vendor._ports.identity.key.public_key)
    assert (receipt.from_index, receipt.to_index, receipt.item_id) == (0, 10, "7")
    same = get_with_window(client, "7", handle, **{"Sec-Fetch-Site": "same-origin"})
    assert same.headers["NetPay-Receipt"] == resp.headers["NetPay-Receipt"]  # a retry
    assert consumed(vendor, chain) == 10
    # The reader's own navigation (typed URL, bookmark) is "none": it pays.
    typed = get_with_window(client, "4", handle, **{"Sec-Fetch-Site": "none"})
    assert typed.status_code == 200, typed.get_data(as_text=True)
    assert consumed(vendor, chain) == 15


def test_a_window_is_closed_from_its_own_site_only_not_from_a_typed_url(
    client, vendor, broker
) -> None:
    chain = broker.issue(100)
    handle = handle_of(open_via_http(client, chain, 0, 30))
    closing = client.post(
        "/netpay/window/close",
        headers={**JSON, "Cookie": f"{WINDOW_COOKIE}={handle}", "Sec-Fetch-Site": "none"},
    )
    assert closing.status_code == 403
    assert vendor.windows(chain.ecoin_id.hex())[0].state.value == "open"


@pytest.mark.parametrize("site", ["cross-site", "same-site", "garbage"])
def test_a_window_pays_for_its_own_site_only(client, vendor, broker, site) -> None:
    chain = broker.issue(100)
    handle = handle_of(open_via_http(client, chain, 0, 30))
    resp = get_with_window(client, "4", handle, **{"Sec-Fetch-Site": site})
    assert resp.status_code == 402
    assert resp.get_json()["error"] == "payment_required"
    assert parse_challenge(resp.headers["WWW-Authenticate"]).amount_minor == 5
    assert consumed(vendor, chain) == 0
    closing = client.post(
        "/netpay/window/close",
        headers={**JSON, "Cookie": f"{WINDOW_COOKIE}={handle}", "Sec-Fetch-Site": site},
    )
    assert closing.status_code == 403
    assert closing.get_json()["error"] == "permission_denied"
    assert vendor.windows(chain.ecoin_id.hex())[0].state.value == "open"


def test_a_window_that_cannot_pay_gets_the_challenge_and_spends_nothing(
    client, vendor, broker
) -> None:
    chain = broker.issue(100)
    handle = handle_of(open_via_http(client, chain, 0, 6))
    assert get_with_window(client, "4", handle).status_code == 200  # 5 of 6
    short = get_with_window(client, "5", handle)  # 7 > 1
    assert short.status_code == 402
    body = short.get_json()
    assert body["error"] == "payment_required" and "window" in body["detail"]
    assert "Set-Cookie" not in short.headers  # the window is still good for 1 word
    foreign = get_with_window(client, "1", b64url_encode(secrets.token_bytes(32)))
    assert foreign.status_code == 402
    assert "Max-Age=0" in foreign.headers["Set-Cookie"]  # a dead handle is cleared
    assert get_with_window(client, "1", "%%garbage%%" * 10).status_code == 402
    html = client.get(
        "/articles/1", headers={"Accept": "text/html", "Cookie": f"{WINDOW_COOKIE}=x"}
    )
    assert html.status_code == 402 and "text/html" in html.headers["Content-Type"]
    assert consumed(vendor, chain) == 5
    # An Authorization header wins over the cookie: a paid click, from the coin.
    paid = client.get(
        "/articles/1",
        headers={
            **JSON,
            "Cookie": f"{WINDOW_COOKIE}={handle}",
            "Authorization": header(chain, 6, 7),
        },
    )
    assert paid.status_code == 200 and "NetPay-Window" not in paid.headers
    assert consumed(vendor, chain) == 5


def test_close_returns_the_credit_and_clears_the_cookie(client, vendor, broker) -> None:
    chain = broker.issue(100)
    handle = handle_of(open_via_http(client, chain, 0, 30))
    get_with_window(client, "4", handle)
    resp = client.post("/netpay/window/close", headers={"Cookie": f"{WINDOW_COOKIE}={handle}"})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["refund_units"] == 25
    credit = open_envelope(
        pb.Envelope.FromString(b64url_decode(body["window_credit"])),
        pb.WindowCredit,
        vendor._ports.identity.key.public_key,
    )
    assert (credit.window_top, credit.consumed_index, credit.refund_units, credit.reason) == (
        30,
        5,
        25,
        "closed",
    )
    cleared = [p.strip() for p in resp.headers["Set-Cookie"].split(";")]
    assert cleared[0] == f"{WINDOW_COOKIE}=" and "Max-Age=0" in cleared and "HttpOnly" in cleared
    # The closed window pays nothing more.
    after = get_with_window(client, "1", handle)
    assert after.status_code == 402
    assert consumed(vendor, chain) == 5
    assert client.post("/netpay/window/close").status_code == 404
    unknown = client.post(
        "/netpay/window/close",
        headers={"Cookie": f"{WINDOW_COOKIE}={b64url_encode(secrets.token_bytes(32))}"},
    )
    assert (unknown.status_code, unknown.get_json()["error"]) == (404, "not_found")


def test_opening_errors_are_typed_with_the_window_challenge(client, vendor, broker) -> None:
    chain = broker.issue(1000)
    unpaid = client.post("/netpay/window", headers=JSON)
    assert unpaid.status_code == 402
    assert unpaid.get_json()["error"] == "payment_required"
    challenge = parse_challenge(unpaid.headers["WWW-Authenticate"])
    assert (challenge.realm, challenge.amount_minor, challenge.currency) == (
        "daily-hash",
        1,
        "EUR",
    )
    html = client.post("/netpay/window", headers={"Accept": "text/html"})
    assert html.status_code == 402 and "text/html" in html.headers["Content-Type"]
    for auth, status, code in (
        ('NetPay ecoin="zz"', 400, "malformed"),
        (header(chain, 0, 5), 400, "malformed"),  # no window=
        (header(chain, 0, 6, window=5), 400, "malformed"),
        (window_header(chain, 0, 501), 402, "limit_exceeded"),
        (window_header(chain, 0, 5, word=bytes(32)), 402, "bad_payword"),
    ):
        resp = client.post("/netpay/window", headers={**JSON, "Authorization": auth})
        assert (resp.status_code, resp.get_json()["error"]) == (status, code), auth
        assert parse_challenge(resp.headers["WWW-Authenticate"]).amount_minor == 1
        assert "Set-Cookie" not in resp.headers
    assert open_via_http(client, chain, 0, 10).status_code == 200
    spent = open_via_http(client, chain, 5, 10)
    assert spent.status_code == 409
    body = spent.get_json()
    assert (body["error"], body["index"]) == ("already_spent", 10)
    assert b64url_decode(body["seen"]) == seen_of(chain.word(10))  # 1.1: never the word
    assert vendor.coin(chain.ecoin_id.hex()).view.index == 10
    assert len(vendor.windows(chain.ecoin_id.hex())) == 1


def test_broker_down_on_open_is_503(client, broker) -> None:
    chain = broker.issue(100)
    broker.down = True
    resp = open_via_http(client, chain, 0, 10)
    assert (resp.status_code, resp.get_json()["error"]) == (503, "broker_unavailable")
    assert "Set-Cookie" not in resp.headers
