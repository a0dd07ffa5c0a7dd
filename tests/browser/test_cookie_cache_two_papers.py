"""Cookie-cache windows, end to end in headless Chromium, across two newspapers.

Everything is real except the browser's user: a broker with its web portal on
127.0.0.1, two newspapers in process (workers=0) on their OWN loopback hosts
(127.0.0.2 and 127.0.0.3: cookies are not separated by port, so each
newspaper needs its own host for its ``netpay_window`` cookie), the reader's
client-side wallet and its bridge on 127.0.0.1, and Debian's headless
Chromium. In ONE browser context the reader

1. registers at the broker's portal (the register form); the wallet logs in
   with the same account and buys a coin of 200 words of one cent; the
   reader approves both newspapers' origins in the bridge;
2. at newspaper 1, a page of the newspaper (its 402 page, which loads
   ``/netpay/bridge.js``) opens a window of 60 words with
   ``NetPay.openWindow``: the browser keeps the HttpOnly, SameSite=Strict
   ``netpay_window`` cookie (not Secure on loopback);
3. reads two articles through the front page's links (same-origin
   navigations), each paid from the window, and one more by a typed URL
   (``page.goto``: ``Sec-Fetch-Site: none``, the reader's own navigation),
   also paid from the window; the credit shown after each one and the
   ``NetPay-Window`` / ``NetPay-Balance`` headers are the window's words left;
4. moves to newspaper 2 and opens a window there: the coin is handed over
   from newspaper 1, which closes its window with a WindowCredit (reason
   ``handoff``) for its unconsumed 50 words; the reader reads two articles
   there from the new window, and each page also shows those 50 words (€0.50)
   being returned (``#credit-returning``);
5. back at newspaper 1, the old cookie pays nothing any more (a 402, and the
   cookie is cleared).

No click after a window opened goes through the bridge: the wallet's index
moves only by the two windows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from ewallet_client import Wallet
from ewallet_client.bridge import BridgeHandle, normalize_origin, start_bridge
from netpay.envelope import open_envelope
from netpay.money import Money
from netpay.v1 import statements_pb2 as pb
from tests.fakes.wallet_store import shortcuts
from vendor.domain import CloseReason, WindowState
from vendor.server import VendorConfig, VendorHandle, start_vendor
from vendor.web import format_money

pytestmark = pytest.mark.browser

USERNAME = "wendy.reader"
PASSWORD = "a long cookie window passphrase"
COIN_WORDS = 200  # one cent each: a coin of EUR 2.00
WINDOW_WORDS = 60
TIMEOUT_MS = 15_000


@dataclass
class World:
    tmp: Path
    broker: BrokerHandle
    papers: list[VendorHandle]  # [The Daily Hash on 127.0.0.2, The Chain Gazette on 127.0.0.3]
    wallet: Wallet  # the test's view of the reader's wallet directory
    _stop: list[Any] = field(default_factory=list)

    @property
    def portal(self) -> str:
        assert self.broker.web_url is not None
        return self.broker.web_url

    def start_bridge(self) -> BridgeHandle:
        """The reader's ``netpay wallet bridge`` on a free loopback port."""
        handle = start_bridge(Wallet(self.tmp / "wallet"), listen="127.0.0.1:0", close_wallet=True)
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
        for key, name, host in (
            ("daily-hash", "The Daily Hash", "127.0.0.2"),
            ("chain-gazette", "The Chain Gazette", "127.0.0.3"),
        ):
            paper = start_vendor(
                VendorConfig(
                    data_dir=tmp_path / key,
                    broker_addr=broker.grpc_address,
                    enroll_token=add_vendor(broker_dir, key),
                    web_addr=f"{host}:0",
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


_OPEN = """async ([bridge, units]) => {
  const w = await NetPay.openWindow(window.location.origin + "/", units, {bridge});
  return {window: w, cookieVisible: document.cookie.includes("netpay_window")};
}"""


def _open_window(page: Any, paper: VendorHandle, bridge: BridgeHandle) -> dict[str, Any]:
    """From a 402 page of ``paper`` (it loads /netpay/bridge.js): a window of WINDOW_WORDS."""
    response = page.goto(f"{paper.web_url}/articles/2")
    assert response is not None and response.status == 402
    assert page.locator("#credit-left").count() == 0
    opened = page.evaluate(_OPEN, [bridge.url, WINDOW_WORDS])
    assert opened["cookieVisible"] is False  # HttpOnly: the page's script never sees it
    window: dict[str, Any] = opened["window"]
    assert window["units"] == window["words_left"] == WINDOW_WORDS
    assert (window["unit_value"], window["currency"]) == (1, "EUR")
    assert window["netpay"]["units"] == WINDOW_WORDS
    assert window["netpay"]["amount"] == WINDOW_WORDS
    assert window["netpay"]["window_url"] == paper.web_url + "/netpay/window"
    return window


def _window_cookie(context: Any, paper: VendorHandle) -> dict[str, Any]:
    [cookie] = [c for c in context.cookies(paper.web_url) if c["name"] == "netpay_window"]
    assert cookie["httpOnly"] is True, cookie
    assert cookie["sameSite"] == "Strict", cookie
    assert cookie["secure"] is False, cookie  # loopback: no Secure
    assert cookie["path"] == "/", cookie
    assert cookie["domain"] == paper.web_url.removeprefix("http://").split(":")[0], cookie
    assert len(cookie["value"]) == 43, cookie  # 32 bytes, base64url
    return dict(cookie)


def _check_paid(response: Any, page: Any, price_minor: int, window_left: int) -> None:
    """A paid article page: the headers and the credit shown, to the cent."""
    assert response is not None and response.status == 200
    headers = response.headers
    assert headers["netpay-window"] == str(window_left)
    assert headers["netpay-balance"] == str(window_left)
    assert headers.get("netpay-receipt")
    credit = page.locator("#credit-left")
    assert f"You paid {_money(price_minor)} for this article." in page.inner_text("#payment")
    assert credit.inner_text() == _money(window_left)
    assert credit.get_attribute("data-amount-minor") == str(window_left)
    assert credit.get_attribute("data-currency") == "EUR"
    assert page.inner_text("#words-left") == str(window_left)


def _returning(page: Any) -> tuple[str, str | None, str | None] | None:
    """The window credit on its way back to the reader, as the article page shows it."""
    shown = page.locator("#credit-returning")
    if shown.count() == 0:
        return None
    return (
        shown.inner_text(),
        shown.get_attribute("data-amount-minor"),
        shown.get_attribute("data-currency"),
    )


def _click_article(page: Any, paper: VendorHandle, article_id: str) -> Any:
    """From the front page, follow the article's link (a same-origin navigation)."""
    page.goto(paper.web_url + "/")
    page.wait_for_selector("ul.articles")
    with page.expect_navigation(url=f"{paper.web_url}/articles/{article_id}") as nav:
        page.click(f'a[href="/articles/{article_id}"]')
    response = nav.value
    assert response.request.header_value("sec-fetch-site") == "same-origin"
    return response


def test_a_reader_reads_two_newspapers_from_cookie_cache_windows(
    browser: Any, world: World, screenshot_dir: Path
) -> None:
    daily, gazette = world.papers
    assert daily.web_url.startswith("http://127.0.0.2:")
    assert gazette.web_url.startswith("http://127.0.0.3:")
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    try:
        page = context.new_page()

        # 1. Register at the portal; the wallet logs in, buys a coin; the bridge runs.
        page.goto(world.portal + "/register")
        page.fill('input[name="username"]', USERNAME)
        page.fill('input[name="password"]', PASSWORD)
        page.fill('input[name="password_again"]', PASSWORD)
        page.click('button[type="submit"]')
        page.wait_for_url(world.portal + "/coins")
        assert "You have no coins yet." in page.content()
        world.wallet.login(world.broker.grpc_address, USERNAME, PASSWORD)
        coin = world.wallet.buy(COIN_WORDS)
        bridge = world.start_bridge()
        world.approve(daily.web_url)
        world.approve(gazette.web_url)

        # 2. Newspaper 1: a window of 60 words, opened by the newspaper's page.
        w1 = _open_window(page, daily, bridge)
        assert (w1["vendor_id"], w1["ecoin_id"]) == ("daily-hash", coin.ecoin_id)
        assert (w1["window_from"], w1["window_top"]) == (0, WINDOW_WORDS)
        assert world.words_spent() == WINDOW_WORDS
        _window_cookie(context, daily)
        assert [c for c in context.cookies(gazette.web_url) if c["name"] == "netpay_window"] == []

        # 3. Two articles through the front page's links, paid from the window.
        left = WINDOW_WORDS
        for article_id, price in (("2", 2), ("3", 3)):
            response = _click_article(page, daily, article_id)
            left -= price
            _check_paid(response, page, price, left)
            assert _returning(page) is None  # no window closed anywhere yet
        assert left == 55
        assert "fifty-five bytes" in page.inner_text("article h2")
        page.screenshot(path=str(screenshot_dir / "cookie-window-newspaper-1.png"), full_page=True)

        # A typed URL (Sec-Fetch-Site: none, the reader's own navigation) pays from it too.
        response = page.goto(daily.web_url + "/articles/4")
        assert response is not None
        assert response.request.header_value("sec-fetch-site") == "none"
        left -= 5
        _check_paid(response, page, 5, left)
        assert left == 50
        page.screenshot(path=str(screenshot_dir / "cookie-window-typed-url.png"), full_page=True)
        # The same article again within retry_ttl_s: re-served, nothing consumed.
        again = page.goto(daily.web_url + "/articles/4")
        _check_paid(again, page, 5, left)

        assert world.words_spent() == WINDOW_WORDS  # no click went through the bridge
        [window_1] = daily.services.windows(coin.ecoin_id)
        assert window_1.state is WindowState.OPEN
        assert (window_1.window_from, window_1.window_top) == (0, WINDOW_WORDS)
        assert window_1.consumed_index == 2 + 3 + 5

        # 4. Newspaper 2: its own window; the coin is handed over from newspaper 1.
        w2 = _open_window(page, gazette, bridge)
        assert (w2["vendor_id"], w2["ecoin_id"]) == ("chain-gazette", coin.ecoin_id)
        assert (w2["window_from"], w2["window_top"]) == (WINDOW_WORDS, 2 * WINDOW_WORDS)
        assert world.words_spent() == 2 * WINDOW_WORDS
        _window_cookie(context, gazette)
        _window_cookie(context, daily)  # still in the browser; step 5 shows it pays nothing

        # Newspaper 1's window closed with the hand-off: its 50 unconsumed words
        # go back to the reader as a WindowCredit.
        [closed] = daily.services.windows(coin.ecoin_id)
        assert closed.state is WindowState.CLOSED
        assert closed.close_reason is CloseReason.HANDOFF
        assert closed.words_left == WINDOW_WORDS - 10 == 50
        credit = open_envelope(
            pb.Envelope.FromString(closed.credit or b""),
            pb.WindowCredit,
            daily.services._ports.identity.key.public_key,
        )
        assert (credit.window_top, credit.consumed_index, credit.refund_units) == (60, 10, 50)
        assert credit.reason == "handoff"

        left = WINDOW_WORDS
        for article_id, price in (("4", 5), ("1", 1)):
            response = _click_article(page, gazette, article_id)
            left -= price
            _check_paid(response, page, price, left)
            # Newspaper 1's unconsumed 50 words are on their way back to the reader.
            assert _returning(page) == ("€0.50", "50", "EUR")
        assert left == 54 and page.inner_text("#credit-left") == "€0.54"
        assert "Gazette" in page.inner_text("article h2")
        page.screenshot(path=str(screenshot_dir / "cookie-window-newspaper-2.png"), full_page=True)
        [window_2] = gazette.services.windows(coin.ecoin_id)
        assert window_2.state is WindowState.OPEN
        assert window_2.consumed_index == WINDOW_WORDS + 6

        # 5. Back at newspaper 1: its cookie names a closed window, so nothing is paid
        # and the cookie is cleared.
        stale = page.goto(daily.web_url + "/articles/5")
        assert stale is not None and stale.status == 402
        assert page.locator("#credit-left").count() == 0
        assert [c for c in context.cookies(daily.web_url) if c["name"] == "netpay_window"] == []
        [still_closed] = daily.services.windows(coin.ecoin_id)
        assert still_closed.consumed_index == 10
        assert world.words_spent() == 2 * WINDOW_WORDS
        page.screenshot(
            path=str(screenshot_dir / "cookie-window-newspaper-1-after.png"), full_page=True
        )
    finally:
        context.close()
