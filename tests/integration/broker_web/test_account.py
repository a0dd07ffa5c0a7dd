"""Register, log in and out, profile, password, deleting personal data: over loopback."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import requests
from sqlalchemy import func, select

from broker.storage import EntryRow
from broker.web import COOKIE_NAME
from netpay.errors import Unauthenticated

from .conftest import DEPOSIT_MINOR, PASSWORD, Browser, Portal


def _path(resp: requests.Response) -> str:
    return "/" + resp.url.split("/", 3)[3]


def _entry_count(portal: Portal) -> int:
    with portal.broker.services.store.begin() as repos:
        return int(repos.session.scalar(select(func.count()).select_from(EntryRow)) or 0)


def test_register_then_profile_change_then_delete_personal_data(
    portal: Portal, browser: Browser, new_browser: Callable[[], Browser]
) -> None:
    services = portal.broker.services
    page = browser.register("alice")
    assert page.status_code == 200 and _path(page) == "/coins"
    assert "100.00 EUR" in page.text  # the demo bank's opening deposit

    page = browser.post(
        "/profile",
        {"display_name": "Alice Liddell", "email": "alice@example.org"},
        form_page="/profile",
    )
    assert page.status_code == 200 and _path(page) == "/profile"
    assert "Alice Liddell" in page.text and "alice@example.org" in page.text
    assert "Alice Liddell's coins" in browser.get("/coins").text

    # Another browser logs in with the same password and sees the same profile.
    other = new_browser()
    assert _path(other.login("alice")) == "/coins"
    assert "alice@example.org" in other.get("/profile").text

    # A bad e-mail is refused with a friendly page, and nothing changes.
    page = browser.post(
        "/profile", {"display_name": "X", "email": "not an address"}, form_page="/profile"
    )
    assert page.status_code == 400 and "e-mail" in page.text
    reader_id = services.login("alice", PASSWORD).reader_id
    assert services.reader_profile(reader_id).display_name == "Alice Liddell"

    browser.post(
        "/instruments/bank",
        {"holder_name": "Alice Liddell", "iban": "DE89 3704 0044 0532 0130 00"},
        form_page="/instruments",
    )
    assert len(services.list_instruments(reader_id)) == 1
    entries_before = _entry_count(portal)

    page = browser.post("/profile/erase", {"confirm": "yes"}, form_page="/profile")
    assert page.status_code == 200
    assert "Alice Liddell" not in page.text and "alice@example.org" not in page.text
    assert "Money records are never deleted" in page.text
    profile = services.reader_profile(reader_id)
    assert (profile.display_name, profile.email) == (None, None)
    assert profile.erased_at_ms == portal.clock.now_ms()
    assert services.list_instruments(reader_id) == []
    # Money records stay; the login stays.
    assert _entry_count(portal) == entries_before
    assert services.account_balances(reader_id) == {"EUR": DEPOSIT_MINOR}
    assert _path(new_browser().login("alice")) == "/coins"


def test_erase_needs_confirmation(portal: Portal, browser: Browser) -> None:
    browser.register("carol")
    browser.post("/profile", {"display_name": "Carol", "email": ""}, form_page="/profile")
    page = browser.post("/profile/erase", {}, form_page="/profile")
    assert page.status_code == 400 and "confirm" in page.text
    assert "Carol" in browser.get("/profile").text


def test_logout_ends_the_session_even_for_a_replayed_cookie(
    portal: Portal, browser: Browser
) -> None:
    browser.register("bob")
    cookie = browser.http.cookies[COOKIE_NAME]
    assert _path(browser.get("/profile")) == "/profile"

    page = browser.post("/logout", form_page="/profile")
    assert page.status_code == 200 and _path(page) == "/login"
    assert "You are logged out." in page.text
    assert _path(browser.get("/profile")) == "/login"

    # The old cookie, replayed by someone who copied it, no longer signs in.
    with requests.Session() as thief:
        thief.cookies.set(COOKIE_NAME, cookie)
        page = thief.get(portal.url + "/profile", timeout=30)
    assert _path(page) == "/login" and "bob" not in page.text


def test_change_password_needs_the_current_one_and_ends_other_sessions(
    portal: Portal, browser: Browser, new_browser: Callable[[], Browser]
) -> None:
    services = portal.broker.services
    browser.register("dave")
    other = new_browser()
    other.login("dave")
    api = services.login("dave", PASSWORD)
    new_password = "tr0ub4dor & 3"

    page = browser.post(
        "/profile/password",
        {
            "current_password": "wrong password",
            "new_password": new_password,
            "new_password_again": new_password,
        },
        form_page="/profile",
    )
    assert page.status_code == 401 and "current password is wrong" in page.text
    assert new_password not in page.text and "wrong password" not in page.text.replace(
        "current password is wrong", ""
    )
    assert services.authenticate_reader(api.token) == api.reader_id  # nothing changed

    page = browser.post(
        "/profile/password",
        {
            "current_password": PASSWORD,
            "new_password": new_password,
            "new_password_again": new_password,
        },
        form_page="/profile",
    )
    assert page.status_code == 200 and "password is changed" in page.text
    assert _path(browser.get("/profile")) == "/profile"  # this session stays
    assert _path(other.get("/profile")) == "/login"  # the other one ended
    with pytest.raises(Unauthenticated):
        services.authenticate_reader(api.token)  # wallets must log in again
    assert new_browser().login("dave").status_code == 401
    assert _path(new_browser().login("dave", new_password)) == "/coins"


def test_login_is_rate_limited_like_the_grpc_login(portal: Portal, browser: Browser) -> None:
    browser.register("erin")
    intruder = Browser(portal.url)
    try:
        for _ in range(5):
            page = intruder.login("erin", "not the password")
            assert page.status_code == 401 and "wrong username or password" in page.text
        page = intruder.login("erin")  # even the right password waits now
        assert page.status_code == 429
        assert int(page.headers["Retry-After"]) > 0
        assert "too many failed logins" in page.text
        portal.clock.advance(301)
        assert _path(intruder.login("erin")) == "/coins"
    finally:
        intruder.close()


def test_bad_input_gets_friendly_pages_never_a_500(portal: Portal, browser: Browser) -> None:
    page = browser.register("No Such Name!")
    assert page.status_code == 400 and "username must match" in page.text
    page = browser.post(
        "/register",
        {"username": "frank", "password": PASSWORD, "password_again": PASSWORD + "x"},
        form_page="/register",
    )
    assert page.status_code == 400 and "differ" in page.text
    page = browser.post(
        "/register",
        {"username": "f" * 5000, "password": PASSWORD, "password_again": PASSWORD},
        form_page="/register",
    )
    assert page.status_code == 400 and "<html" in page.text
    page = browser.post("/register", {"username": "x" * 40_000}, form_page="/register")
    assert page.status_code == 413 and "<html" in page.text
    page = browser.register("grace", "short")
    assert page.status_code == 400 and "password must have" in page.text
    browser.register("grace")
    page = new_browser_register(portal, "grace")
    assert page.status_code == 409 and "taken" in page.text
    assert browser.get("/no/such/page").status_code == 404
    assert browser.get("/logout").status_code == 405
    page = browser.post("/instruments/nope/remove", form_page="/instruments")
    assert page.status_code == 404 and "no such payment instrument" in page.text


def new_browser_register(portal: Portal, username: str) -> requests.Response:
    b = Browser(portal.url)
    try:
        return b.register(username)
    finally:
        b.close()


def test_pages_need_a_login(browser: Browser) -> None:
    for path in ("/profile", "/instruments", "/coins"):
        page = browser.get(path)
        assert _path(page) == "/login" and "Please log in first." in page.text
    start = browser.get("/")
    assert start.status_code == 200 and "Open an account" in start.text
