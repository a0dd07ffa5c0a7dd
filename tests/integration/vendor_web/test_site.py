"""The newspaper as a reader sees it, over real HTTP: prices, the credit left
after a paid article, and a readable page for every payment error (JSON
unchanged for API clients)."""

from __future__ import annotations

import re

from netpay.chain import seen_of
from netpay.encoding import b64url_encode
from netpay.header import Credentials, format_authorization, parse_challenge

from .conftest import HTML, JSON, Site


def test_front_page_shows_prices_as_money_and_marks_the_free_article(site: Site) -> None:
    resp = site.get("/")
    assert resp.status_code == 200
    text = resp.text
    assert "The Daily Hash" in text
    # vendor/data/articles.json: article 1 costs 1 cent, 7 ten cents, 12 a quarter.
    for article, price in (("1", "€0.01"), ("7", "€0.10"), ("12", "€0.25"), ("dollar", "$0.05")):
        item = re.search(
            rf'href="/articles/{article}">[^<]*</a>\s*<span class="price"[^>]*>([^<]*)</span>', text
        )
        assert item is not None, article
        assert item.group(1) == price
    free = re.search(
        r'href="/articles/free">[^<]*</a>\s*<span class="price free">free</span>', text
    )
    assert free is not None
    assert resp.headers["Content-Type"].startswith("text/html")
    assert site.get("/static/site.css").status_code == 200


def test_a_paid_article_shows_the_credit_left_on_the_coin(site: Site) -> None:
    coin = site.reader.buy(100, unit_value_minor=5)  # 100 words of 5 cents: €5.00
    resp = site.get("/articles/7", coin.header(2))  # 10 cents = 2 words
    assert resp.status_code == 200
    assert resp.headers["NetPay-Balance"] == "98"
    credit = re.search(r'id="credit-left">([^<]*)<', resp.text)
    assert credit is not None and credit.group(1) == "€4.90"  # 98 words x 5 cents
    assert "You paid <strong>€0.10</strong>" in resp.text

    resp = site.get("/articles/12", coin.header(5))  # 25 cents = 5 words
    assert resp.headers["NetPay-Balance"] == "93"
    credit = re.search(r'id="credit-left">([^<]*)<', resp.text)
    assert credit is not None and credit.group(1) == "€4.65"

    # A retry of the same purchase is the same page: the same credit, nothing more paid.
    prev = format_authorization(Credentials(coin.ecoin_id, 2, 7, coin.chain.word(7)))
    again = site.get("/articles/12", prev)
    assert again.status_code == 200 and again.text == resp.text
    assert again.headers["NetPay-Balance"] == "93"


def test_the_free_article_says_it_is_free(site: Site) -> None:
    resp = site.get("/articles/free")
    assert resp.status_code == 200 and "free to read" in resp.text
    assert "WWW-Authenticate" not in resp.headers


