"""Issue 3, item 6, client-side wallet: a reader pays newspaper articles from the browser.

Everything is real except the browser's user: a broker with its web portal,
two newspapers (in-process web servers, so ``checkpoint_all`` can be called
between steps), the reader's wallet directory and its bridge on loopback,
and Debian's headless Chromium. The reader

1. opens an account on the broker's portal (the register form);
2. logs the wallet in with the same credentials, buys a coin of 200 words
   of one cent, and runs the bridge; the first click on the pay button
   fails with the page's help (the newspaper is not approved yet), the
   reader approves both newspapers' origins;
3. reads two paid articles at newspaper 1 with the 402 page's pay button,
   the credit left shown after each one;
4. moves to newspaper 2 through the portal's directory and reads a paid
   article: the coin is handed over from newspaper 1 over gRPC;
5. sees on the portal's coins page (after both newspapers checkpoint) the
   words left and the two custody epochs.

The bridge address: the pay button asks ``NetPay.DEFAULT_BRIDGE``
(``http://127.0.0.1:8790``) unless ``localStorage["netpay.bridge"]`` of the
newspaper's origin names another loopback address (a page's URL cannot steer
it). The test starts the bridge on 8790 when that port is free, so the
default path is what runs; when 8790 is taken (a developer's own bridge, a
parallel run) the bridge gets a free port and the test writes its address
into each newspaper origin's localStorage before clicking, as a reader with
a bridge on another port would.

A second test: a page of another origin, never approved, cannot get a
payment from the bridge (Chromium hides the refused answer; even a
``no-cors`` POST spends nothing).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response
from werkzeug.serving import BaseWSGIServer, make_server

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from ewallet_client import Wallet
from ewallet_client.bridge import BridgeHandle, normalize_origin, start_bridge
from netpay.money import Money
from tests.fakes.wallet_store import shortcuts
from vendor.server import VendorConfig, VendorHandle, start_vendor
from vendor.web import format_money

pytestmark = pytest.mark.browser

DEFAULT_BRIDGE = "http://127.0.0.1:8790"
USERNAME = "ann.reader"
PASSWORD = "a long browser passphrase"
COIN_WORDS = 200  # one cent each: a coin of EUR 2.00
TIMEOUT_MS = 15_000


@dataclass
class StrangerSite:
    """Another origin, never approved: its page loads the bridge library and tries."""

    script_url: str
    server: BaseWSGIServer | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        app = Flask("stranger_site")
        page = (
            '<!doctype html><html><head><meta charset="utf-8"><title>Free prizes</title>'
            f'<script src="{self.script_url}"></script></head>'
            "<body><h1>Not a newspaper</h1><p id='result'>…</p></body></html>"
        )

        @app.get("/")
        def index() -> Response:
            return Response(page, mimetype="text/html")

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def origin(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
        if self.thread is not None:
            self.thread.join(10)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class World:
    tmp: Path
    broker: BrokerHandle
    papers: list[VendorHandle]  # [The Daily Hash, The Chain Gazette]
    wallet: Wallet  # the test's view of the reader's wallet directory
    _stop: list[Any] = field(default_factory=list)

    @property
    def portal(self) -> str:
        assert self.broker.web_url is not None
        return self.broker.web_url

    def start_bridge(self) -> BridgeHandle:
        """The reader's ``netpay wallet bridge``: on 8790 if free, else on any free port."""
        bridge_wallet = Wallet(self.tmp / "wallet")
        # 8790 taken: the bridge gets a free port, the page reads localStorage["netpay.bridge"].
        listen = "127.0.0.1:8790" if _port_free(8790) else "127.0.0.1:0"
        try:
            handle = start_bridge(bridge_wallet, listen=listen, close_wallet=True)
        except (OSError, SystemExit):  # werkzeug exits when a bind fails: taken meanwhile
            handle = start_bridge(bridge_wallet, listen="127.0.0.1:0", close_wallet=True)
        self._stop.append(handle)
        return handle

    def approve(self, origin: str) -> None:
        """What ``netpay wallet approve-origin ORIGIN`` does (default caps)."""
        shortcuts(self.wallet).approve_origin(
            normalize_origin(origin),
            max_click_minor=None,
            max_day_minor=None,
            now_ms=self.wallet.clock.now_ms(),
        )

    def words_spent(self) -> int:
        return sum(c.index for c in self.wallet.coins())


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    broker_dir = tmp_path / "broker"
    broker = start_broker(BrokerConfig(data_dir=broker_dir, web_addr="127.0.0.1:0"))
    started: list[Any] = [broker]
    wallet: Wallet | None = None
    try:
        papers = []
        for key, name in (("daily-hash", "The Daily Hash"), ("chain-gazette", "The Chain Gazette")):
            paper = start_vendor(
                VendorConfig(
                    data_dir=tmp_path / key,
                    broker_addr=broker.grpc_address,
                    enroll_token=add_vendor(broker_dir, key),
                    workers=0,
                    background=False,
                    display_name=name,
                )
            )
            started.append(paper)
            papers.append(paper)
        wallet = Wallet(tmp_path / "wallet")
        w = World(tmp_path, broker, papers, wallet)
        try:
            yield w
        finally:
            for thing in reversed(w._stop):
                thing.stop()
    finally:
        if wallet is not None:
            wallet.close()
        for thing in reversed(started):
            thing.stop()


