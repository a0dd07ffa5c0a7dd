"""What every blueprint of the newspaper site shares: the site's dependencies
(made once per process), content negotiation, the 402 challenges, and the
one helper that sets and clears cookies with their attributes.

Cookies are HttpOnly and Secure unless the site is reached on a loopback
host; each cookie's name, path and SameSite are declared once here
(:data:`WINDOW`, :data:`WALLET`, :data:`WALLET_STATE`,
:data:`DASHBOARD_SESSION`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Response, current_app, request

from netpay.clock import Clock
from netpay.encoding import is_loopback_host
from netpay.header import Challenge, format_challenge
from netpay.money import Money
from vendor.articles import Article, Newspaper
from vendor.dashboard import LoginLimiter
from vendor.services import VendorServices

__all__ = [
    "BALANCE_HEADER",
    "DASHBOARD_SESSION",
    "EXTENSION",
    "RECEIPT_HEADER",
    "WALLET",
    "WALLET_COOKIE",
    "WALLET_STATE",
    "WINDOW",
    "WINDOW_COOKIE",
    "WINDOW_HEADER",
    "Cookie",
    "LazyDeps",
    "Site",
    "WebDeps",
    "challenge",
    "clear_cookie",
    "cookie_click_allowed",
    "deps",
    "fetch_site_allowed",
    "format_money",
    "is_netpay",
    "no_store",
    "page_context",
    "secure_cookies",
    "set_cookie",
    "site",
    "wants_html",
    "wants_json",
    "window_challenge",
]

RECEIPT_HEADER = "NetPay-Receipt"
BALANCE_HEADER = "NetPay-Balance"
WINDOW_HEADER = "NetPay-Window"
WINDOW_COOKIE = "netpay_window"
WALLET_COOKIE = "netpay_wallet"
EXTENSION = "netpay_vendor"
# A click paid from a cookie: the site's own pages, or the reader's own
# navigation (typed URL, bookmark: "none"), which no other site can cause.
_CLICK_FETCH_SITES = frozenset({"same-origin", "none"})
_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}


def format_money(money: Money) -> str:
    """A price as a reader reads it: ``€0.05``, ``$12.00``, ``1,250.00 CHF``."""
    sign = "-" if money.amount_minor < 0 else ""
    whole, cents = divmod(abs(money.amount_minor), 100)
    number = f"{whole:,}.{cents:02d}"
    symbol = _SYMBOLS.get(money.currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {money.currency}"


# -- the site's dependencies -----------------------------------------------------------


@dataclass(frozen=True)
class WebDeps:
    services: VendorServices
    newspaper: Newspaper
    clock: Clock
    # The broker portal (BrokerInfo.portal_url, read at start-up; "" = none) and
    # this site's origin as certified by the broker (the sign-in's return_to).
    portal_url: str = ""
    web_origin: str = ""


class LazyDeps:
    """WebDeps made on first use (after a gunicorn fork), once per process."""

    def __init__(self, deps: WebDeps | Callable[[], WebDeps]) -> None:
        self._lock = threading.Lock()
        self._deps = deps if isinstance(deps, WebDeps) else None
        self._factory = None if isinstance(deps, WebDeps) else deps

    def get(self) -> WebDeps:
        if self._deps is not None:
            return self._deps
        with self._lock:
            if self._deps is None:
                assert self._factory is not None
                self._deps = self._factory()
            return self._deps


@dataclass
class Site:
    deps: LazyDeps
    data_dir: Path | None  # None: no dashboard (no password, no secret key)
    limiter: LoginLimiter


def site() -> Site:
    found = current_app.extensions[EXTENSION]
    assert isinstance(found, Site)
    return found


def deps() -> WebDeps:
    return site().deps.get()


# -- requests and responses ------------------------------------------------------------


def wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json"
    )


def wants_html() -> bool:
    """A browser asking for a page (not ``*/*`` from an API client or a load tester)."""
    return "text/html" in request.accept_mimetypes.values()


def is_netpay(auth: str | None) -> bool:
    if not auth or not auth.strip():
        return False
    return auth.strip().split(None, 1)[0].lower() == "netpay"


def page_context(d: WebDeps) -> dict[str, Any]:
    return {
        "paper": d.newspaper,
        "vendor_id": d.services.vendor_id,
        "broker_id": d.services.broker_id,
        "wallet_signin": bool(d.portal_url and d.web_origin),
    }


def no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Vary"] = "Accept, Authorization, Cookie"
    return resp


def fetch_site_allowed(allowed: frozenset[str]) -> bool:
    """``Sec-Fetch-Site`` absent (a non-browser client) or one of ``allowed``."""
    value = request.headers.get("Sec-Fetch-Site")
    return value is None or value.strip().lower() in allowed


def cookie_click_allowed() -> bool:
    """A window or wallet cookie pays only for the site itself or the reader's own
    navigation: ``Sec-Fetch-Site`` same-origin, none, or absent."""
    return fetch_site_allowed(_CLICK_FETCH_SITES)


# -- the 402 challenges ----------------------------------------------------------------


def challenge(d: WebDeps, article: Article) -> str:
    return format_challenge(
        Challenge(
            realm=d.services.vendor_id,
            amount_minor=article.amount_minor,
            currency=article.currency,
            broker=d.services.broker_id,
        )
    )


def window_challenge(d: WebDeps) -> str:
    """The challenge of ``/netpay/window``: a window buys words, so the amount is one word."""
    currency = next(
        (a.currency for a in d.newspaper.articles if not a.is_free),
        d.newspaper.articles[0].currency if d.newspaper.articles else "EUR",
    )
    return format_challenge(
        Challenge(
            realm=d.services.vendor_id,
            amount_minor=1,
            currency=currency,
            broker=d.services.broker_id,
        )
    )


# -- cookies ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cookie:
    """One of the site's cookies: always HttpOnly, Secure unless on loopback."""

    name: str
    path: str
    samesite: str  # "Strict" or "Lax"


WINDOW = Cookie(WINDOW_COOKIE, "/", "Strict")
# Lax, not Strict: the sign-in returns by a top-level redirect from the broker.
WALLET = Cookie(WALLET_COOKIE, "/", "Lax")
WALLET_STATE = Cookie("netpay_wallet_state", "/netpay/wallet", "Lax")
# The dashboard's signed session cookie (its name is per vendor: see the app factory).
DASHBOARD_SESSION = Cookie("netpay_dashboard", "/dashboard", "Strict")


def secure_cookies() -> bool:
    """Cookies are Secure unless the site is reached on a loopback host."""
    return not is_loopback_host(request.host)


def set_cookie(resp: Response, cookie: Cookie, value: str, max_age_s: int) -> None:
    resp.set_cookie(
        cookie.name,
        value,
        max_age=max_age_s,
        path=cookie.path,
        secure=secure_cookies(),
        httponly=True,
        samesite=cookie.samesite,
    )


def clear_cookie(resp: Response, cookie: Cookie) -> None:
    resp.delete_cookie(
        cookie.name,
        path=cookie.path,
        secure=secure_cookies(),
        httponly=True,
        samesite=cookie.samesite,
    )
