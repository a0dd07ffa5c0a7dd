"""Server-side wallet, end to end in headless Chromium: no wallet application at all.

Everything is real except the browser's user: a broker with its web portal on
127.0.0.1, two newspapers in process (workers=0) on their OWN loopback hosts
(127.0.0.2 and 127.0.0.3: cookies are not separated by port, so each
newspaper needs its own host for its ``netpay_wallet`` cookie), and Debian's
headless Chromium. In ONE browser context the reader

1. registers at the broker's portal and buys a server-side wallet of 200
   words of one cent on ``/wallets/buy``, reading the e-coin id from the
   success page;
2. opens a paid article at newspaper 1 (the 402 page), follows its sign-in
   link to the broker's sign-in page, types the e-coin id and the wallet
   password, and lands back on the article (the newspaper's return page
   moves on with a meta refresh), paid from a drawn window of 50 words;
3. reads a second article there, the credit left right after each one;
4. opens a paid article at newspaper 2: the broker's sign-in is ONE click
   ("Continue as e-coin …"), the coin moves from newspaper 1 by hand-off,
   and the article shows the credit left.

Also checked: the ``netpay_wallet`` cookie is HttpOnly and SameSite=Lax at
both newspapers, and the wallet password appears in no newspaper page and in
no request the browser sent to a newspaper.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from netpay.money import Money
from vendor.domain import CloseReason, WindowState
from vendor.server import VendorConfig, VendorHandle, start_vendor
from vendor.web import format_money

pytestmark = pytest.mark.browser

USERNAME = "sam.reader"
ACCOUNT_PASSWORD = "an account passphrase for the portal"
WALLET_PASSWORD = "server wallet pass phrase 77"
COIN_WORDS = 200  # one cent each: a wallet of EUR 2.00
WINDOW_WORDS = 50  # a draw is max(price, 50) words (docs/protocol.md)
TIMEOUT_MS = 15_000


@dataclass
class World:
    broker: BrokerHandle
    papers: list[VendorHandle]  # [The Daily Hash on 127.0.0.2, The Chain Gazette on 127.0.0.3]

    @property
    def portal(self) -> str:
        assert self.broker.web_url is not None
        return self.broker.web_url


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    broker_dir = tmp_path / "broker"
    broker = start_broker(BrokerConfig(data_dir=broker_dir, web_addr="127.0.0.1:0"))
    started: list[Any] = [broker]
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
        yield World(broker, papers)
    finally:
        for thing in reversed(started):
            thing.stop()


def _money(minor: int) -> str:
    return format_money(Money(minor, "EUR"))


def _credit_left(page: Any, price: str) -> str:
    """The article page after payment: the credit text, checked against its minor units."""
    credit = page.locator("#credit-left")
    credit.wait_for()
    assert f"You paid {price} for this article." in page.inner_text("#payment")
    text: str = credit.inner_text()
    assert _money(int(credit.get_attribute("data-amount-minor") or "-1")) == text
    assert credit.get_attribute("data-currency") == "EUR"
    return text


def _open_unpaid(page: Any, paper: VendorHandle, article_id: str) -> str:
    """Open a paid article without a session: the 402 page; returns its price text."""
    response = page.goto(f"{paper.web_url}/articles/{article_id}")
    assert response is not None and response.status == 402
    assert page.locator("#credit-left").count() == 0
    return str(page.locator(".price").first.inner_text())


def _wallet_cookie(context: Any, paper: VendorHandle) -> dict[str, Any]:
    [cookie] = [c for c in context.cookies(paper.web_url) if c["name"] == "netpay_wallet"]
    assert cookie["httpOnly"] is True, cookie
    assert cookie["sameSite"] == "Lax", cookie
    assert cookie["path"] == "/", cookie
    return dict(cookie)


def test_a_reader_pays_two_newspapers_with_a_server_side_wallet(
    browser: Any, world: World, screenshot_dir: Path
) -> None:
    daily, gazette = world.papers
    assert daily.web_url.startswith("http://127.0.0.2:")
    assert gazette.web_url.startswith("http://127.0.0.3:")
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    sent_to_papers: list[tuple[str, str, str]] = []  # url, body, headers
    paper_pages: list[str] = []  # the HTML of every newspaper page the reader saw

    def record(request: Any) -> None:
        if request.url.startswith((daily.web_url, gazette.web_url)):
            sent_to_papers.append((request.url, request.post_data or "", str(request.headers)))

    context.on("request", record)

    def seen(page: Any) -> None:
        assert page.url.startswith((daily.web_url, gazette.web_url)), page.url
        paper_pages.append(page.content())

    try:
        page = context.new_page()

        # 1. Register at the portal, buy a server-side wallet, read its e-coin id.
        page.goto(world.portal + "/register")
        page.fill('input[name="username"]', USERNAME)
        page.fill('input[name="password"]', ACCOUNT_PASSWORD)
        page.fill('input[name="password_again"]', ACCOUNT_PASSWORD)
        page.click('button[type="submit"]')
        page.wait_for_url(world.portal + "/coins")

        page.goto(world.portal + "/wallets/buy")
        page.fill('input[name="units"]', str(COIN_WORDS))
        page.fill('input[name="unit_value"]', "1")
        page.select_option('select[name="currency"]', "EUR")
        page.fill('input[name="password"]', WALLET_PASSWORD)
        page.fill('input[name="password_again"]', WALLET_PASSWORD)
        page.click("text=Buy the wallet")
        ecoin_id = page.locator("code.ecoin-id").inner_text()
        assert len(ecoin_id) == 32 and int(ecoin_id, 16) >= 0, ecoin_id
        assert "2.00 EUR" in page.inner_text("dd.value")

        # 2. Newspaper 1: a paid article is a 402 page offering the wallet sign-in.
        price_2 = _open_unpaid(page, daily, "2")
        assert price_2 == _money(2)
        seen(page)
        page.click("#wallet-signin a")
        page.wait_for_url(world.portal + "/wallet/signin?**")
        assert "Sign in to The Daily Hash with your e-wallet" in page.inner_text("h1")
        page.fill('input[name="ecoin_id"]', ecoin_id)
        page.fill('input[name="password"]', WALLET_PASSWORD)
        page.click("text=Sign in and return to The Daily Hash")
        # The return page moves on to the article by itself (meta refresh, same-origin).
        page.wait_for_url(daily.web_url + "/articles/2")
        assert _credit_left(page, price_2) == _money(COIN_WORDS - 2) == "€1.98"
        assert page.inner_text("#words-left") == str(COIN_WORDS - 2)
        seen(page)
        _wallet_cookie(context, daily)

        # 3. A second article at the same newspaper, from the same drawn window.
        page.click("text=Back to the front page")
        page.wait_for_selector("ul.articles")
        seen(page)
        page.click('a[href="/articles/3"]')
        page.wait_for_url(daily.web_url + "/articles/3")
        assert "fifty-five bytes" in page.inner_text("article h2")
        assert _credit_left(page, _money(3)) == _money(COIN_WORDS - 5) == "€1.95"
        seen(page)
        [window_1] = daily.services.windows(ecoin_id)
        assert (window_1.window_from, window_1.window_top) == (0, WINDOW_WORDS)
        assert window_1.consumed_index == 5
        page.screenshot(path=str(screenshot_dir / "server-wallet-newspaper-1.png"), full_page=True)

        # 4. Newspaper 2: unknown browser, 402; at the broker the sign-in is one click.
        price_4 = _open_unpaid(page, gazette, "4")
        assert price_4 == _money(5)
        seen(page)
        page.click("#wallet-signin a")
        page.wait_for_url(world.portal + "/wallet/signin?**")
        assert "Sign in to The Chain Gazette with your e-wallet" in page.inner_text("h1")
        assert page.locator('input[name="password"]').count() == 0
        page.click(f"text=Continue as e-coin {ecoin_id}")
        page.wait_for_url(gazette.web_url + "/articles/4")
        credit_2 = _credit_left(page, price_4)
        seen(page)
        _wallet_cookie(context, gazette)

        # The hand-off closed newspaper 1's window: its 45 unconsumed words went back to
        # the reader as a WindowCredit at the broker, NOT into the coin. What newspaper 1
        # shows as the coin's words left after the hand-off is n - window_top = 150; the
        # gazette drew the next window (50, 100] and paid 5 words from it, so the article
        # shows 150 - 5 = 145 words (€1.45), not 200 - 2 - 3 - 5 = 190.
        [closed] = daily.services.windows(ecoin_id)
        assert closed.state is WindowState.CLOSED and closed.close_reason is CloseReason.HANDOFF
        assert closed.words_left == WINDOW_WORDS - 5 == 45
        held_1 = daily.services.coin(ecoin_id)
        assert held_1 is not None
        words_left_after_handoff = held_1.view.words_left
        assert words_left_after_handoff == COIN_WORDS - WINDOW_WORDS == 150
        assert credit_2 == _money(words_left_after_handoff - 5) == "€1.45"
        assert page.inner_text("#words-left") == str(words_left_after_handoff - 5)
        [window_2] = gazette.services.windows(ecoin_id)
        assert (window_2.window_from, window_2.window_top) == (WINDOW_WORDS, 2 * WINDOW_WORDS)
        assert window_2.consumed_index == WINDOW_WORDS + 5
        page.screenshot(path=str(screenshot_dir / "server-wallet-newspaper-2.png"), full_page=True)

        # The cookies are still HttpOnly and SameSite=Lax, one per newspaper host.
        assert _wallet_cookie(context, daily)["domain"] == "127.0.0.2"
        assert _wallet_cookie(context, gazette)["domain"] == "127.0.0.3"

        # The wallet password never reached a newspaper: not in a page, not in a request.
        assert len(paper_pages) == 6
        # Each sign-in came back through the newspaper's return page (then its meta refresh).
        for paper in (daily, gazette):
            assert any(
                u.startswith(paper.web_url + "/netpay/wallet/return?") for u, _, _ in sent_to_papers
            )
        assert sent_to_papers
        for html in paper_pages:
            assert WALLET_PASSWORD not in html
        for url, body, headers in sent_to_papers:
            for part in (url, body, headers):
                assert WALLET_PASSWORD not in part
                assert WALLET_PASSWORD.replace(" ", "+") not in part
                assert WALLET_PASSWORD.replace(" ", "%20") not in part
    finally:
        context.close()
