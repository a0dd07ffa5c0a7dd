"""What the portal's blueprints share: the dependencies, form fields, the signed-in
reader, the one error page, formatting.

A view reads a length-limited form with :func:`field`, calls one
:class:`broker.services.BrokerServices` method (:func:`services`) and renders
the answer; :func:`error_page` is how a NetPayError becomes an HTML page
with its HTTP status (the app's error handler uses it for every error a view
does not render itself).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import wraps
from typing import Any, TypeVar, cast

from flask import (
    Response,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from werkzeug.wrappers import Response as WerkzeugResponse

from broker.services import BrokerServices
from netpay.errors import InvalidArgument, NetPayError, PermissionDenied
from netpay.money import Money

__all__ = [
    "EXTENSION",
    "MAX_FIELD_CHARS",
    "MAX_NUMBER_CHARS",
    "MAX_USERNAME_FIELD",
    "SESSION_KEY",
    "WALLET_SESSION_KEY",
    "PortalDeps",
    "ViewResult",
    "deps",
    "error_page",
    "field",
    "format_money",
    "format_ms",
    "login_required",
    "optional_amount",
    "portal_services",
    "positive_int",
    "signed_in_reader",
    "start_session",
]

log = logging.getLogger("broker.web")

MAX_USERNAME_FIELD = 64
MAX_FIELD_CHARS = 256
MAX_NUMBER_CHARS = 12
EXTENSION = "netpay_broker_portal"
SESSION_KEY = "sid"
# The browser's wallet session (server-side wallet sign-in), independent of the login.
WALLET_SESSION_KEY = "wsid"

F = TypeVar("F", bound=Callable[..., Any])
ViewResult = str | Response | WerkzeugResponse | tuple[str, int]


@dataclass(frozen=True)
class PortalDeps:
    """What the portal needs: the services, the session key, the cookie policy."""

    services: BrokerServices
    secret_key: bytes
    # True when the portal is reached over HTTPS (not on a loopback address):
    # the cookie is then Secure and named with the __Host- prefix.
    secure_cookies: bool


def deps() -> PortalDeps:
    found = current_app.extensions[EXTENSION]
    assert isinstance(found, PortalDeps)
    return found


def portal_services() -> BrokerServices:
    return deps().services


# -- forms, CSRF and the signed-in reader ------------------------------------------------


def field(name: str, max_chars: int = MAX_FIELD_CHARS) -> str:
    value = request.form.get(name, "")
    if len(value) > max_chars:
        raise InvalidArgument(f"{name.replace('_', ' ')}: at most {max_chars} characters")
    return value


def optional_amount(name: str, label: str) -> int | None:
    """An amount in minor units from the form, or None when left empty (no limit)."""
    raw = field(name, MAX_NUMBER_CHARS).strip()
    if not raw:
        return None
    if not raw.isascii() or not raw.isdigit():
        raise InvalidArgument(f"{label}: a whole number of cents, or empty for no limit")
    return int(raw)


def positive_int(name: str, label: str, default: int | None = None) -> int:
    """A whole number >= 1 from the form (empty -> default); the ranges are buy_coin's."""
    raw = field(name, MAX_NUMBER_CHARS).strip()
    if not raw and default is not None:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise InvalidArgument(f"{label} must be a whole number of at least 1")
    return int(raw)


def signed_in_reader() -> str:
    found = g.get("reader_id")
    assert isinstance(found, str)
    return found


def login_required(view: F) -> F:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if g.get("reader_id") is None:
            flash("Please log in first.")
            return redirect(url_for("accounts.login"))
        return view(*args, **kwargs)

    return cast(F, wrapper)


def start_session(token: str) -> None:
    """A fresh session (new CSRF token too): nothing from before the login survives."""
    session.clear()  # the CSRF token too: the next form gets a fresh one
    session[SESSION_KEY] = token


def error_page(err: NetPayError, template: str | None = None, **context: Any) -> Response:
    status = err.http_status
    headers: dict[str, str] = {}
    if isinstance(err, PermissionDenied) and err.retry_after_s is not None:
        status = 429
        headers["Retry-After"] = str(err.retry_after_s)
    if status >= 500:
        log.warning("portal: %s: %s", err.code, err.detail)
    body = render_template(
        template or "message.html",
        error=err.detail,
        title="Something went wrong" if template is None else None,
        **context,
    )
    return Response(body, status=status, headers=headers, mimetype="text/html")


# -- formatting ---------------------------------------------------------------------------


def format_ms(ms: int | None) -> str:
    if not ms:
        return ""
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_money(amount_minor: int, currency: str) -> str:
    return str(Money(amount_minor, currency))
