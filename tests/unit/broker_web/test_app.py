"""The portal app through Flask's test client: cookie policy, headers, the secret key."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from broker.server import open_store
from broker.services import BrokerServices
from broker.storage import BrokerStore
from broker.web import (
    COOKIE_NAME,
    SECRET_FILE,
    SECURE_COOKIE_NAME,
    PortalDeps,
    create_app,
)
from netpay.clock import FakeClock
from netpay.encoding import is_loopback_host
from netpay.envelope import SigningKey
from netpay.files import load_or_create_secret
from netpay.limits import DEFAULT_LIMITS

PASSWORD = "correct horse battery"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[BrokerStore]:
    s = open_store(tmp_path, None)
    try:
        yield s
    finally:
        s.dispose()


def _services(store: BrokerStore) -> BrokerServices:
    return BrokerServices(
        store,
        SigningKey.generate(),
        "broker",
        limits=DEFAULT_LIMITS,
        currencies=("EUR",),
        demo_deposit_minor=1000,
        clock=FakeClock(),
    )


def _app(store: BrokerStore, *, secure: bool) -> Flask:
    return create_app(PortalDeps(_services(store), b"k" * 32, secure_cookies=secure))


def _csrf(client: FlaskClient, path: str = "/register") -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(True))
    assert match is not None
    return match.group(1)


def _register(client: FlaskClient, username: str) -> list[str]:
    resp = client.post(
        "/register",
        data={
            "csrf_token": _csrf(client),
            "username": username,
            "password": PASSWORD,
            "password_again": PASSWORD,
        },
    )
    assert resp.status_code == 302, resp.get_data(True)
    return resp.headers.getlist("Set-Cookie")


def test_on_loopback_the_cookie_is_httponly_lax_and_not_secure(store: BrokerStore) -> None:
    (cookie,) = _register(_app(store, secure=False).test_client(), "ann")
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert cookie.startswith(COOKIE_NAME + "=")
    assert "httponly" in attrs and "samesite=lax" in attrs and "path=/" in attrs
    assert "secure" not in attrs


def test_outside_loopback_the_cookie_is_secure_with_the_host_prefix(store: BrokerStore) -> None:
    (cookie,) = _register(_app(store, secure=True).test_client(), "ann")
    attrs = [a.strip().lower() for a in cookie.split(";")]
    assert cookie.startswith(SECURE_COOKIE_NAME + "=")
    assert "secure" in attrs and "httponly" in attrs and "samesite=lax" in attrs
    assert not any(a.startswith("domain=") for a in attrs)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("192.168.1.4", False),
        ("broker.example.org", False),
    ],
)
def test_which_hosts_are_loopback(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback


def test_security_headers_and_no_store(store: BrokerStore) -> None:
    client = _app(store, secure=False).test_client()
    resp = client.get("/login")
    assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-store"
    css = client.get("/static/portal.css")
    assert css.status_code == 200 and "no-store" not in css.headers.get("Cache-Control", "")
    css.close()


def test_passwords_are_never_echoed_or_logged(
    store: BrokerStore, caplog: pytest.LogCaptureFixture
) -> None:
    client = _app(store, secure=False).test_client()
    _register(client, "ann")
    client.post("/logout", data={"csrf_token": _csrf(client, "/profile")})
    secret = "s3cret-but-wrong!"
    resp = client.post(
        "/login",
        data={"csrf_token": _csrf(client, "/login"), "username": "ann", "password": secret},
    )
    assert resp.status_code == 401
    assert secret not in resp.get_data(True)
    assert secret not in caplog.text and PASSWORD not in caplog.text


def test_the_secret_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / SECRET_FILE
    first = load_or_create_secret(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(first) == 32 and load_or_create_secret(path) == first
    path.chmod(0o644)
    with pytest.raises(PermissionError):
        load_or_create_secret(path)


def test_a_session_signed_with_another_key_is_ignored(store: BrokerStore) -> None:
    services = _services(store)
    one = create_app(PortalDeps(services, b"a" * 32, secure_cookies=False)).test_client()
    _register(one, "ann")
    cookie = one.get_cookie(COOKIE_NAME)
    assert cookie is not None
    other = create_app(PortalDeps(services, b"b" * 32, secure_cookies=False)).test_client()
    other.set_cookie(COOKIE_NAME, cookie.value)
    assert other.get("/profile").headers["Location"].endswith("/login")
    assert one.get("/profile").status_code == 200
