"""The operator's dashboard (``/dashboard``): clicks, revenue, coins held,
open windows and the redemption history, behind the operator password of
``vendor.dashboard``.

Its session cookie is signed with the data dir's web secret key, HttpOnly,
SameSite=Strict, scoped to ``/dashboard`` and Secure unless the site is
reached on a loopback host. Every form carries a CSRF token kept in the
session. Wrong passwords are limited per client address
(:class:`vendor.dashboard.LoginLimiter`).
"""

from __future__ import annotations

import hashlib
import secrets

from flask import Blueprint, Flask, Response, abort, render_template, request, session, url_for
from flask.sessions import SecureCookieSessionInterface

from netpay.webforms import check_csrf, csrf_token
from vendor.dashboard import PASSWORD_FILE, load_password_hash, password_tag, verify_password
from vendor.domain import VendorCoinState
from vendor.web.common import DASHBOARD_SESSION, deps, page_context, secure_cookies, site

__all__ = ["DashboardSessions", "bp", "cookie_name", "dashboard", "login", "logout"]

bp = Blueprint("dashboard", __name__)

_RECENT_CLICKS = 20
_COINS_SHOWN = 100
_HEADERS = {
    "Cache-Control": "private, no-store",
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class DashboardSessions(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure unless the site is reached on loopback."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return secure_cookies()


def cookie_name(secret_key: bytes) -> str:
    """One cookie name per vendor: two newspapers on one host keep their own sessions."""
    digest = hashlib.sha256(b"cookie-name:" + secret_key).hexdigest()[:10]
    return f"{DASHBOARD_SESSION.name}_{digest}"


def _client_address() -> str:
    return (request.remote_addr or "unknown")[:64]


def _logged_in(digest: str) -> bool:
    tag = session.get("operator")
    return isinstance(tag, str) and secrets.compare_digest(tag, password_tag(digest))


def _page(body: str, status: int = 200) -> Response:
    resp = Response(body, status=status, mimetype="text/html")
    resp.headers.update(_HEADERS)
    return resp


def _see_other(location: str) -> Response:
    resp = _page("", 303)
    resp.headers["Location"] = location
    return resp


def _disabled() -> Response:
    return _page(
        render_template(
            "dashboard_disabled.html",
            password_file=PASSWORD_FILE,
            configured=site().data_dir is not None,
            **page_context(deps()),
        ),
        403,
    )


def _login_page(error: str | None = None, status: int = 200) -> Response:
    return _page(
        render_template(
            "dashboard_login.html", error=error, csrf_token=csrf_token(), **page_context(deps())
        ),
        status,
    )


@bp.get("/dashboard")
def dashboard() -> Response:
    digest = load_password_hash(site().data_dir)
    if digest is None:
        return _disabled()
    if not _logged_in(digest):
        return _see_other(url_for("dashboard.login"))
    d = deps()
    view = d.services.dashboard(clicks_limit=_RECENT_CLICKS, coins_limit=_COINS_SHOWN)
    titles = {a.article_id: d.newspaper.headline(a) for a in d.newspaper.articles}
    redemptions = d.services.redemption_history(limit=_RECENT_CLICKS)
    return _page(
        render_template(
            "dashboard.html",
            view=view,
            redemptions=redemptions,
            titles=titles,
            states=VendorCoinState,
            csrf_token=csrf_token(),
            **page_context(d),
        )
    )


@bp.route("/dashboard/login", methods=["GET", "POST"])
def login() -> Response:
    digest = load_password_hash(site().data_dir)
    if digest is None:
        return _disabled()
    if request.method == "GET":
        if _logged_in(digest):
            return _see_other(url_for("dashboard.dashboard"))
        return _login_page()
    check_csrf()
    d = deps()
    client = _client_address()
    now_ms = d.clock.now_ms()
    limiter = site().limiter
    wait_s = limiter.retry_after_s(client, now_ms)
    if wait_s:
        resp = _login_page(f"Too many wrong passwords. Try again in {wait_s} seconds.", 429)
        resp.headers["Retry-After"] = str(wait_s)
        return resp
    if not verify_password(digest, request.form.get("password", "")):
        limiter.failed(client, now_ms)
        return _login_page("Wrong password.", 401)
    limiter.succeeded(client)
    session.clear()
    session.permanent = True
    session["operator"] = password_tag(digest)  # a fresh CSRF token comes with the next form
    return _see_other(url_for("dashboard.dashboard"))


@bp.post("/dashboard/logout")
def logout() -> Response:
    if site().data_dir is None:
        abort(404)
    check_csrf()
    session.clear()
    return _see_other(url_for("dashboard.login"))