def _money(minor: int) -> str:
    return format_money(Money(minor, "EUR"))


def _use_bridge(page: Any, bridge: BridgeHandle) -> None:
    """Point this origin's pay button at the bridge when it is not on the default port."""
    if bridge.url != DEFAULT_BRIDGE:
        page.evaluate("(url) => localStorage.setItem('netpay.bridge', url)", bridge.url)


def _pay_and_read(page: Any, article_id: str, title_word: str) -> str:
    """From the front page: open the article, get the 402 page, pay; returns the credit text."""
    with page.expect_response(lambda r: r.url.endswith(f"/articles/{article_id}")) as first:
        page.click(f'a[href="/articles/{article_id}"]')
    assert first.value.status == 402
    button = page.locator("#netpay-pay-button")
    price = page.locator(".price").first.inner_text()
    assert button.inner_text() == f"Pay {price} with my NetPay wallet"
    button.click()
    credit = page.locator("#credit-left")
    credit.wait_for(timeout=TIMEOUT_MS)
    assert title_word in page.inner_text("article h2")
    assert f"You paid {price} for this article." in page.inner_text("#payment")
    text: str = credit.inner_text()
    # The data attribute carries the same amount in minor units.
    assert _money(int(credit.get_attribute("data-amount-minor") or "-1")) == text
    return text


def _back_to_front_page(page: Any) -> None:
    page.click("text=Back to the front page")
    page.wait_for_selector("ul.articles")


def test_a_reader_pays_two_newspapers_from_the_browser_with_the_client_wallet(
    browser: Any, world: World, screenshot_dir: Path
) -> None:
    daily, gazette = world.papers
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()

        # 1. Register at the broker's portal.
        page.goto(world.portal + "/register")
        page.fill('input[name="username"]', USERNAME)
        page.fill('input[name="password"]', PASSWORD)
        page.fill('input[name="password_again"]', PASSWORD)
        page.click('button[type="submit"]')
        page.wait_for_url(world.portal + "/coins")
        assert "You have no coins yet." in page.content()
        session_cookies = [c for c in context.cookies(world.portal) if "session" in c["name"]]
        assert session_cookies, context.cookies(world.portal)
        for cookie in session_cookies:
            assert cookie["httpOnly"] is True, cookie
            assert cookie["sameSite"] in ("Lax", "Strict"), cookie

        # 2. The wallet logs in with the same account, buys a coin, runs its bridge.
        world.wallet.login(world.broker.grpc_address, USERNAME, PASSWORD)
        coin = world.wallet.buy(COIN_WORDS)
        bridge = world.start_bridge()

        # 3. Newspaper 1, reached from the portal's directory.
        page.goto(world.portal + "/newspapers")
        page.click("text=The Daily Hash")
        page.wait_for_url(daily.web_url + "/")
        _use_bridge(page, bridge)

        # Not approved yet: the bridge's refusal is hidden by Chromium, the page says what to do.
        page.click('a[href="/articles/2"]')
        page.click("#netpay-pay-button")
        help_box = page.locator("#netpay-bridge-help")
        help_box.wait_for(state="visible")
        assert page.inner_text("#netpay-error-code") == "bridge_unreachable"
        help_text = help_box.inner_text()
        assert "netpay wallet bridge" in help_text
        assert f"netpay wallet approve-origin {daily.web_url}" in help_text
        assert world.words_spent() == 0
        page.screenshot(path=str(screenshot_dir / "client-wallet-not-approved.png"), full_page=True)

        world.approve(daily.web_url)
        world.approve(gazette.web_url)
        page.click("#netpay-pay-button")  # the same 402 page, now approved
        page.locator("#credit-left").wait_for()
        assert page.inner_text("#credit-left") == _money(COIN_WORDS - 2) == "€1.98"
        assert page.inner_text("#words-left") == str(COIN_WORDS - 2)
        assert world.words_spent() == 2

        # A second article at the same newspaper.
        _back_to_front_page(page)
        assert _pay_and_read(page, "3", "fifty-five bytes") == _money(COIN_WORDS - 5)
        assert world.words_spent() == 5
        page.screenshot(path=str(screenshot_dir / "client-wallet-newspaper-1.png"), full_page=True)

        # 4. Newspaper 2: the coin moves from newspaper 1 by hand-off.
        page.goto(world.portal + "/newspapers")
        page.click("text=The Chain Gazette")
        page.wait_for_url(gazette.web_url + "/")
        _use_bridge(page, bridge)
        assert _pay_and_read(page, "4", "Gazette") == _money(COIN_WORDS - 10) == "€1.90"
        assert world.words_spent() == 10
        page.screenshot(path=str(screenshot_dir / "client-wallet-newspaper-2.png"), full_page=True)

        # 5. The portal's coins page, once both newspapers have checkpointed.
        for paper in world.papers:
            paper.services.checkpoint_all()
        page.goto(world.portal + "/coins")
        section = page.locator("section.coin", has_text=coin.ecoin_id)
        assert section.locator(".words-left").inner_text() == "190 of 200 (1.90 EUR)"
        assert section.locator(".state").inner_text() == "held"
        rows = [
            [cell.strip() for cell in row.split("\t")]
            for row in section.locator("table.epochs tbody tr").all_inner_texts()
        ]
        assert len(rows) == 2, rows
        (e1, holder1, how1, base1, end1), (e2, holder2, how2, base2, end2) = rows
        assert (e1, holder1, how1, base1, end1) == ("1", "daily-hash", "acquire", "0", "5")
        assert (e2, holder2, how2, base2, end2) == (
            "2",
            "chain-gazette",
            "handoff from daily-hash",
            "5",
            "open",
        )
        page.screenshot(path=str(screenshot_dir / "client-wallet-portal-coins.png"), full_page=True)
    finally:
        context.close()


