"""A newspaper page in headless Chromium opens a cookie-cache window through the bridge.

``NetPay.openWindow(siteUrl, units, {bridge})`` asks the wallet bridge for a
window header (POST /v1/window, cross-origin with its preflight), POSTs it
to the site's /netpay/window itself, and Chromium keeps the HttpOnly
``netpay_window`` cookie; the page's next plain same-origin fetches of
articles are paid from the window with no bridge call, and the page's script
can never read the cookie.

As in test_wallet_bridge.py, a small server on 127.0.0.1 (the ``page_server``
fixture of conftest.py) serves the page and the script and forwards
``/articles/*`` and ``/netpay/*`` to the real vendor (cookies and NetPay
headers both ways); the vendor is certified for that server's origin.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask import Flask, Response
from werkzeug.serving import make_server

from broker.server import BrokerConfig, add_vendor, start_broker
from ewallet_client import Wallet
from ewallet_client.bridge import BridgeHandle, start_bridge
from tests.fakes.pages import PageServer
from tests.fakes.wallet_store import shortcuts
from vendor.server import VendorConfig, start_vendor

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Window test page</title>
<script src="/netpay-bridge.js"></script></head>
<body><h1>A newspaper page</h1>
<p>Window: <span id="window">none</span> words</p>
<div id="article">not paid yet</div></body></html>
"""
_UP = ("Accept", "Authorization", "Cookie", "Sec-Fetch-Site")
_DOWN = ("WWW-Authenticate", "NetPay-Receipt", "NetPay-Balance", "NetPay-Window", "Set-Cookie")


@dataclass
class Site:
    newspaper: PageServer
    bridge: BridgeHandle
    wallet: Wallet
    articles: list[tuple[str, int]]  # (path, price), cheapest first


@pytest.fixture
def site(tmp_path: Path, page_server: Callable[..., PageServer]) -> Iterator[Site]:
    newspaper = page_server(PAGE, up=_UP, down=_DOWN, forward_netpay=True)
    broker_dir = tmp_path / "broker"
    broker = start_broker(BrokerConfig(data_dir=broker_dir))
    started: list[Any] = [broker]
    try:
        vendor = start_vendor(
            VendorConfig(
                data_dir=tmp_path / "vendor",
                broker_addr=broker.grpc_address,
                enroll_token=add_vendor(broker_dir, "daily-hash", origin=newspaper.origin),
                workers=0,
                background=False,
            )
        )
        started.append(vendor)
        newspaper.target = vendor.web_url
        with requests.Session() as s:
            items = s.get(vendor.web_url + "/api/articles", timeout=10).json()
        paid = sorted((a for a in items if a["amount"] > 0), key=lambda a: (a["amount"], a["id"]))
        wallet = Wallet(tmp_path / "wallet")
        wallet.register(broker.grpc_address, "ann", "browser window pass")
        wallet.buy(300)
        shortcuts(wallet).approve_origin(
            newspaper.origin, max_click_minor=None, max_day_minor=None, now_ms=0
        )
        bridge = start_bridge(Wallet(tmp_path / "wallet"), listen="127.0.0.1:0", close_wallet=True)
        started.append(bridge)
        yield Site(
            newspaper, bridge, wallet, [(urlsplit(a["url"]).path, a["amount"]) for a in paid]
        )
        wallet.close()
    finally:
        for thing in reversed(started):
            thing.stop()


_OPEN = """async ([bridge]) => {
  const w = await NetPay.openWindow("/", 60, {bridge});
  document.getElementById("window").textContent = String(w.words_left);
  return {window: w, cookieVisible: document.cookie.includes("netpay_window")};
}"""

_READ = """async ([path]) => {
  const resp = await fetch(path, {credentials: "same-origin"});
  const text = await resp.text();
  document.getElementById("article").textContent = text.replace(/<[^>]*>/g, " ").slice(0, 300);
  document.getElementById("window").textContent = resp.headers.get("NetPay-Window");
  return {status: resp.status, left: resp.headers.get("NetPay-Window"),
          receipt: Boolean(resp.headers.get("NetPay-Receipt"))};
}"""


