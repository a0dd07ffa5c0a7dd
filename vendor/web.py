"""The newspaper web site (Flask): articles, the 402 challenge, paid clicks,
and the operator's dashboard.

Views only translate: a paid click calls ``VendorServices.pay`` in process
and maps a NetPayError to its HTTP answer (the one HTTP boundary of the
error tree). Bodies are negotiated on ``Accept``: JSON for API clients (the
protocol's shape), an HTML page for browsers that says what happened and
what the reader can do.

Cookie-cache windows (protocol.md, "Windows"; docs/protocol.md, "Windows
(choices)"): ``POST /netpay/window`` pays a window with ``window="m"`` and
sets the ``netpay_window`` cookie (HttpOnly, SameSite=Strict, Path=/,
Max-Age, Secure unless on a loopback host); an article requested with that
cookie, no Authorization header and ``Sec-Fetch-Site`` same-origin, none
(typed URL, bookmark) or absent is paid from the window;
``POST /netpay/window/close`` closes it and returns the signed WindowCredit.

Server-side wallets (docs/protocol.md, "Server-side wallets at the vendor
(choices)"): ``GET /netpay/wallet/signin?next=/path`` sends the reader to the
broker portal's sign-in; ``GET /netpay/wallet/return`` exchanges the
``netpay_code`` for a WalletGrant and sets the ``netpay_wallet`` cookie
(HttpOnly, SameSite=Lax, Path=/, Secure unless on a loopback host); an
article requested with it (no Authorization header, no window cookie,
``Sec-Fetch-Site`` same-origin, none or absent) is paid from the wallet.

The dashboard (``/dashboard``) is behind the operator password of
``vendor.dashboard``; its session cookie is signed with the data dir's web
secret key, HttpOnly, SameSite=Strict, scoped to ``/dashboard`` and Secure
unless the site is reached on a loopback host. Every form carries a CSRF
token kept in the session.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from flask import (
    Flask,
    Response,
    abort,
    jsonify,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface

from netpay.browser import BRIDGE_SCRIPT_PATH
from netpay.clock import Clock
from netpay.encoding import b64url_encode, is_loopback_host
from netpay.errors import (
    BrokerUnavailable,
    CoinBusy,
    Expired,
    InvalidArgument,
    LimitExceeded,
    NetPayError,
    NotFound,
    PermissionDenied,
)
from netpay.header import Challenge, format_challenge
from netpay.money import Money
from netpay.webforms import check_csrf, csrf_token
from vendor.articles import Article, Newspaper
from vendor.dashboard import (
    PASSWORD_FILE,
    LoginLimiter,
    load_password_hash,
    password_tag,
    read_secret_key,
    verify_password,
)
from vendor.domain import VendorCoinState
from vendor.services import PaymentResult, VendorServices, WindowOpened

__all__ = [
    "BALANCE_HEADER",
    "RECEIPT_HEADER",
    "WALLET_COOKIE",
    "WINDOW_COOKIE",
    "WINDOW_HEADER",
    "WebDeps",
    "create_app",
    "format_money",
]

RECEIPT_HEADER = "NetPay-Receipt"
BALANCE_HEADER = "NetPay-Balance"
WINDOW_HEADER = "NetPay-Window"
WINDOW_COOKIE = "netpay_window"
WALLET_COOKIE = "netpay_wallet"
_WALLET_STATE_COOKIE = "netpay_wallet_state"
_WALLET_STATE_MAX_AGE_S = 600
_NEXT_MAX_CHARS = 512
# A click paid from a cookie: the site's own pages, or the reader's own
# navigation (typed URL, bookmark: "none"), which no other site can cause.
_CLICK_FETCH_SITES = frozenset({"same-origin", "none"})
# Closing a window is a POST from the site's own script only.
_CLOSE_FETCH_SITES = frozenset({"same-origin"})
_HANDLE_MAX_CHARS = 64
_EXTENSION = "netpay_vendor"
_SESSION_LIFETIME = timedelta(hours=8)
_RECENT_CLICKS = 20
_COINS_SHOWN = 100
_SYMBOLS = {"EUR": "€", "USD": "$", "GBP": "£"}
_DASHBOARD_HEADERS = {
    "Cache-Control": "private, no-store",
    "Content-Security-Policy": (
        "default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


def format_money(money: Money) -> str:
    """A price as a reader reads it: ``€0.05``, ``$12.00``, ``1,250.00 CHF``."""
    sign = "-" if money.amount_minor < 0 else ""
    whole, cents = divmod(abs(money.amount_minor), 100)
    number = f"{whole:,}.{cents:02d}"
    symbol = _SYMBOLS.get(money.currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {money.currency}"


@dataclass(frozen=True)
class WebDeps:
    services: VendorServices
    newspaper: Newspaper
    clock: Clock
    # The broker portal (BrokerInfo.portal_url, read at start-up; "" = none) and
    # this site's origin as certified by the broker (the sign-in's return_to).
    portal_url: str = ""
    web_origin: str = ""


class _Deps:
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
class _Site:
    deps: _Deps
    data_dir: Path | None  # None: no dashboard (no password, no secret key)
    limiter: LoginLimiter


def _site() -> _Site:
    from flask import current_app

    site = current_app.extensions[_EXTENSION]
    assert isinstance(site, _Site)
    return site


def _deps() -> WebDeps:
    return _site().deps.get()


def _wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json"
    )


def _page_context(deps: WebDeps) -> dict[str, Any]:
    return {
        "paper": deps.newspaper,
        "vendor_id": deps.services.vendor_id,
        "broker_id": deps.services.broker_id,
        "wallet_signin": bool(deps.portal_url and deps.web_origin),
    }


def _challenge(deps: WebDeps, article: Article) -> str:
    return format_challenge(
        Challenge(
            realm=deps.services.vendor_id,
            amount_minor=article.amount_minor,
            currency=article.currency,
            broker=deps.services.broker_id,
        )
    )


def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Vary"] = "Accept, Authorization, Cookie"
    return resp


# -- payment pages ---------------------------------------------------------------


@dataclass(frozen=True)
class _Explanation:
    title: str
    what: str  # what happened
    todo: str  # what the reader can do


_EXPLAIN: dict[str, _Explanation] = {
    "payment_required": _Explanation(
        "This article is paid",
        "This article costs {price}. The newspaper is paid per article with NetPay: "
        "your wallet pays a few words of your coin, and the article opens.",
        "Open it with your NetPay wallet; from a terminal, for example:",
    ),
    "malformed": _Explanation(
        "Your wallet sent a payment we could not read",
        "The payment header was incomplete or garbled, so it was not looked at any further.",
        "Nothing was charged. Try again; if it keeps happening, update your wallet.",
    ),
    "bad_payword": _Explanation(
        "The payment did not check out",
        "The payword your wallet sent does not belong to your coin at that position.",
        "Nothing was charged. Your wallet will resynchronise with its broker and can retry; "
        "if it keeps happening, check that the coin comes from this newspaper's broker.",
    ),
    "wrong_amount": _Explanation(
        "The payment was for the wrong amount",
        "Your wallet offered another amount than this article's price ({price}).",
        "Nothing was charged. Your wallet will retry with the right price; "
        "reload the page if it does not.",
    ),
    "wrong_currency": _Explanation(
        "Your coin is in another currency",
        "This article is priced in {currency}, and the coin your wallet used is not.",
        "Nothing was charged. Pay with a coin in {currency}: buy one at your broker.",
    ),
    "expired": _Explanation(
        "Your coin has expired",
        "The coin your wallet used is past its expiry date and can no longer pay.",
        "Nothing was charged. Buy a new coin at your broker; "
        "what was left on the old one stays yours at the broker.",
    ),
    "revoked": _Explanation(
        "This coin has been frozen",
        "The broker has frozen the coin your wallet used (it was reported lost).",
        "Nothing was charged. Pay with another coin, or contact your broker.",
    ),
    "insufficient": _Explanation(
        "Not enough credit left on your coin",
        "This article costs {price}, more than what is left on the coin your wallet used.",
        "Nothing was charged. Buy a new coin at your broker, then reload this page.",
    ),
    "limit_exceeded": _Explanation(
        "This payment is over a limit",
        "The payment went past one of the limits that keep coins safe "
        "(too many words unconfirmed with the broker, or too large a step).",
        "Nothing was charged. Wait a moment and try again; your wallet will retry.",
    ),
    "already_spent": _Explanation(
        "These words of your coin were already spent",
        "The part of your coin your wallet offered already paid for something else.",
        "Nothing more was charged. Your wallet will catch up with where your coin "
        "stands and pay with the next words; reload the page.",
    ),
    "coin_busy": _Explanation(
        "Your coin is moving between newspapers",
        "Your coin is being handed over from another newspaper right now.",
        "Nothing was charged. Your wallet will retry in {retry_after} seconds; "
        "or reload the page then.",
    ),
    "broker_unavailable": _Explanation(
        "We cannot reach the payment broker right now",
        "To accept your coin this newspaper must ask the NetPay broker, "
        "and the broker did not answer.",
        "Nothing was charged. Please try again in a minute; your wallet will retry.",
    ),
    "invalid_argument": _Explanation(
        "This link is not valid",
        "The address asked for something this newspaper does not do "
        "(for example, to send you to another site after signing in).",
        "Nothing was charged. Go back to the front page and follow the sign-in link there.",
    ),
    "permission_denied": _Explanation(
        "This sign-in was not started here",
        "The sign-in answer that brought you here belongs to a sign-in this browser "
        "did not start, so it was not used.",
        "Nothing was charged. Start again from the article's sign-in link.",
    ),
    "not_found": _Explanation(
        "Page not found",
        "There is no article at this address.",
        "Go back to the front page for today's articles.",
    ),
}
_FALLBACK = _Explanation(
    "The payment was not accepted",
    "Something went wrong with the payment.",
    "Nothing was charged. Try again, or go back to the front page.",
)


def _explain(code: str, article: Article | None, retry_after_s: int | None) -> tuple[str, str, str]:
    """Title, what happened and what to do (plain text) for ``code``."""
    exp = _EXPLAIN.get(code, _FALLBACK)
    values = {
        "price": format_money(article.price) if article else "",
        "currency": article.currency if article else "",
        "retry_after": str(retry_after_s or 1),
    }
    return (
        exp.title,
        exp.what.format(**values),  # plain text: the template escapes it
        exp.todo.format(**values),
    )


def _payment_page(
    deps: WebDeps,
    *,
    code: str,
    detail: str,
    article: Article | None,
    index: int | None = None,
    retry_after_s: int | None = None,
) -> str:
    title, what, todo = _explain(code, article, retry_after_s)
    return render_template(
        "payment.html",
        heading=title,
        what=what,
        todo=todo,
        article=article,
        code=code,
        detail=detail,
        index=index,
        **_page_context(deps),
    )


def _payment_required(deps: WebDeps, article: Article, detail: str | None = None) -> Response:
    detail = detail or f"This article costs {article.price}. Pay with NetPay."
    if _wants_json():
        resp = jsonify(
            error="payment_required",
            detail=detail,
            amount=article.amount_minor,
            currency=article.currency,
        )
    else:
        resp = Response(
            _payment_page(deps, code="payment_required", detail=detail, article=article),
            mimetype="text/html",
        )
    resp.status_code = 402
    resp.headers["WWW-Authenticate"] = _challenge(deps, article)
    return _no_store(resp)


def _error(deps: WebDeps, err: NetPayError, article: Article | None) -> Response:
    retry_after_s = (err.retry_after_s or 1) if isinstance(err, CoinBusy) else None
    if _wants_json():
        body: dict[str, Any] = {"error": err.code, "detail": err.detail}
        if err.index is not None:
            body["index"] = err.index
        if err.payword is not None:
            body["payword"] = b64url_encode(err.payword)
        resp = jsonify(body)
    else:
        resp = Response(
            _payment_page(
                deps,
                code=err.code,
                detail=err.detail,
                article=article,
                index=err.index,
                retry_after_s=retry_after_s,
            ),
            mimetype="text/html",
        )
    resp.status_code = err.http_status
    if article is not None and not article.is_free:
        resp.headers["WWW-Authenticate"] = _challenge(deps, article)
    if retry_after_s is not None:
        resp.headers["Retry-After"] = str(retry_after_s)
    return _no_store(resp)


def _is_netpay(auth: str | None) -> bool:
    if not auth or not auth.strip():
        return False
    return auth.strip().split(None, 1)[0].lower() == "netpay"


def _wants_html() -> bool:
    """A browser asking for a page (not ``*/*`` from an API client or a load tester)."""
    return "text/html" in request.accept_mimetypes.values()


def _paid_response(deps: WebDeps, article: Article, result: PaymentResult) -> Response:
    # Window credit on its way back to the reader (a hand-off closed a window
    # elsewhere): one more read, made only for a browser's page.
    returning = deps.services.refund_pending(result.ecoin_id) if _wants_html() else None
    resp = Response(
        render_template(
            "article.html",
            article=article,
            paid=result,
            returning=returning,
            **_page_context(deps),
        ),
        mimetype="text/html",
    )
    resp.headers[RECEIPT_HEADER] = b64url_encode(result.receipt)
    resp.headers[BALANCE_HEADER] = str(result.words_left)
    return _no_store(resp)


# -- windows ---------------------------------------------------------------------


def _fetch_site_allowed(allowed: frozenset[str]) -> bool:
    """``Sec-Fetch-Site`` absent (a non-browser client) or one of ``allowed``."""
    site = request.headers.get("Sec-Fetch-Site")
    return site is None or site.strip().lower() in allowed


def _cookie_click_allowed() -> bool:
    """A window or wallet cookie pays only for the site itself or the reader's own
    navigation: ``Sec-Fetch-Site`` same-origin, none, or absent."""
    return _fetch_site_allowed(_CLICK_FETCH_SITES)


def _window_handle() -> str | None:
    handle = request.cookies.get(WINDOW_COOKIE)
    if not handle or len(handle) > _HANDLE_MAX_CHARS:
        return None
    return handle


def _set_window_cookie(resp: Response, handle: str, max_age_s: int) -> None:
    resp.set_cookie(
        WINDOW_COOKIE,
        handle,
        max_age=max_age_s,
        path="/",
        secure=not is_loopback_host(request.host),
        httponly=True,
        samesite="Strict",
    )


def _clear_window_cookie(resp: Response) -> None:
    resp.delete_cookie(
        WINDOW_COOKIE,
        path="/",
        secure=not is_loopback_host(request.host),
        httponly=True,
        samesite="Strict",
    )


def _window_challenge(deps: WebDeps) -> str:
    """The challenge of ``/netpay/window``: a window buys words, so the amount is one word."""
    currency = next(
        (a.currency for a in deps.newspaper.articles if not a.is_free),
        deps.newspaper.articles[0].currency if deps.newspaper.articles else "EUR",
    )
    return format_challenge(
        Challenge(
            realm=deps.services.vendor_id,
            amount_minor=1,
            currency=currency,
            broker=deps.services.broker_id,
        )
    )


def _window_required(deps: WebDeps) -> Response:
    detail = 'A window is opened with a NetPay payment marked window="m".'
    if _wants_json():
        resp = jsonify(error="payment_required", detail=detail)
    else:
        resp = Response(
            _payment_page(deps, code="payment_required", detail=detail, article=None),
            mimetype="text/html",
        )
    resp.status_code = 402
    resp.headers["WWW-Authenticate"] = _window_challenge(deps)
    return _no_store(resp)


def _window_error(deps: WebDeps, err: NetPayError) -> Response:
    resp = _error(deps, err, None)
    resp.headers["WWW-Authenticate"] = _window_challenge(deps)
    return resp


def _window_opened(opened: WindowOpened, now_ms: int) -> Response:
    w = opened.window
    resp = jsonify(
        vendor_id=opened.vendor_id,
        ecoin_id=w.ecoin_id,
        epoch=w.epoch,
        window_from=w.window_from,
        window_top=w.window_top,
        units=w.units,
        words_left=w.words_left,
        unit_value=w.unit_value_minor,
        currency=w.currency,
        expires_at_ms=w.expires_at_ms,
    )
    _set_window_cookie(resp, opened.handle, opened.max_age_s(now_ms))
    return _no_store(resp)


def _pay_from_window(deps: WebDeps, article: Article, handle: str) -> Response:
    """An article paid from the window; a window that cannot pay is ignored
    (the normal 402 challenge, nothing consumed)."""
    try:
        result = deps.services.pay_from_window(handle, article.item(), deps.clock.now_ms())
    except (CoinBusy, BrokerUnavailable) as err:
        return _error(deps, err, article)
    except NetPayError as err:
        resp = _payment_required(deps, article, f"The window did not pay: {err.detail}")
        if isinstance(err, NotFound | Expired):
            _clear_window_cookie(resp)  # the window is gone for good
        return resp
    resp = _paid_response(deps, article, result)
    resp.headers[WINDOW_HEADER] = str(result.words_left)
    return resp


# -- server-side wallets ---------------------------------------------------------


def _local_path(value: str | None) -> str:
    """``next``: a path on this site only (no scheme, no host, no ``//``)."""
    if value is None or value == "":
        return "/"
    if (
        len(value) > _NEXT_MAX_CHARS
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x21 or ord(c) == 0x7F for c in value)
    ):
        raise InvalidArgument("next must be a path on this site")
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        raise InvalidArgument("next must be a path on this site")
    return value


def _wallet_handle() -> str | None:
    handle = request.cookies.get(WALLET_COOKIE)
    if not handle or len(handle) > _HANDLE_MAX_CHARS:
        return None
    return handle


def _wallet_cookie(resp: Response, name: str, value: str, max_age_s: int, path: str) -> None:
    # Lax, not Strict: the sign-in returns by a top-level redirect from the broker.
    resp.set_cookie(
        name,
        value,
        max_age=max_age_s,
        path=path,
        secure=not is_loopback_host(request.host),
        httponly=True,
        samesite="Lax",
    )


def _plain_page(deps: WebDeps, err: NetPayError) -> Response:
    resp = _error(deps, err, None)
    return resp


def _pay_with_wallet(deps: WebDeps, article: Article, handle: str) -> Response:
    """An article paid by the server-side wallet; a session that cannot pay is
    the normal 402 challenge (nothing spent)."""
    try:
        result = deps.services.pay_with_wallet(handle, article.item(), deps.clock.now_ms())
    except (CoinBusy, BrokerUnavailable, LimitExceeded) as err:
        # A spending limit says why in its own words (402 limit_exceeded).
        return _error(deps, err, article)
    except NetPayError as err:
        resp = _payment_required(deps, article, f"Your wallet did not pay: {err.detail}")
        if isinstance(err, NotFound | Expired):
            resp.delete_cookie(
                WALLET_COOKIE,
                path="/",
                secure=not is_loopback_host(request.host),
                httponly=True,
                samesite="Lax",
            )
        return resp
    resp = _paid_response(deps, article, result)
    if result.window_words_left is not None:
        resp.headers[WINDOW_HEADER] = str(result.window_words_left)
    return resp


def _json_error(err: NetPayError) -> Response:
    resp = jsonify(error=err.code, detail=err.detail)
    resp.status_code = err.http_status
    if isinstance(err, CoinBusy):
        resp.headers["Retry-After"] = str(err.retry_after_s or 1)
    return _no_store(resp)


# -- dashboard sessions ---------------------------------------------------------


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure unless the site is reached on loopback."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return not is_loopback_host(request.host)


def _client_address() -> str:
    return (request.remote_addr or "unknown")[:64]


def _logged_in(digest: str) -> bool:
    tag = session.get("operator")
    return isinstance(tag, str) and secrets.compare_digest(tag, password_tag(digest))


def _dashboard_response(body: str, status: int = 200) -> Response:
    resp = Response(body, status=status, mimetype="text/html")
    resp.headers.update(_DASHBOARD_HEADERS)
    return resp


def _see_other(location: str) -> Response:
    resp = _dashboard_response("", 303)
    resp.headers["Location"] = location
    return resp


def _amount_in(amount_minor: int, currency: str) -> str:
    return format_money(Money(amount_minor, currency))


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(ecoin_id: str) -> str:
    return f"{ecoin_id[:8]}…{ecoin_id[-4:]}" if len(ecoin_id) > 12 else ecoin_id


def _cookie_name(secret_key: bytes) -> str:
    """One cookie name per vendor: two newspapers on one host keep their own sessions."""
    return "netpay_dashboard_" + hashlib.sha256(b"cookie-name:" + secret_key).hexdigest()[:10]


def create_app(deps: WebDeps | Callable[[], WebDeps], *, data_dir: Path | None = None) -> Flask:
    """The newspaper site; ``deps`` may be a factory called on first request.

    ``data_dir`` (the vendor's) enables the dashboard: it holds the web secret
    key (made by the main process) and the operator password hash.
    """
    app = Flask(__name__)
    app.extensions[_EXTENSION] = _Site(_Deps(deps), data_dir, LoginLimiter())
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.session_interface = _SessionInterface()
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/dashboard",
        PERMANENT_SESSION_LIFETIME=_SESSION_LIFETIME,
        MAX_CONTENT_LENGTH=64 * 1024,
        MAX_FORM_MEMORY_SIZE=16 * 1024,
        MAX_FORM_PARTS=16,
    )
    if data_dir is not None:
        app.secret_key = read_secret_key(data_dir)
        app.config["SESSION_COOKIE_NAME"] = _cookie_name(app.secret_key)
    app.jinja_env.filters["money"] = format_money
    app.jinja_env.filters["amount_in"] = _amount_in
    app.jinja_env.filters["when"] = _when
    app.jinja_env.filters["short"] = _short

    @app.after_request
    def _hardening(resp: Response) -> Response:
        resp.headers.setdefault("X-Content-Type-Options", "nosniff")
        return resp

    @app.get("/healthz")
    def healthz() -> Response:
        d = _deps()
        return jsonify(status="ok", vendor_id=d.services.vendor_id)

    # -- the wallet bridge's browser library (the 402 page's pay button loads it) --

    @app.get("/netpay/bridge.js")
    def netpay_bridge_script() -> Response:
        resp = Response(BRIDGE_SCRIPT_PATH.read_bytes(), mimetype="text/javascript")
        resp.headers["Cache-Control"] = "public, max-age=300"
        return resp

    @app.get("/")
    def index() -> str:
        d = _deps()
        return render_template("index.html", **_page_context(d))

    @app.get("/api/articles")
    def api_articles() -> Response:
        d = _deps()
        return jsonify(
            [
                {
                    "id": a.article_id,
                    "title": d.newspaper.headline(a),
                    "amount": a.amount_minor,
                    "currency": a.currency,
                    "url": url_for("article", article_id=a.article_id, _external=True),
                }
                for a in d.newspaper.articles
            ]
        )

    @app.get("/articles/<article_id>")
    def article(article_id: str) -> Response:
        d = _deps()
        found = d.newspaper.article(article_id[:64])
        if found is None:
            return _error(d, NotFound(f"no article {article_id[:64]!r}"), None)
        if found.is_free:
            return Response(
                render_template("article.html", article=found, paid=None, **_page_context(d)),
                mimetype="text/html",
            )
        auth = request.headers.get("Authorization")
        if request.method != "GET" or not _is_netpay(auth):
            handle = _window_handle()
            if request.method == "GET" and handle is not None and _cookie_click_allowed():
                return _pay_from_window(d, found, handle)
            wallet = _wallet_handle()
            if request.method == "GET" and wallet is not None and _cookie_click_allowed():
                return _pay_with_wallet(d, found, wallet)
            return _payment_required(d, found)
        assert auth is not None
        try:
            result = d.services.pay(auth, found.item(), d.clock.now_ms())
        except NetPayError as err:
            return _error(d, err, found)
        return _paid_response(d, found, result)

    # -- cookie-cache windows ------------------------------------------------------

    @app.post("/netpay/window")
    def open_window() -> Response:
        d = _deps()
        auth = request.headers.get("Authorization")
        if not _is_netpay(auth):
            return _window_required(d)
        assert auth is not None
        now_ms = d.clock.now_ms()
        try:
            opened = d.services.open_window(auth, now_ms)
        except NetPayError as err:
            return _window_error(d, err)
        return _window_opened(opened, now_ms)

    @app.post("/netpay/window/close")
    def close_window() -> Response:
        d = _deps()
        if not _fetch_site_allowed(_CLOSE_FETCH_SITES):
            return _json_error(PermissionDenied("a window is closed from its own site only"))
        handle = _window_handle()
        if handle is None:
            return _json_error(NotFound("no window cookie"))
        try:
            closed = d.services.close_window(handle, d.clock.now_ms())
        except NetPayError as err:
            resp = _json_error(err)
            if isinstance(err, NotFound):
                _clear_window_cookie(resp)
            return resp
        resp = jsonify(
            window_credit=b64url_encode(closed.credit.SerializeToString()),
            refund_units=closed.refund_units,
        )
        _clear_window_cookie(resp)
        return _no_store(resp)

    # -- server-side wallets -------------------------------------------------------

    @app.get("/netpay/wallet/signin")
    def wallet_signin() -> Response:
        d = _deps()
        try:
            target = _local_path(request.args.get("next"))
        except InvalidArgument as err:
            return _plain_page(d, err)
        if not d.portal_url or not d.web_origin:
            return _plain_page(d, NotFound("this newspaper's broker has no wallet sign-in"))
        state = b64url_encode(secrets.token_bytes(16))
        query = urlencode({"next": target, "state": state})
        return_to = d.web_origin + "/netpay/wallet/return?" + query
        location = (
            d.portal_url.rstrip("/")
            + "/wallet/signin?"
            + urlencode({"vendor": d.services.vendor_id, "return_to": return_to})
        )
        resp = _no_store(Response("", 303))
        resp.headers["Location"] = location
        _wallet_cookie(resp, _WALLET_STATE_COOKIE, state, _WALLET_STATE_MAX_AGE_S, "/netpay/wallet")
        return resp

    @app.get("/netpay/wallet/return")
    def wallet_return() -> Response:
        d = _deps()
        try:
            target = _local_path(request.args.get("next"))
        except InvalidArgument as err:
            return _plain_page(d, err)
        code = request.args.get("netpay_code")
        if not code:
            # The reader cancelled at the broker: back where they were.
            resp = _no_store(Response("", 303))
            resp.headers["Location"] = target
            return resp
        state = request.args.get("state", "")
        expected = request.cookies.get(_WALLET_STATE_COOKIE, "")
        if not state or not expected or not secrets.compare_digest(state, expected):
            return _plain_page(
                d, PermissionDenied("this sign-in was not started from this browser")
            )
        now_ms = d.clock.now_ms()
        try:
            signed_in = d.services.wallet_signin(code, now_ms)
        except NetPayError as err:
            return _plain_page(d, err)
        # A page that moves on by itself, not a redirect: a navigation redirected
        # from the broker arrives "cross-site", and only a same-origin one pays.
        resp = _no_store(
            Response(
                render_template(
                    "wallet_signed_in.html",
                    target=target,
                    ecoin_id=signed_in.ecoin_id,
                    **_page_context(d),
                ),
                mimetype="text/html",
            )
        )
        _wallet_cookie(resp, WALLET_COOKIE, signed_in.handle, signed_in.max_age_s(now_ms), "/")
        resp.delete_cookie(
            _WALLET_STATE_COOKIE,
            path="/netpay/wallet",
            secure=not is_loopback_host(request.host),
            httponly=True,
            samesite="Lax",
        )
        return resp

    # -- the operator's dashboard ------------------------------------------------

    def disabled() -> Response:
        d = _deps()
        return _dashboard_response(
            render_template(
                "dashboard_disabled.html",
                password_file=PASSWORD_FILE,
                configured=data_dir is not None,
                **_page_context(d),
            ),
            403,
        )

    @app.get("/dashboard")
    def dashboard() -> Response:
        digest = load_password_hash(data_dir)
        if digest is None:
            return disabled()
        if not _logged_in(digest):
            return _see_other(url_for("login"))
        d = _deps()
        view = d.services.dashboard(clicks_limit=_RECENT_CLICKS, coins_limit=_COINS_SHOWN)
        titles = {a.article_id: d.newspaper.headline(a) for a in d.newspaper.articles}
        redemptions = d.services.redemption_history(limit=_RECENT_CLICKS)
        return _dashboard_response(
            render_template(
                "dashboard.html",
                view=view,
                redemptions=redemptions,
                titles=titles,
                states=VendorCoinState,
                csrf_token=csrf_token(),
                **_page_context(d),
            )
        )

    @app.route("/dashboard/login", methods=["GET", "POST"])
    def login() -> Response:
        digest = load_password_hash(data_dir)
        if digest is None:
            return disabled()
        if request.method == "GET":
            if _logged_in(digest):
                return _see_other(url_for("dashboard"))
            return _login_page()
        check_csrf()
        d = _deps()
        client = _client_address()
        now_ms = d.clock.now_ms()
        wait_s = _site().limiter.retry_after_s(client, now_ms)
        if wait_s:
            resp = _login_page(f"Too many wrong passwords. Try again in {wait_s} seconds.", 429)
            resp.headers["Retry-After"] = str(wait_s)
            return resp
        if not verify_password(digest, request.form.get("password", "")):
            _site().limiter.failed(client, now_ms)
            return _login_page("Wrong password.", 401)
        _site().limiter.succeeded(client)
        session.clear()
        session.permanent = True
        session["operator"] = password_tag(digest)  # a fresh CSRF token comes with the next form
        return _see_other(url_for("dashboard"))

    @app.post("/dashboard/logout")
    def logout() -> Response:
        if data_dir is None:
            abort(404)
        check_csrf()
        session.clear()
        return _see_other(url_for("login"))

    def _login_page(error: str | None = None, status: int = 200) -> Response:
        d = _deps()
        return _dashboard_response(
            render_template(
                "dashboard_login.html", error=error, csrf_token=csrf_token(), **_page_context(d)
            ),
            status,
        )

    return app
