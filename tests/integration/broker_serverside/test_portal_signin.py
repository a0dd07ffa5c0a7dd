"""Signing in with a server-side wallet at the broker portal, over loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

import grpc

from netpay.envelope import open_envelope
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb

from .conftest import WALLET_PASSWORD, Browser, Harness, code_from, rpc_error


def test_signin_redirects_back_with_a_code_the_vendor_exchanges(
    h: Harness, new_browser: Callable[[], Browser]
) -> None:
    coin = h.buy(h.reader())
    v1 = h.vendor("v1")
    browser = new_browser()
    page = browser.signin_page(v1, v1.origin + "/articles/3?x=1#top")
    assert page.status_code == 200
    assert f"form-action 'self' {v1.origin}" in page.headers["Content-Security-Policy"]
    assert 'name="password"' in page.text and "Continue as" not in page.text
    resp = browser.signin(v1, coin.ecoin_id.upper(), return_to=v1.origin + "/articles/3?x=1#top")
    assert resp.status_code == 303
    location = urlsplit(resp.headers["Location"])
    assert f"{location.scheme}://{location.netloc}" == v1.origin
    assert location.path == "/articles/3" and location.fragment == "top"
    query = parse_qs(location.query)
    assert query["x"] == ["1"] and len(query["netpay_code"][0]) == 43
    assert WALLET_PASSWORD not in resp.headers["Location"]
    reply = h.stub.ExchangeWalletCode(
        bpb.ExchangeWalletCodeRequest(code=query["netpay_code"][0]), metadata=v1.md
    )
    grant = open_envelope(reply.grant, pb.WalletGrant, h.broker.public_key)
    assert (grant.ecoin_id, grant.vendor_id) == (coin.ecoin_id, "v1")


def test_return_to_must_be_on_the_vendors_certified_origin(
    h: Harness, new_browser: Callable[[], Browser]
) -> None:
    v1, v2 = h.vendor("v1"), h.vendor("v2")
    browser = new_browser()
    for bad in (
        v2.origin + "/a",  # another newspaper
        "http://evil.example/a",
        v1.origin.replace("http://", "https://") + "/a",
        v1.origin.replace("http://", "http://user@") + "/a",
        "/a",
        "javascript:alert(1)",
        v1.origin + "/a\nx",
    ):
        resp = browser.signin_page(v1, bad)
        assert resp.status_code == 400, bad
        assert 'name="password"' not in resp.text
    assert browser.get("/wallet/signin", vendor="nobody", return_to=v1.origin).status_code == 404


def test_the_signin_form_needs_its_csrf_token(
    h: Harness, new_browser: Callable[[], Browser]
) -> None:
    coin = h.buy(h.reader())
    v1 = h.vendor("v1")
    browser = new_browser()
    browser.signin_page(v1)
    fields = {
        "vendor": "v1",
        "return_to": v1.origin + "/a",
        "ecoin_id": coin.ecoin_id,
        "password": WALLET_PASSWORD,
    }
    for token in (None, "forged"):
        data = dict(fields) if token is None else {**fields, "csrf_token": token}
        assert browser.post("/wallet/signin", data).status_code == 400
    # Nothing was issued: a fresh browser still sees the password form.
    assert 'name="password"' in browser.signin_page(v1).text


def test_wrong_passwords_are_counted_and_limited_per_coin(
    h: Harness, new_browser: Callable[[], Browser]
) -> None:
    coin = h.buy(h.reader())
    v1 = h.vendor("v1")
    browser = new_browser()
    for _ in range(5):
        resp = browser.signin(v1, coin.ecoin_id, "wrong password!")
        assert resp.status_code == 401
        assert "wrong e-coin id or wallet password" in resp.text
    limited = browser.signin(v1, coin.ecoin_id)  # even the right password waits
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 300
    assert "too many failed sign-ins" in limited.text
    # The limit is per coin: another coin of the reader signs in at once.
    other = h.buy(h.reader())
    assert new_browser().signin(v1, other.ecoin_id).status_code == 303
    h.clock.advance(301)
    assert browser.signin(v1, coin.ecoin_id).status_code == 303


def test_unknown_and_malformed_coin_ids_do_not_sign_in(
    h: Harness, new_browser: Callable[[], Browser]
) -> None:
    v1 = h.vendor("v1")
    browser = new_browser()
    assert browser.signin(v1, "ab" * 16).status_code == 401
    assert browser.signin(v1, "not-an-id").status_code == 401


def test_second_newspaper_is_one_click_while_the_session_lasts(
    h: Harness, new_browser: Callable[[], Browser]
) -> None:
    coin = h.buy(h.reader())
    v1, v2 = h.vendor("v1"), h.vendor("v2")
    browser = new_browser()
    code_from(browser.signin(v1, coin.ecoin_id))
    page = browser.signin_page(v2)
    assert page.status_code == 200
    assert f"Continue as e-coin {coin.ecoin_id}" in page.text
    assert 'name="password"' not in page.text
    data = {
        "csrf_token": browser.csrf(page),
        "vendor": "v2",
        "return_to": v2.origin + "/a",
        "continue": "yes",
    }
    code = code_from(browser.post("/wallet/signin", data))
    # The code is v2's, not v1's.
    status, _ = rpc_error(
        h.stub.ExchangeWalletCode, bpb.ExchangeWalletCodeRequest(code=code), metadata=v1.md
    )
    assert status == grpc.StatusCode.NOT_FOUND
    reply = h.stub.ExchangeWalletCode(bpb.ExchangeWalletCodeRequest(code=code), metadata=v2.md)
    assert open_envelope(reply.grant, pb.WalletGrant, h.broker.public_key).vendor_id == "v2"
    # The continue button is a CSRF-protected POST too.
    assert browser.post("/wallet/signin", {**data, "csrf_token": "x"}).status_code == 400
    # Another browser has no such session.
    assert "Continue as" not in new_browser().signin_page(v2).text
    # "Use another e-coin" shows the password form.
    other = browser.get("/wallet/signin", vendor="v2", return_to=v2.origin + "/a", other="1")
    assert 'name="password"' in other.text


def test_the_one_click_session_ends_with_logout_and_with_time(
    h: Harness, new_browser: Callable[[], Browser]
) -> None:
    coin = h.buy(h.reader())
    v1, v2 = h.vendor("v1"), h.vendor("v2")
    browser = new_browser()
    code_from(browser.signin(v1, coin.ecoin_id))
    page = browser.signin_page(v2)
    assert "Continue as" in page.text
    assert browser.post("/logout", {"csrf_token": browser.csrf(page)}).status_code == 302
    assert "Continue as" not in browser.signin_page(v2).text

    later = new_browser()
    code_from(later.signin(v1, coin.ecoin_id))
    page = later.signin_page(v2)
    h.clock.advance(12 * 3600 + 1)
    data = {
        "csrf_token": later.csrf(page),
        "vendor": "v2",
        "return_to": v2.origin + "/a",
        "continue": "yes",
    }
    resp = later.post("/wallet/signin", data)
    assert resp.status_code == 401 and 'name="password"' in resp.text


def test_get_info_names_the_portal(h: Harness) -> None:
    assert h.stub.GetInfo(bpb.GetInfoRequest()).portal_url == h.web
