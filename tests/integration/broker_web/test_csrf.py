"""Every form needs the session's CSRF token: without it, 400 and nothing changes."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from .conftest import PASSWORD, Browser, Portal


def _profile_name(portal: Portal, username: str) -> str | None:
    services = portal.broker.services
    return services.reader_profile(services.login(username, PASSWORD).reader_id).display_name


@pytest.mark.parametrize(
    "token",
    [None, "", "wrong-token", "ü" * 10, "x" * 5000],
    ids=["missing", "empty", "wrong", "non-ascii", "huge"],
)
def test_a_post_without_the_right_token_is_refused_and_changes_nothing(
    portal: Portal, browser: Browser, token: str | None
) -> None:
    browser.register("alice")
    browser.post("/profile", {"display_name": "Alice", "email": ""}, form_page="/profile")
    data = {"display_name": "Mallory", "email": "m@evil.example"}
    if token is not None:
        data["csrf_token"] = token
    page = browser.http.post(portal.url + "/profile", data=data, timeout=30)
    assert page.status_code == 400
    assert "did not come from this site" in page.text
    assert _profile_name(portal, "alice") == "Alice"


def test_a_token_from_another_session_does_not_work(
    portal: Portal, browser: Browser, new_browser: Callable[[], Browser]
) -> None:
    browser.register("alice")
    attacker = new_browser()
    attacker.register("mallory")
    foreign = attacker.csrf("/profile")
    page = browser.post("/profile/erase", {"confirm": "yes"}, csrf=foreign)
    assert page.status_code == 400
    page = browser.post("/logout", csrf=foreign)
    assert page.status_code == 400
    assert browser.get("/profile").url.endswith("/profile")  # still logged in


def test_register_and_login_forms_are_protected_too(portal: Portal, browser: Browser) -> None:
    data = {"username": "zed", "password": PASSWORD, "password_again": PASSWORD}
    page = browser.http.post(portal.url + "/register", data=data, timeout=30)
    assert page.status_code == 400
    with portal.broker.services.store.begin() as repos:
        assert repos.readers.by_username("zed") is None
    browser.register("zed")
    page = browser.http.post(
        portal.url + "/login", data={"username": "zed", "password": PASSWORD}, timeout=30
    )
    assert page.status_code == 400


def test_instrument_changes_need_the_token(portal: Portal, browser: Browser) -> None:
    browser.register("ivy")
    browser.post(
        "/instruments/bank",
        {"holder_name": "Ivy", "iban": "GB82 WEST 1234 5698 7654 32"},
        form_page="/instruments",
    )
    services = portal.broker.services
    reader_id = services.login("ivy", PASSWORD).reader_id
    (instrument,) = services.list_instruments(reader_id)
    page = browser.http.post(
        f"{portal.url}/instruments/{instrument.instrument_id}/remove",
        data={"csrf_token": "forged"},
        timeout=30,
    )
    assert page.status_code == 400
    assert services.list_instruments(reader_id) == [instrument]
