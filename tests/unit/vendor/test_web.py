"""The newspaper site through Flask's test client (fake broker, real SQLite)."""

from __future__ import annotations

import pytest

from netpay.chain import seen_of
from netpay.encoding import b64url_decode, b64url_encode
from netpay.envelope import open_envelope
from netpay.header import parse_challenge
from netpay.v1 import statements_pb2 as pb
from vendor.articles import load_newspaper
from vendor.web import WebDeps, create_app

JSON = {"Accept": "application/json"}


@pytest.fixture
def paper():
    return load_newspaper("The Daily Hash")


@pytest.fixture
def client(vendor, paper, clock):
    app = create_app(WebDeps(services=vendor, newspaper=paper, clock=clock))
    return app.test_client()


def paid_article(paper, amount: int):
    return next(a for a in paper.articles if a.amount_minor == amount)


def test_index_lists_articles_with_prices(client, paper) -> None:
    resp = client.get("/")
    assert resp.status_code == 200
    text = resp.get_data(as_text=True)
    assert "The Daily Hash" in text
    assert "0.25 EUR" in text and "free" in text
    for article in paper.articles:
        assert f"/articles/{article.article_id}" in text


def test_api_articles(client, paper) -> None:
    resp = client.get("/api/articles")
    assert resp.status_code == 200
    items = resp.get_json()
    assert len(items) == len(paper.articles)
    assert set(items[0]) == {"id", "title", "amount", "currency", "url"}
    one = next(i for i in items if i["id"] == "1")
    assert one["url"] == "http://localhost/articles/1"
    assert one["title"].startswith("Daily Hash: ")
    assert (one["amount"], one["currency"]) == (1, "EUR")


def test_free_article_needs_no_payment(client) -> None:
    resp = client.get("/articles/free")
    assert resp.status_code == 200
    assert "WWW-Authenticate" not in resp.headers
    assert "This page is free" in resp.get_data(as_text=True)


def test_unknown_article_is_404(client) -> None:
    assert client.get("/articles/nope", headers=JSON).get_json()["error"] == "not_found"
    assert client.get("/articles/nope").status_code == 404


def test_unpaid_article_gets_the_challenge(client, vendor, paper) -> None:
    article = paid_article(paper, 5)
    resp = client.get(f"/articles/{article.article_id}", headers=JSON)
    assert resp.status_code == 402
    challenge = parse_challenge(resp.headers["WWW-Authenticate"])
    assert (challenge.realm, challenge.amount_minor, challenge.currency, challenge.broker) == (
        vendor.vendor_id,
        5,
        "EUR",
        "broker",
    )
    body = resp.get_json()
    assert body["error"] == "payment_required"
    assert (body["amount"], body["currency"]) == (5, "EUR")
    html = client.get(f"/articles/{article.article_id}", headers={"Accept": "text/html"})
    assert html.status_code == 402 and html.mimetype == "text/html"
    assert "WWW-Authenticate" in html.headers
    assert client.get(f"/articles/{article.article_id}").mimetype == "text/html"


def test_paid_article(client, vendor, broker, paper, make_header) -> None:
    chain = broker.issue(100)
    article = paid_article(paper, 7)
    resp = client.get(
        f"/articles/{article.article_id}",
        headers={"Authorization": make_header(chain, 0, 7), **JSON},
    )
    assert resp.status_code == 200
    assert resp.mimetype == "text/html"
    assert article.title in resp.get_data(as_text=True)
    assert resp.headers["NetPay-Balance"] == "93"
    env = pb.Envelope()
    env.ParseFromString(b64url_decode(resp.headers["NetPay-Receipt"]))
    receipt = open_envelope(env, pb.Receipt, vendor._ports.identity.key.public_key)
    assert (receipt.to_index, receipt.item_id, receipt.amount_minor) == (7, article.article_id, 7)
    assert resp.headers["Cache-Control"] == "private, no-store"


def test_payment_error_json_shape(client, broker, paper, make_header) -> None:
    chain = broker.issue(100)
    five = paid_article(paper, 5)
    client.get(f"/articles/{five.article_id}", headers={"Authorization": make_header(chain, 0, 5)})
    resp = client.get(
        f"/articles/{five.article_id}",
        headers={"Authorization": make_header(chain, 2, 7), **JSON},
    )
    assert resp.status_code == 409
    body = resp.get_json()
    assert body["error"] == "already_spent"
    # 1.1: {"error", "detail", "index", "seen"}: the word itself is never in a body.
    assert list(body) == ["error", "detail", "index", "seen"]
    assert body["index"] == 5 and body["seen"] == b64url_encode(seen_of(chain.word(5)))
    assert parse_challenge(resp.headers["WWW-Authenticate"]).amount_minor == 5

    wrong = client.get(
        f"/articles/{five.article_id}",
        headers={"Authorization": make_header(chain, 5, 9), **JSON},
    )
    assert wrong.status_code == 402 and wrong.get_json()["error"] == "wrong_amount"

    bad = client.get(
        f"/articles/{five.article_id}", headers={"Authorization": "NetPay nonsense", **JSON}
    )
    assert bad.status_code == 400 and bad.get_json()["error"] == "malformed"

    html = client.get(
        f"/articles/{five.article_id}", headers={"Authorization": make_header(chain, 2, 7)}
    )
    assert html.status_code == 409 and "already_spent" in html.get_data(as_text=True)


def test_coin_busy_sets_retry_after(client, vendor, broker, make_vendor, paper, make_header):
    make_vendor("chain-gazette")
    chain = broker.issue(100)
    five = paid_article(paper, 5)
    client.get(f"/articles/{five.article_id}", headers={"Authorization": make_header(chain, 0, 5)})
    ecoin = chain.ecoin_id.hex()
    vendor.hand_off(
        broker.hand_off_grant(ecoin, "chain-gazette"), "chain-gazette", vendor._ports.clock.now_ms()
    )
    resp = client.get(
        f"/articles/{five.article_id}",
        headers={"Authorization": make_header(chain, 5, 10), **JSON},
    )
    assert resp.status_code == 409
    assert resp.get_json()["error"] == "coin_busy"
    assert int(resp.headers["Retry-After"]) >= 1


def test_broker_unavailable_is_503(client, broker, paper, make_header) -> None:
    chain = broker.issue(100)
    broker.down = True
    resp = client.get(
        f"/articles/{paid_article(paper, 5).article_id}",
        headers={"Authorization": make_header(chain, 0, 5), **JSON},
    )
    assert resp.status_code == 503 and resp.get_json()["error"] == "broker_unavailable"


def test_head_never_pays(client, broker, paper, make_header) -> None:
    chain = broker.issue(100)
    resp = client.head(
        f"/articles/{paid_article(paper, 5).article_id}",
        headers={"Authorization": make_header(chain, 0, 5)},
    )
    assert resp.status_code == 402
    assert broker.calls["AcquireCoin"] == 0


def test_healthz(client, vendor) -> None:
    assert client.get("/healthz").get_json() == {"status": "ok", "vendor_id": vendor.vendor_id}
