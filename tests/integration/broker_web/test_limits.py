"""Spending limits on the portal's profile page."""

from __future__ import annotations

from netpay.spending import SpendingLimits

from .conftest import Browser, Portal


def test_a_reader_sets_and_clears_spending_limits(portal: Portal, browser: Browser) -> None:
    assert browser.register("reader").status_code == 200
    page = browser.get("/profile").text
    assert 'id="limits-EUR"' in page and "spent today" in page
    saved = browser.post(
        "/profile/limits",
        {"currency": "EUR", "max_click_minor": "25", "max_day_minor": "300"},
        form_page="/profile",
    )
    assert "Your spending limits in EUR are saved." in saved.text
    [(limits, spent)] = [
        item
        for item in portal.broker.services.spending_limits(_reader(portal))
        if item[0].currency == "EUR"
    ]
    assert (limits, spent) == (SpendingLimits("EUR", 25, 300), 0)
    assert 'value="25"' in saved.text and 'value="300"' in saved.text
    # Bad input changes nothing and says why.
    bad = browser.post(
        "/profile/limits",
        {"currency": "EUR", "max_click_minor": "-5", "max_day_minor": ""},
        form_page="/profile",
    )
    assert "a whole number of cents" in bad.text
    assert portal.broker.services.spending_limits(_reader(portal))[0][0].max_click_minor == 25
    # Empty fields clear the limits.
    browser.post(
        "/profile/limits",
        {"currency": "EUR", "max_click_minor": "", "max_day_minor": ""},
        form_page="/profile",
    )
    assert portal.broker.services.spending_limits(_reader(portal))[0][0].unlimited


def _reader(portal: Portal) -> str:
    with portal.broker.services.store.begin(read_only=True) as repos:
        row = repos.readers.by_username("reader")
        assert row is not None
        return row.reader_id
