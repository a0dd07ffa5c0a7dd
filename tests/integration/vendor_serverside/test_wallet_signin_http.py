"""Server-side wallets at the newspaper, end to end over HTTP: sign-in through
the broker portal, articles paid from drawn windows, the move to a second
newspaper (one click at the broker, a hand-off), and what must never work."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, quote_plus, urlsplit

import requests

from broker.domain import EpochOpening
from netpay.encoding import b64url_decode
from netpay.envelope import open_envelope
from netpay.v1 import statements_pb2 as pb
from tests.integration.vendor_serverside.conftest import WALLET_PASSWORD, World
from vendor.domain import CloseReason, WindowState
from vendor.server import VendorHandle

_CREDIT_RE = re.compile(r'id="credit-left">([^<]+)<')


def credit_on_page(resp: requests.Response) -> str:
    match = _CREDIT_RE.search(resp.text)
    assert match is not None, resp.text
    return match.group(1)


def receipt(resp: requests.Response, vendor: VendorHandle) -> pb.Receipt:
    envelope = pb.Envelope.FromString(b64url_decode(resp.headers["NetPay-Receipt"]))
    key = vendor.services._ports.identity.key.public_key
    return open_envelope(envelope, pb.Receipt, key)


def check_paid(resp: requests.Response, words_left: int, window_left: int) -> None:
    assert resp.status_code == 200, resp.text
    assert resp.headers["NetPay-Balance"] == str(words_left)
    assert resp.headers["NetPay-Window"] == str(window_left)
    whole, cents = divmod(words_left, 100)
    assert credit_on_page(resp) == f"€{whole}.{cents:02d}"


def test_sign_in_read_and_move_to_a_second_newspaper(world: World, tmp_path: Path) -> None:
    coin = world.buy(n=200)
    v1 = world.start_vendor("v1", "127.0.0.2")
    v2 = world.start_vendor("v2", "127.0.0.3")
    browser = world.browser()

    # The 402 page offers the sign-in.
    unpaid = browser.read(v1, "1")
    assert unpaid.status_code == 402
    assert "/netpay/wallet/signin?next=/articles/1" in unpaid.text

    back = browser.sign_in(v1, coin.ecoin_id, "/articles/1")
    [cookie] = [c for c in back.raw.headers.getlist("Set-Cookie") if c.startswith("netpay_wallet=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie and "Max-Age=" in cookie
    # Signed in: v1 holds the coin (a FREE coin is granted with the WalletGrant).
    held = v1.services.coin(coin.ecoin_id)
    assert held is not None and held.view.epoch == 1

    # Three articles (1, 2 and 5 cents): one window of 50 words is drawn.
    r1 = browser.read(v1, "1")
    check_paid(r1, 200 - 1, 50 - 1)
    check_paid(browser.read(v1, "2"), 200 - 3, 50 - 3)
    r3 = browser.read(v1, "4")
    check_paid(r3, 200 - 8, 50 - 8)
    assert (receipt(r1, v1).from_index, receipt(r1, v1).to_index) == (0, 1)
    assert (receipt(r3, v1).from_index, receipt(r3, v1).to_index) == (3, 8)
    # The same article again within retry_ttl_s is not paid twice.
    check_paid(browser.read(v1, "4"), 200 - 8, 50 - 8)
    assert world.coin(coin.ecoin_id).latest_index == 50  # drawn at the broker
    [window] = v1.services.windows(coin.ecoin_id)
    assert (window.window_from, window.window_top, window.consumed_index) == (0, 50, 8)

    # Newspaper 2 does not know this browser yet: its sign-in is one click.
    assert browser.read(v2, "2").status_code == 402
    browser.sign_in(v2, coin.ecoin_id, "/articles/2", one_click=True)
    r4 = browser.read(v2, "2")
    # v1's window closed with a credit of 42 words; v2 drew (50, 100].
    check_paid(r4, 200 - 52, 50 - 2)
    assert (receipt(r4, v2).from_index, receipt(r4, v2).to_index) == (50, 52)
    [closed] = v1.services.windows(coin.ecoin_id)
    assert closed.state is WindowState.CLOSED and closed.close_reason is CloseReason.HANDOFF
    assert closed.words_left == 42
    credit = open_envelope(
        pb.Envelope.FromString(closed.credit or b""),
        pb.WindowCredit,
        v1.services._ports.identity.key.public_key,
    )
    assert (credit.window_top, credit.consumed_index, credit.refund_units) == (50, 8, 42)

    # The broker's custody log: acquired by v1, handed to v2 at the window top.
    [portal_coin] = [
        c
        for c in world.broker.services.portal_coins(world.reader_id)
        if c.ecoin_id == coin.ecoin_id
    ]
    first, second = portal_coin.epochs
    assert (first.holder, first.opened_by) == ("v1", EpochOpening.ACQUIRE)
    assert first.end is not None and first.end.index == 50
    assert (second.holder, second.opened_by, second.opened_from) == (
        "v2",
        EpochOpening.HANDOFF,
        "v1",
    )
    assert second.base.index == 50

    # Back at newspaper 1: its session still works, the coin comes back by hand-off.
    r5 = browser.read(v1, "3")
    check_paid(r5, 200 - 103, 50 - 3)
    assert receipt(r5, v1).from_index == 100
    # Drawn windows start at the coin's index: no click's Receipt states void words.
    signed = [receipt(r, v) for r, v in ((r1, v1), (r3, v1), (r4, v2), (r5, v1))]
    assert [(r.void_from, r.from_index) for r in signed] == [(0, 0), (3, 3), (50, 50), (100, 100)]

    # The newspapers never saw the wallet password: not in any request sent to
    # them, not in any file of theirs.
    secret = WALLET_PASSWORD.encode()
    encoded = quote_plus(WALLET_PASSWORD).encode()
    for sent in browser.sent:
        if sent.url and sent.url.startswith((v1.web_url, v2.web_url)):
            body = sent.body if isinstance(sent.body, bytes) else (sent.body or "").encode()
            blob = (sent.url or "").encode() + body + str(sent.headers).encode()
            assert secret not in blob and encoded not in blob
    for vendor_dir in (tmp_path / "v1", tmp_path / "v2"):
        files = [p for p in vendor_dir.rglob("*") if p.is_file()]
        assert any(p.name == "vendor.sqlite" for p in files)
        for path in files:
            data = path.read_bytes()
            assert secret not in data and encoded not in data, path


def test_a_stolen_cookie_sent_cross_site_spends_nothing(world: World) -> None:
    coin = world.buy(n=200)
    v1 = world.start_vendor("v1", "127.0.0.2")
    browser = world.browser()
    browser.sign_in(v1, coin.ecoin_id)
    check_paid(browser.read(v1, "1"), 199, 49)
    handle = browser.http.cookies.get("netpay_wallet")
    assert handle

    for site in ("cross-site", "same-site"):
        resp = requests.get(
            v1.web_url + "/articles/2",
            headers={"Cookie": f"netpay_wallet={handle}", "Sec-Fetch-Site": site},
            timeout=30,
        )
        assert resp.status_code == 402, site
    [window] = v1.services.windows(coin.ecoin_id)
    assert window.consumed_index == 1
    assert world.coin(coin.ecoin_id).latest_index == 50
    # Same-origin, the reader's own navigation ("none") or no Sec-Fetch-Site pays.
    check_paid(browser.read(v1, "2", **{"Sec-Fetch-Site": "same-origin"}), 197, 47)
    check_paid(browser.read(v1, "3", **{"Sec-Fetch-Site": "none"}), 194, 44)
    # A garbled or unknown cookie is the normal challenge, and the cookie is cleared.
    bad = requests.get(
        v1.web_url + "/articles/2", headers={"Cookie": "netpay_wallet=" + "A" * 43}, timeout=30
    )
    assert bad.status_code == 402
    assert "netpay_wallet=;" in bad.headers["Set-Cookie"]


def test_next_must_be_a_local_path(world: World) -> None:
    v1 = world.start_vendor("v1", "127.0.0.2")
    browser = world.browser()
    for target in (
        "https://evil.example/",
        "//evil.example/x",
        "/\\evil.example",
        "evil.example",
        "javascript:alert(1)",
        "/" + "a" * 600,
    ):
        start = browser.get(v1.web_url + "/netpay/wallet/signin", params={"next": target})
        assert start.status_code == 400, target
        back = browser.get(
            v1.web_url + "/netpay/wallet/return",
            params={"next": target, "netpay_code": "x" * 43},
        )
        assert back.status_code == 400, target
        assert "Location" not in back.headers
    # A local path goes to the portal with the return URL on this origin.
    start = browser.get(v1.web_url + "/netpay/wallet/signin", params={"next": "/articles/3?a=b"})
    assert start.status_code == 303
    portal = urlsplit(start.headers["Location"])
    assert f"{portal.scheme}://{portal.netloc}" == world.broker.web_url
    query = parse_qs(portal.query)
    assert query["vendor"] == ["v1"]
    return_to = urlsplit(query["return_to"][0])
    assert f"{return_to.scheme}://{return_to.netloc}" == v1.web_url
    assert parse_qs(return_to.query)["next"] == ["/articles/3?a=b"]


def test_cancel_and_codes_not_started_here(world: World) -> None:
    coin = world.buy(n=100)
    v1 = world.start_vendor("v1", "127.0.0.2")
    # Cancelled at the broker: back to next, no session.
    browser = world.browser()
    cancel = browser.get(v1.web_url + "/netpay/wallet/return", params={"next": "/articles/1"})
    assert cancel.status_code == 303 and cancel.headers["Location"] == "/articles/1"
    assert "netpay_wallet=" not in cancel.headers.get("Set-Cookie", "")

    # A code whose sign-in another browser started is refused (login CSRF).
    victim, attacker = world.browser(), world.browser()
    victim.get(v1.web_url + "/netpay/wallet/signin", params={"next": "/"})
    start = attacker.get(v1.web_url + "/netpay/wallet/signin", params={"next": "/"})
    code = world.broker.services.wallet_signin(coin.ecoin_id, WALLET_PASSWORD, "v1").code
    state = parse_qs(
        urlsplit(parse_qs(urlsplit(start.headers["Location"]).query)["return_to"][0]).query
    )["state"][0]
    forced = victim.get(
        v1.web_url + "/netpay/wallet/return",
        params={"next": "/", "netpay_code": code, "state": state},
    )
    assert forced.status_code == 403
    assert victim.http.cookies.get("netpay_wallet") is None
    # An unknown code is refused and sets nothing.
    own = attacker.get(
        v1.web_url + "/netpay/wallet/return",
        params={"next": "/", "netpay_code": "B" * 43, "state": state},
    )
    assert own.status_code == 404
    assert attacker.http.cookies.get("netpay_wallet") is None
