"""Buying a server-side wallet at the portal: the form, idempotency, refusals, the coins page."""

from __future__ import annotations

import re

import pytest
import requests

from .conftest import DEPOSIT_MINOR, PASSWORD, Browser, Portal

WALLET_PASSWORD = "wallet pass phrase 42"
_REQUEST_ID_RE = re.compile(r'name="request_id" value="([^"]+)"')
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')
_ECOIN_RE = re.compile(r'<code class="ecoin-id">([0-9a-f]{32})</code>')


def _form(browser: Browser) -> dict[str, str]:
    """The hidden fields of a freshly rendered purchase form."""
    page = browser.get("/wallets/buy")
    assert page.status_code == 200, page.text
    rid = _REQUEST_ID_RE.search(page.text)
    csrf = _CSRF_RE.search(page.text)
    assert rid is not None and csrf is not None, page.text
    return {"request_id": rid.group(1), "csrf_token": csrf.group(1)}


def _buy(
    browser: Browser,
    hidden: dict[str, str],
    *,
    units: str = "250",
    unit_value: str = "2",
    password: str = WALLET_PASSWORD,
    again: str | None = None,
) -> requests.Response:
    data = {
        **hidden,
        "units": units,
        "unit_value": unit_value,
        "currency": "EUR",
        "password": password,
        "password_again": password if again is None else again,
    }
    return browser.http.post(browser.base + "/wallets/buy", data=data, timeout=30)


def _reader_id(portal: Portal, username: str = "alice") -> str:
    return portal.broker.services.login(username, PASSWORD).reader_id


def _balance(portal: Portal, username: str = "alice") -> int:
    return portal.broker.services.account_balances(_reader_id(portal, username))["EUR"]


def _coins(portal: Portal, username: str = "alice") -> list[str]:
    return [c.ecoin_id for c in portal.broker.services.portal_coins(_reader_id(portal, username))]


@pytest.fixture
def alice(browser: Browser) -> Browser:
    assert browser.register("alice").status_code == 200
    return browser


def test_buy_shows_the_id_lists_the_coin_and_debits_exactly(portal: Portal, alice: Browser) -> None:
    form_page = alice.get("/wallets/buy").text
    assert "demo bank account" in form_page
    assert 'href="/wallets/buy"' in alice.get("/coins").text  # the nav link

    page = _buy(alice, _form(alice), units="250", unit_value="2")
    assert page.status_code == 200, page.text
    match = _ECOIN_RE.search(page.text)
    assert match is not None, page.text
    ecoin_id = match.group(1)
    assert "5.00 EUR" in page.text and "250 words" in page.text
    assert "encrypted" in page.text and "never shown to newspapers" in page.text
    assert WALLET_PASSWORD not in page.text

    coins = alice.get("/coins").text
    section = re.search(rf"<h3><code>{ecoin_id}</code>.*?</section>", coins, re.S)
    assert section is not None, coins
    assert "<dd>server-side</dd>" in section.group(0)
    assert "250 of 250" in section.group(0)
    assert _balance(portal) == DEPOSIT_MINOR - 250 * 2
    assert _coins(portal) == [ecoin_id]
    with portal.broker.services.store.begin() as repos:
        wallet = repos.wallets.get(ecoin_id)
        assert wallet is not None and wallet.password_hash.startswith("$argon2id$")


def test_unit_value_defaults_to_one(portal: Portal, alice: Browser) -> None:
    page = _buy(alice, _form(alice), units="40", unit_value="")
    assert page.status_code == 200, page.text
    assert _balance(portal) == DEPOSIT_MINOR - 40


