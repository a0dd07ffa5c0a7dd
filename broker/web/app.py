"""The portal's app factory: :func:`create_app` wires the blueprints, the session
cookie (:func:`session_cookie_config`, the one place its attributes are set), the
security headers, CSRF, the signed-in reader, and the one place errors become
responses.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, render_template, request, session
from werkzeug.exceptions import HTTPException

from broker.services import PORTAL_SESSION_TTL_S
from broker.web import accounts, coins, directory, instruments, profile, wallets
from broker.web.common import (
    EXTENSION,
    SESSION_KEY,
    PortalDeps,
    error_page,
    format_money,
    format_ms,
    portal_services,
)
from netpay.errors import NetPayError, Unauthenticated
from netpay.webforms import CSRF_FIELD, check_csrf, csrf_token

__all__ = ["COOKIE_NAME", "SECURE_COOKIE_NAME", "create_app", "session_cookie_config"]

log = logging.getLogger("broker.web")

# Distinct from any vendor's cookie: browsers do not separate cookies by port,
# and on loopback the broker and the newspapers share 127.0.0.1.
COOKIE_NAME = "netpay_broker_session"
SECURE_COOKIE_NAME = "__Host-netpay_broker_session"
MAX_REQUEST_BYTES = 16 * 1024
# The templates and the stylesheet stay in the broker package (package data).
_PACKAGE_DIR = Path(__file__).resolve().parent.parent
_BLUEPRINTS = (accounts.bp, profile.bp, instruments.bp, coins.bp, directory.bp, wallets.bp)


def _csp(form_origin: str | None = None) -> str:
    # The wallet sign-in form redirects to the newspaper: form-action must allow it.
    form_action = f"'self' {form_origin}" if form_origin else "'self'"
    return (
        f"default-src 'none'; style-src 'self'; img-src 'self'; form-action {form_action}; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


def session_cookie_config(secure: bool) -> dict[str, Any]:
    """The session cookie's attributes: HttpOnly, SameSite=Lax, path /, no domain; over
    HTTPS also Secure with the ``__Host-`` prefix."""
    return {
        "SESSION_COOKIE_NAME": SECURE_COOKIE_NAME if secure else COOKIE_NAME,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": secure,
        "SESSION_COOKIE_PATH": "/",
        "SESSION_COOKIE_DOMAIN": None,
        "PERMANENT_SESSION_LIFETIME": PORTAL_SESSION_TTL_S,
    }


def create_app(deps: PortalDeps) -> Flask:
    """The portal as a WSGI app over in-process broker services."""
    app = Flask(
        "broker.web",
        template_folder=str(_PACKAGE_DIR / "templates"),
        static_folder=str(_PACKAGE_DIR / "static"),
        static_url_path="/static",
    )
    app.config.update(
        SECRET_KEY=deps.secret_key,
        MAX_CONTENT_LENGTH=MAX_REQUEST_BYTES,
        MAX_FORM_MEMORY_SIZE=MAX_REQUEST_BYTES,
        MAX_FORM_PARTS=50,
        TEMPLATES_AUTO_RELOAD=False,
        **session_cookie_config(deps.secure_cookies),
    )
    app.extensions[EXTENSION] = deps
    app.jinja_env.globals.update(
        csrf_token=csrf_token,
        csrf_field=CSRF_FIELD,
        format_ms=format_ms,
        money=format_money,
    )
    app.before_request(_before)
    app.after_request(_headers)
    _map_errors(app)
    for blueprint in _BLUEPRINTS:
        app.register_blueprint(blueprint)
    return app


def _before() -> None:
    """CSRF on every POST, then who is signed in (a stale session is dropped)."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        check_csrf()
    g.reader_id = None
    token = session.get(SESSION_KEY)
    if isinstance(token, str):
        try:
            g.reader_id = portal_services().portal_reader(token)
        except Unauthenticated:
            session.pop(SESSION_KEY, None)


def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = _csp(g.get("form_action_origin"))
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _map_errors(app: Flask) -> None:
    """Every error a view does not answer itself becomes a page here, and only here."""

    @app.errorhandler(HTTPException)
    def _http_error(err: HTTPException) -> Response:
        status = err.code or 500
        body = render_template(
            "message.html", title=f"{status} {err.name}", error=err.description or err.name
        )
        return Response(body, status=status, mimetype="text/html")

    @app.errorhandler(NetPayError)
    def _netpay_error(err: NetPayError) -> Response:
        return error_page(err)

    @app.errorhandler(Exception)
    def _unexpected(err: Exception) -> Response:
        log.exception("portal: unexpected error on %s %s", request.method, request.path)
        body = render_template(
            "message.html",
            title="500 Internal Server Error",
            error="Something broke on our side. Nothing was changed; please try again.",
        )
        return Response(body, status=500, mimetype="text/html")
