"""Two currencies at one broker: a newspaper priced in USD is paid with USD
coins only (a EUR coin is refused with wrong_currency), redeems, refunds in
USD, and the books balance per currency to the cent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from broker.server import BrokerConfig, start_broker

from .conftest import JSON, books, buy, money, pay, pay_header

USD_ARTICLES = {
    "name": "The Dollar Digest",
    "articles": [
        {"id": "free", "title": "About us", "amount": 0, "currency": "USD", "body": ["Free."]},
        {"id": "a", "title": "Markets", "amount": 3, "currency": "USD", "body": ["Up."]},
        {"id": "b", "title": "Weather", "amount": 7, "currency": "USD", "body": ["Sunny."]},
    ],
}


@pytest.fixture
def broker(broker_dir: Path, clock):
    handle = start_broker(
        BrokerConfig(data_dir=broker_dir, grpc_addr="127.0.0.1:0", currencies=("EUR", "USD")),
        clock=clock,
    )
    yield handle
    handle.stop()


def test_usd_articles_take_usd_coins_and_the_books_balance_per_currency(
    start, broker, reader, clock, tmp_path: Path
) -> None:
    articles = tmp_path / "usd-articles.json"
    articles.write_text(json.dumps(USD_ARTICLES), encoding="utf-8")
    usd_paper = start("dollar-digest", articles_file=articles)
    eur_paper = start("daily-hash")
    usd = buy(reader, 100, "USD")
    eur = buy(reader, 100, "EUR")

    unpaid = requests.get(f"{usd_paper.web_url}/articles/a", headers=JSON, timeout=30)
    assert unpaid.status_code == 402
    assert 'currency="USD"' in unpaid.headers["WWW-Authenticate"]
    refused = requests.get(
        f"{usd_paper.web_url}/articles/a",
        headers={**JSON, "Authorization": pay_header(eur, 0, 3)},
        timeout=30,
    )
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"] == "wrong_currency"
    # Refused before custody moved: the EUR coin is still nobody's.
    assert reader.coin(eur).holder == ""

    three = pay(usd_paper, usd, 0, "a", 3)  # (0, 3]
    ten = pay(usd_paper, usd, three, "b", 7)  # (3, 10]
    pay(eur_paper, eur, 0, "7")  # a EUR coin still pays EUR articles: (0, 10]
    usd_paper.redeemer.refund(
        ecoin_id=usd.ecoin_id.hex(), receipt_to_index=ten, amount_minor=2, reason="rain"
    )

    report = usd_paper.redeemer.redeem()
    assert report.paid_minor == {"USD": 10 - 2} and report.refunded_minor == {"USD": 2}
    assert report.as_json()["refunds"] == {"accepted": 1, "rejected": 0}
    assert eur_paper.redeemer.redeem().paid_minor == {"EUR": 10}
    assert money(broker, "dollar-digest", "USD") == {"bank": 8, "payable": 0, "reader_refund": 2}
    assert money(broker, "dollar-digest", "EUR") == {"bank": 0, "payable": 0, "reader_refund": 0}
    assert money(broker, "daily-hash", "EUR")["bank"] == 10

    rows = usd_paper.redeemer.history(limit=10)
    assert {r["currency"] for r in rows if r["kind"] != "batch"} == {"USD"}

    books_today = books(broker, clock)
    assert books_today.conservation_cents == {"EUR": 0, "USD": 0}
    assert books_today.balanced and books_today.disputes == []
    assert books_today.reader_debits_cents == {"EUR": 100, "USD": 100}
    assert books_today.redeemed_cents == {"EUR": 10, "USD": 8}
    assert books_today.refunded_cents == {"EUR": 0, "USD": 2}
    assert books_today.outstanding_cents == {"EUR": 90, "USD": 90}