def test_a_page_opens_a_window_and_its_clicks_pay_from_the_cookie(
    browser: Any, site: Site, screenshot_dir: Path
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.newspaper.origin + "/page.html")
        opened = page.evaluate(_OPEN, [site.bridge.url])
        w = opened["window"]
        assert (w["window_from"], w["window_top"], w["words_left"]) == (0, 60, 60)
        assert w["vendor_id"] == "daily-hash" and w["netpay"]["units"] == 60
        assert opened["cookieVisible"] is False  # HttpOnly: the page's script never sees it
        assert sum(c.index for c in site.wallet.coins()) == 60
        cookies = {c["name"]: c for c in context.cookies()}
        assert cookies["netpay_window"]["httpOnly"] is True
        assert cookies["netpay_window"]["sameSite"] == "Strict"

        left = 60
        for path, price in site.articles[:2]:
            before = len(site.newspaper.seen)
            result = page.evaluate(_READ, [path])
            left -= price
            assert result == {"status": 200, "left": str(left), "receipt": True}
            sent = site.newspaper.seen[before]
            assert "Authorization" not in sent and "netpay_window=" in sent["Cookie"]
        # No bridge call, no coin move: the window paid.
        assert sum(c.index for c in site.wallet.coins()) == 60
        page.screenshot(path=str(screenshot_dir / "wallet-window-paid.png"), full_page=True)
    finally:
        context.close()


EVIL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>Another site</title></head>
<body><h1>Another site on this machine</h1>
<form id="close" method="post" action="{origin}/netpay/window/close"></form>
<img id="pixel" alt="">
</body></html>"""

_EVIL = """async ([origin, path]) => {
  // A cross-origin page tries to spend the reader's window: a credentialed
  // fetch (no-cors, so the browser sends it), and an image load of the article.
  try { await fetch(origin + path, {credentials: "include", mode: "no-cors"}); } catch (e) {}
  await new Promise((done) => {
    const img = document.getElementById("pixel");
    img.onload = img.onerror = () => done();
    img.src = origin + path;
  });
  return true;
}"""


def test_a_cross_site_page_cannot_spend_or_close_the_window(
    browser: Any, site: Site, screenshot_dir: Path
) -> None:
    evil = Flask("evil_page")

    @evil.get("/")
    def index() -> Response:
        return Response(EVIL_PAGE.format(origin=site.newspaper.origin), mimetype="text/html")

    server = make_server("127.0.0.1", 0, evil, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.newspaper.origin + "/page.html")
        opened = page.evaluate(_OPEN, [site.bridge.url])
        assert opened["window"]["words_left"] == 60

        other = context.new_page()
        other.goto(f"http://127.0.0.1:{server.server_port}/")
        (path, price), (path2, _) = site.articles[0], site.articles[1]
        before = len(site.newspaper.seen)
        other.evaluate(_EVIL, [site.newspaper.origin, path2])
        # The form POST navigates to the close URL, from another origin.
        with other.expect_navigation():
            other.evaluate("document.getElementById('close').submit()")
        attempts = site.newspaper.seen[before:]
        assert len(attempts) >= 3  # fetch, image, form all reached the newspaper
        for sent in attempts:
            # 127.0.0.1 on another port is the same *site*: the Strict cookie goes
            # along, and Sec-Fetch-Site is what stops it (same-origin or absent only).
            assert sent.get("Sec-Fetch-Site") not in (None, "same-origin")
        other.screenshot(path=str(screenshot_dir / "wallet-window-cross-site.png"), full_page=True)

        # Nothing was consumed and the window is still open: the page's own next
        # click is paid from the full window.
        result = page.evaluate(_READ, [path])
        assert result == {"status": 200, "left": str(60 - price), "receipt": True}
    finally:
        context.close()
        server.shutdown()
        server.server_close()
        thread.join(10)