_STRANGER_TRIES = """async ([bridge, articleUrl]) => {
  const out = {};
  try { await NetPay.authorize(articleUrl, {bridge}); out.authorize = "paid"; }
  catch (e) { out.authorize = e.code; }
  try { await NetPay.pay(articleUrl, {bridge}); out.pay = "paid"; }
  catch (e) { out.pay = e.code; }
  try { const s = await NetPay.status({bridge}); out.status = JSON.stringify(s); }
  catch (e) { out.status = e.code; }
  // A no-cors POST is sent without a preflight; the bridge must refuse it by itself.
  await fetch(bridge + "/v1/authorize", {method: "POST", mode: "no-cors",
      body: JSON.stringify({url: articleUrl})}).catch(() => null);
  document.getElementById("result").textContent = JSON.stringify(out);
  return out;
}"""


def test_a_page_of_another_site_cannot_spend_through_the_bridge(
    browser: Any, world: World, screenshot_dir: Path
) -> None:
    daily = world.papers[0]
    world.wallet.register(world.broker.grpc_address, USERNAME, PASSWORD)
    world.wallet.buy(COIN_WORDS)
    world.approve(daily.web_url)
    bridge = world.start_bridge()
    stranger = StrangerSite(script_url=daily.web_url + "/netpay/bridge.js")
    stranger.start()
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(stranger.origin + "/")
        result = page.evaluate(_STRANGER_TRIES, [bridge.url, daily.web_url + "/articles/2"])
        assert result == {
            "authorize": "bridge_unreachable",
            "pay": "bridge_unreachable",
            "status": "bridge_unreachable",
        }
        assert world.words_spent() == 0
        page.screenshot(path=str(screenshot_dir / "client-wallet-stranger.png"), full_page=True)
    finally:
        context.close()
        stranger.stop()


def test_the_pay_button_reads_only_a_loopback_bridge_from_local_storage(
    browser: Any, world: World
) -> None:
    """``localStorage["netpay.bridge"]`` naming another host is ignored: the default is asked.

    Both addresses are intercepted in the browser (and refused), so whatever
    listens on 8790 on this machine plays no part.
    """
    daily = world.papers[0]
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    asked: list[str] = []

    def refuse(route: Any) -> None:
        asked.append(route.request.url)
        route.abort()

    context.route(DEFAULT_BRIDGE + "/**", refuse)
    context.route("https://evil.example/**", refuse)
    try:
        page = context.new_page()
        page.goto(daily.web_url + "/articles/2")
        page.evaluate("() => localStorage.setItem('netpay.bridge', 'https://evil.example')")
        page.click("#netpay-pay-button")
        page.locator("#netpay-bridge-help").wait_for(state="visible")
        assert page.inner_text("#netpay-error-code") == "bridge_unreachable"
        assert asked == [DEFAULT_BRIDGE + "/v1/authorize"]
    finally:
        context.close()