def _html_error(resp, status: int, code: str, title: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("text/html")
    assert f"<h2>{title}</h2>" in resp.text
    assert "What you can do:" in resp.text
    assert f"<code>{code}</code>" in resp.text


def test_payment_required_page_for_browsers_and_json_for_clients(site: Site) -> None:
    page = site.get("/articles/7")
    assert page.status_code == 402
    assert page.headers["Content-Type"].startswith("text/html")
    assert "<h2>This article is paid</h2>" in page.text
    assert "This article costs €0.10" in page.text
    assert f"netpay wallet read {site.url}/articles/7" in page.text
    challenge = parse_challenge(page.headers["WWW-Authenticate"])
    assert (challenge.amount_minor, challenge.currency) == (10, "EUR")

    api = site.get("/articles/7", accept=JSON)
    assert api.status_code == 402
    assert api.json() == {
        "error": "payment_required",
        "detail": "This article costs 0.10 EUR. Pay with NetPay.",
        "amount": 10,
        "currency": "EUR",
    }
    assert api.headers["WWW-Authenticate"] == page.headers["WWW-Authenticate"]


def test_every_reachable_payment_error_has_a_page_and_keeps_its_json(site: Site) -> None:
    coin = site.reader.buy(30)
    assert site.get("/articles/1", coin.header(1)).status_code == 200  # the vendor holds it now

    def both(path: str, header: str) -> tuple:
        return site.get(path, header, HTML), site.get(path, header, JSON)

    # malformed (400)
    html, api = both("/articles/7", "NetPay nonsense")
    _html_error(html, 400, "malformed", "Your wallet sent a payment we could not read")
    assert api.status_code == 400 and set(api.json()) == {"error", "detail"}
    assert api.json()["error"] == "malformed"
    assert "WWW-Authenticate" in html.headers and "WWW-Authenticate" in api.headers

    # wrong_amount (402): 3 words for a 10-cent article; carries the coin's index and,
    # 1.1, its seen = SHA-256("NP1-seen" || w[1]), never the word.
    bad_amount = format_authorization(Credentials(coin.ecoin_id, 1, 4, coin.chain.word(4)))
    html, api = both("/articles/7", bad_amount)
    _html_error(html, 402, "wrong_amount", "The payment was for the wrong amount")
    assert "(€0.10)" in html.text
    assert api.json() == {
        "error": "wrong_amount",
        "detail": "the price is 10 words, the payment covers 3",
        "index": 1,
        "seen": b64url_encode(seen_of(coin.chain.word(1))),
    }
    # ... but only for a genuine word: a made-up one learns nothing, not even the index.
    made_up = format_authorization(Credentials(coin.ecoin_id, 1, 4, b"\x07" * 32))
    html, api = both("/articles/7", made_up)
    _html_error(html, 402, "bad_payword", "The payment did not check out")
    assert "stands at index" not in html.text
    assert api.json() == {"error": "bad_payword", "detail": "payword does not verify"}

    # bad_payword (402): the right amount, a word that is not the coin's.
    forged = format_authorization(Credentials(coin.ecoin_id, 1, 11, b"\x07" * 32))
    html, api = both("/articles/7", forged)
    _html_error(html, 402, "bad_payword", "The payment did not check out")
    assert api.json() == {"error": "bad_payword", "detail": "payword does not verify"}

    # wrong_currency (402): a EUR coin for an article in dollars.
    dollars = format_authorization(Credentials(coin.ecoin_id, 1, 6, coin.chain.word(6)))
    html, api = both("/articles/dollar", dollars)
    _html_error(html, 402, "wrong_currency", "Your coin is in another currency")
    assert "priced in USD" in html.text and "$0.05" in html.text
    assert api.json()["error"] == "wrong_currency" and set(api.json()) == {"error", "detail"}

    # insufficient (402): spend down to index 16 of 30, then a quarter (25 words) does
    # not fit; the rule is checked before any hashing, so the word is never looked at.
    assert site.get("/articles/4", coin.header(5)).status_code == 200  # 1 -> 6
    assert site.get("/articles/7", coin.header(10)).status_code == 200  # 6 -> 16
    too_far = format_authorization(Credentials(coin.ecoin_id, 16, 41, b"\x01" * 32))
    html, api = both("/articles/12", too_far)
    _html_error(html, 402, "insufficient", "Not enough credit left on your coin")
    assert "This article costs €0.25" in html.text
    assert api.json() == {
        "error": "insufficient",
        "detail": "the coin has 14 words left, the price is 25",
    }

    # already_spent (409): a spent header offered for another article.
    spent = format_authorization(Credentials(coin.ecoin_id, 6, 16, coin.chain.word(16)))
    html, api = both("/articles/2", spent)
    _html_error(html, 409, "already_spent", "These words of your coin were already spent")
    assert "your coin stands at index 16 here" in html.text
    body = api.json()
    assert list(body) == ["error", "detail", "index", "seen"]
    assert (body["error"], body["index"]) == ("already_spent", 16)
    assert body["seen"] == b64url_encode(seen_of(coin.chain.word(16)))
    # A spent range with a made-up word: bad_payword, no index.
    spent_made_up = format_authorization(Credentials(coin.ecoin_id, 6, 16, b"\x07" * 32))
    html, api = both("/articles/7", spent_made_up)
    _html_error(html, 402, "bad_payword", "The payment did not check out")
    assert "stands at index" not in html.text
    assert api.json() == {"error": "bad_payword", "detail": "payword does not verify"}

    # not found (404) has a page too.
    missing = site.get("/articles/nope")
    assert missing.status_code == 404 and "<h2>Page not found</h2>" in missing.text


def test_broker_unavailable_page(site: Site) -> None:
    coin = site.reader.buy(30)
    site.broker.stop()  # a coin the vendor has never seen needs the broker
    html = site.get("/articles/7", coin.header(10), HTML)
    _html_error(html, 503, "broker_unavailable", "We cannot reach the payment broker right now")
    assert "try again in a minute" in html.text
    api = site.get("/articles/7", coin.header(10), JSON)
    assert api.status_code == 503 and api.json()["error"] == "broker_unavailable"
    assert set(api.json()) == {"error", "detail"}