def test_a_double_submit_buys_one_coin_and_charges_once(portal: Portal, alice: Browser) -> None:
    hidden = _form(alice)
    first = _buy(alice, hidden, units="300", unit_value="1")
    second = _buy(alice, hidden, units="300", unit_value="1")
    assert first.status_code == second.status_code == 200, second.text
    first_id, second_id = _ECOIN_RE.search(first.text), _ECOIN_RE.search(second.text)
    assert first_id is not None and second_id is not None
    assert first_id.group(1) == second_id.group(1)
    assert _coins(portal) == [first_id.group(1)]
    assert _balance(portal) == DEPOSIT_MINOR - 300

    # A new form is a new purchase.
    third = _buy(alice, _form(alice), units="300", unit_value="1")
    assert third.status_code == 200
    assert len(_coins(portal)) == 2
    assert _balance(portal) == DEPOSIT_MINOR - 600


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"again": "another pass phrase"}, "differ"),
        ({"password": "short"}, "8..256"),
        ({"password": "x" * 257}, "at most 256"),
        ({"units": "0"}, "whole number"),
        ({"units": "ten"}, "whole number"),
        ({"units": "-5"}, "whole number"),
        ({"unit_value": "0"}, "whole number"),
        ({"units": str(2**21)}, "n must be"),
        ({"unit_value": "10001"}, "unit value must be"),
    ],
    ids=["mismatch", "short", "long", "zero", "word", "negative", "zero-unit", "huge", "dear"],
)
def test_bad_input_is_a_400_page_and_buys_nothing(
    portal: Portal, alice: Browser, fields: dict[str, str], message: str
) -> None:
    page = _buy(alice, _form(alice), **fields)
    assert page.status_code == 400, page.text
    assert message in page.text
    assert 'name="request_id"' in page.text  # the form again, to correct
    assert _coins(portal) == []
    assert _balance(portal) == DEPOSIT_MINOR


def test_insufficient_funds_is_a_friendly_page_and_charges_nothing(
    portal: Portal, alice: Browser
) -> None:
    page = _buy(alice, _form(alice), units="20000", unit_value="1")
    assert page.status_code == 402, page.text
    assert "does not cover this wallet (200.00 EUR)" in page.text
    assert "100.00 EUR" in page.text and "nothing was charged" in page.text
    assert _coins(portal) == []
    assert _balance(portal) == DEPOSIT_MINOR


def test_an_unknown_request_id_is_refused(portal: Portal, alice: Browser) -> None:
    hidden = _form(alice)
    page = _buy(alice, {**hidden, "request_id": "made-up-by-the-client"})
    assert page.status_code == 400
    assert "form expired" in page.text
    assert _coins(portal) == []


def test_the_same_form_with_another_password_buys_nothing_more(
    portal: Portal, alice: Browser
) -> None:
    hidden = _form(alice)
    assert _buy(alice, hidden).status_code == 200
    page = _buy(alice, hidden, password="a different pass phrase")
    assert page.status_code == 409
    assert _ECOIN_RE.search(page.text) is None
    assert len(_coins(portal)) == 1
    assert _balance(portal) == DEPOSIT_MINOR - 500


def test_without_the_csrf_token_nothing_is_bought(portal: Portal, alice: Browser) -> None:
    hidden = _form(alice)
    for token in ("", "wrong"):
        page = _buy(alice, {**hidden, "csrf_token": token})
        assert page.status_code == 400
        assert "did not come from this site" in page.text
    page = _buy(alice, {"request_id": hidden["request_id"]})
    assert page.status_code == 400
    assert _coins(portal) == []
    assert _balance(portal) == DEPOSIT_MINOR


def test_not_signed_in_redirects_to_login(portal: Portal, browser: Browser) -> None:
    page = browser.http.get(portal.url + "/wallets/buy", timeout=30, allow_redirects=False)
    assert page.status_code == 302
    assert page.headers["Location"].endswith("/login")
    csrf = browser.csrf("/login")
    page = browser.http.post(
        portal.url + "/wallets/buy",
        data={"csrf_token": csrf, "units": "10", "password": WALLET_PASSWORD},
        timeout=30,
        allow_redirects=False,
    )
    assert page.status_code == 302
    assert page.headers["Location"].endswith("/login")
    assert 'href="/wallets/buy"' not in browser.get("/login").text


def test_the_default_instrument_is_shown(portal: Portal, alice: Browser) -> None:
    assert "none yet" in alice.get("/wallets/buy").text
    alice.post(
        "/instruments/bank",
        {"holder_name": "Alice Liddell", "iban": "DE89370400440532013000"},
        form_page="/instruments",
    )
    page = alice.get("/wallets/buy").text
    assert "3000" in page and "Alice Liddell" in page
    assert "DE89370400440532013000" not in page
