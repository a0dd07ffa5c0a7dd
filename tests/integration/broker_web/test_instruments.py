"""Demo payment instruments: add cards and bank accounts, one default, remove."""

from __future__ import annotations

from collections.abc import Callable

from broker.domain.personal import InstrumentKind
from broker.server import DB_FILE

from .conftest import PASSWORD, Browser, Portal

CARD = "4242 4242 4242 4242"
IBAN = "DE89 3704 0044 0532 0130 00"


def _add_card(browser: Browser, number: str = CARD, **extra: str) -> int:
    page = browser.post(
        "/instruments/card",
        {
            "holder_name": "Alice Liddell",
            "card_number": number,
            "exp_month": "7",
            "exp_year": "2031",
            **extra,
        },
        form_page="/instruments",
    )
    return page.status_code


def test_add_make_default_and_remove(
    portal: Portal, browser: Browser, new_browser: Callable[[], Browser]
) -> None:
    services = portal.broker.services
    browser.register("alice")
    reader_id = services.login("alice", PASSWORD).reader_id

    assert _add_card(browser) == 200
    (card,) = services.list_instruments(reader_id)
    assert (card.kind, card.brand, card.last4, card.exp_month, card.exp_year) == (
        InstrumentKind.CARD,
        "Visa",
        "4242",
        7,
        2031,
    )
    assert card.is_default  # the first one is the default

    page = browser.post(
        "/instruments/bank",
        {"holder_name": "Alice Liddell", "iban": IBAN},
        form_page="/instruments",
    )
    assert page.status_code == 200 and "Bank account ending 3000 added." in page.text
    assert "DE\u2022\u2022" in page.text and "3000" in page.text
    _, bank = services.list_instruments(reader_id)
    assert (bank.kind, bank.country, bank.last4, bank.is_default) == (
        InstrumentKind.BANK_ACCOUNT,
        "DE",
        "3000",
        False,
    )

    page = browser.post(f"/instruments/{bank.instrument_id}/default", form_page="/instruments")
    assert page.status_code == 200
    assert [i.is_default for i in services.list_instruments(reader_id)] == [False, True]

    assert _add_card(browser, "5555 5555 5555 4444", make_default="yes") == 200
    defaults = [i for i in services.list_instruments(reader_id) if i.is_default]
    assert [(d.brand, d.last4) for d in defaults] == [("Mastercard", "4444")]

    # Another reader can neither see nor touch these.
    mallory = new_browser()
    mallory.register("mallory")
    page = mallory.post(f"/instruments/{bank.instrument_id}/remove", form_page="/instruments")
    assert page.status_code == 404
    assert "4242" not in mallory.get("/instruments").text

    master = defaults[0]
    page = browser.post(f"/instruments/{master.instrument_id}/remove", form_page="/instruments")
    assert page.status_code == 200 and "removed" in page.text
    left = services.list_instruments(reader_id)
    assert {i.last4 for i in left} == {"4242", "3000"}
    assert sum(i.is_default for i in left) == 1  # a default was chosen again

    # Only last 4 digits are kept: the full numbers are nowhere in the database.
    raw = b"".join(p.read_bytes() for p in portal.data_dir.glob(DB_FILE + "*"))
    for secret in (b"4242424242424242", b"5555555555554444", b"DE89370400440532013000"):
        assert secret not in raw


def test_bad_instruments_are_refused_with_a_reason(portal: Portal, browser: Browser) -> None:
    services = portal.broker.services
    browser.register("bob")
    reader_id = services.login("bob", PASSWORD).reader_id
    assert _add_card(browser, "4242 4242 4242 4241") == 400  # Luhn
    assert _add_card(browser, "not a number") == 400
    assert _add_card(browser, exp_year="2026") == 400  # expired (the clock is in 2027)
    assert _add_card(browser, exp_month="13") == 400
    page = browser.post(
        "/instruments/bank",
        {"holder_name": "Bob", "iban": "DE00 3704 0044 0532 0130 00"},
        form_page="/instruments",
    )
    assert page.status_code == 400 and "check digits" in page.text
    page = browser.post(
        "/instruments/bank", {"holder_name": "", "iban": IBAN}, form_page="/instruments"
    )
    assert page.status_code == 400 and "holder name" in page.text
    assert services.list_instruments(reader_id) == []

    for _ in range(10):
        assert _add_card(browser) == 200
    page = browser.post(
        "/instruments/bank", {"holder_name": "Bob", "iban": IBAN}, form_page="/instruments"
    )
    assert page.status_code == 400 and "at most 10" in page.text
    assert len(services.list_instruments(reader_id)) == 10
