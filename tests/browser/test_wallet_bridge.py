"""A newspaper page in headless Chromium pays an article through the wallet bridge.

What this proves: a page served from the origin the broker certified for a
vendor, and approved by the reader, can — with ``netpay-bridge.js`` and
nothing else — get an ``Authorization`` header from the bridge on another
loopback port (a cross-origin CORS request with its preflight), fetch the
article with it and show the vendor's ``NetPay-Balance``; and that a page of
an origin the reader did not approve gets nothing (Chromium hides the refused
answer, the wallet's index does not move), while an approved page asking
for another site's article gets a readable ``permission_denied``.

The test serves the page itself: the ``page_server`` fixture (conftest.py),
a small server on 127.0.0.1, serves the page and the script and forwards
``/articles/*`` to the real vendor (headers kept both ways). The
vendor is enrolled with that server's origin as its certified web origin, so
the page, the article URL and the certificate share one origin, as on a real
newspaper.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from broker.server import BrokerConfig, add_vendor, start_broker
from ewallet_client import Wallet
from ewallet_client.bridge import BridgeHandle, start_bridge
from tests.fakes.pages import PageServer
from tests.fakes.wallet_store import shortcuts
from vendor.server import VendorConfig, start_vendor

pytestmark = pytest.mark.browser

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Bridge test page</title>
<script src="/netpay-bridge.js"></script></head>
<body><h1>A newspaper page</h1>
<p>Credit left: <span id="credit">?</span> words</p>
<div id="article">not paid yet</div></body></html>
"""


@dataclass
class Site:
    newspaper: PageServer  # the certified, approved origin
    stranger: PageServer  # another origin, never approved
    bridge: BridgeHandle
    wallet: Wallet
    article_path: str
    price_minor: int


@pytest.fixture
def site(tmp_path: Path, page_server: Callable[..., PageServer]) -> Iterator[Site]:
    newspaper, stranger = page_server(PAGE), page_server(PAGE)
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
                display_name="The Daily Hash",
            )
        )
        started.append(vendor)
        newspaper.target = vendor.web_url
        stranger.target = vendor.web_url
        with requests.Session() as s:
            items = s.get(vendor.web_url + "/api/articles", timeout=10).json()
        art = min((a for a in items if a["amount"] > 0), key=lambda a: (a["amount"], a["id"]))
        wallet = Wallet(tmp_path / "wallet")
        wallet.register(broker.grpc_address, "ann", "browser bridge pass")
        wallet.buy(200)
        shortcuts(wallet).approve_origin(
            newspaper.origin, max_click_minor=None, max_day_minor=None, now_ms=0
        )
        bridge = start_bridge(Wallet(tmp_path / "wallet"), listen="127.0.0.1:0", close_wallet=True)
        started.append(bridge)
        yield Site(newspaper, stranger, bridge, wallet, urlsplit(art["url"]).path, art["amount"])
        wallet.close()
    finally:
        for thing in reversed(started):
            thing.stop()


_PAY = """async ([path, bridge]) => {
  const resp = await NetPay.pay(path, {bridge});
  const text = await resp.text();
  document.getElementById("article").textContent = text.replace(/<[^>]*>/g, " ").slice(0, 400);
  document.getElementById("credit").textContent = resp.headers.get("NetPay-Balance");
  return {status: resp.status, balance: resp.headers.get("NetPay-Balance"),
          receipt: Boolean(resp.headers.get("NetPay-Receipt")), auth: resp.netpay};
}"""

_AUTHORIZE = """async ([url, bridge]) => {
  try {
    const auth = await NetPay.authorize(url, {bridge});
    return {ok: true, auth};
  } catch (e) {
    return {ok: false, name: e.name, code: e.code, status: e.status};
  }
}"""


def _index(wallet: Wallet) -> int:
    return sum(c.index for c in wallet.coins())


def test_an_approved_newspaper_page_pays_through_the_bridge(
    browser: Any, site: Site, screenshot_dir: Path
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.newspaper.origin + "/page.html")
        result = page.evaluate(_PAY, [site.article_path, site.bridge.url])
        assert result["status"] == 200
        assert result["receipt"] is True
        assert result["balance"] == str(200 - site.price_minor)
        assert result["auth"]["amount"] == site.price_minor
        assert result["auth"]["words_left"] == 200 - site.price_minor
        assert result["auth"]["vendor_id"] == "daily-hash"
        assert page.inner_text("#credit") == str(200 - site.price_minor)
        assert _index(site.wallet) == site.price_minor
        # The paid request went out with the bridge's header.
        assert site.newspaper.forwarded[-1] == result["auth"]["authorization"]
        page.screenshot(path=str(screenshot_dir / "wallet-bridge-paid.png"), full_page=True)

        # An approved page asking for another site's article: a readable refusal.
        foreign = site.stranger.origin + site.article_path
        refused = page.evaluate(_AUTHORIZE, [foreign, site.bridge.url])
        assert refused == {
            "ok": False,
            "name": "NetPayError",
            "code": "permission_denied",
            "status": 403,
        }
        assert _index(site.wallet) == site.price_minor
    finally:
        context.close()


def test_a_page_of_an_unapproved_origin_gets_nothing(
    browser: Any, site: Site, screenshot_dir: Path
) -> None:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(site.stranger.origin + "/page.html")
        for url in (
            site.newspaper.origin + site.article_path,  # the newspaper's article
            site.stranger.origin + site.article_path,  # its own "article"
        ):
            refused = page.evaluate(_AUTHORIZE, [url, site.bridge.url])
            # The preflight fails without CORS headers: Chromium shows the page nothing.
            assert refused["ok"] is False and refused["code"] == "bridge_unreachable", refused
        status = page.evaluate(
            """async (bridge) => {
                 try { await NetPay.status({bridge}); return "read"; }
                 catch (e) { return e.code; } }""",
            site.bridge.url,
        )
        assert status == "bridge_unreachable"
        assert _index(site.wallet) == 0
        assert site.stranger.forwarded == []  # the wallet never even asked the price
        page.screenshot(path=str(screenshot_dir / "wallet-bridge-refused.png"), full_page=True)
    finally:
        context.close()
