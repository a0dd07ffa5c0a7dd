"""Cookie-cache windows on the site (protocol.md, "Windows"; docs/protocol.md,
"Windows (choices)").

``POST /netpay/window`` pays a window with ``window="m"`` and sets the
``netpay_window`` cookie (HttpOnly, SameSite=Strict, Path=/, Max-Age, Secure
unless on a loopback host); an article requested with that cookie, no
Authorization header and ``Sec-Fetch-Site`` same-origin, none (typed URL,
bookmark) or absent is paid from the window (:func:`pay_from_window`, called
by the article view); ``POST /netpay/window/close`` closes it and returns
the signed WindowCredit.
"""

from __future__ import annotations

from flask import Response, jsonify, request

from netpay.encoding import b64url_encode
from netpay.errors import (
    BrokerUnavailable,
    CoinBusy,
    Expired,
    NetPayError,
    NotFound,
    PermissionDenied,
)
from vendor.articles import Article
from vendor.services import WindowOpened
from vendor.web.common import (
    WINDOW,
    WINDOW_HEADER,
    WebDeps,
    clear_cookie,
    deps,
    fetch_site_allowed,
    is_netpay,
    no_store,
    set_cookie,
    wants_json,
    window_challenge,
)
from vendor.web.errors import answer_errors, paying_blueprint
from vendor.web.pages import paid_response, payment_page, payment_required

__all__ = ["bp", "close_window", "open_window", "pay_from_window", "window_handle"]

bp = paying_blueprint("windows", __name__)

# Closing a window is a POST from the site's own script only.
_CLOSE_FETCH_SITES = frozenset({"same-origin"})
_HANDLE_MAX_CHARS = 64


def window_handle() -> str | None:
    """The ``netpay_window`` cookie, if it can be a handle."""
    handle = request.cookies.get(WINDOW.name)
    if not handle or len(handle) > _HANDLE_MAX_CHARS:
        return None
    return handle


def pay_from_window(d: WebDeps, article: Article, handle: str) -> Response:
    """An article paid from the window; a window that cannot pay is ignored
    (the normal 402 challenge, nothing consumed)."""
    try:
        result = d.services.pay_from_window(handle, article.item(), d.clock.now_ms())
    except (CoinBusy, BrokerUnavailable):
        raise  # answered as the article's error
    except NetPayError as err:
        resp = payment_required(d, article, f"The window did not pay: {err.detail}")
        if isinstance(err, NotFound | Expired):
            clear_cookie(resp, WINDOW)  # the window is gone for good
        return resp
    resp = paid_response(d, article, result)
    resp.headers[WINDOW_HEADER] = str(result.words_left)
    return resp


def _window_required(d: WebDeps) -> Response:
    detail = 'A window is opened with a NetPay payment marked window="m".'
    if wants_json():
        resp = jsonify(error="payment_required", detail=detail)
    else:
        resp = Response(
            payment_page(d, code="payment_required", detail=detail, article=None),
            mimetype="text/html",
        )
    resp.status_code = 402
    resp.headers["WWW-Authenticate"] = window_challenge(d)
    return no_store(resp)


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
    set_cookie(resp, WINDOW, opened.handle, opened.max_age_s(now_ms))
    return no_store(resp)


@bp.post("/netpay/window")
def open_window() -> Response:
    d = deps()
    auth = request.headers.get("Authorization")
    if not is_netpay(auth):
        return _window_required(d)
    assert auth is not None
    answer_errors(window=True)
    now_ms = d.clock.now_ms()
    opened = d.services.open_window(auth, now_ms)
    return _window_opened(opened, now_ms)


@bp.post("/netpay/window/close")
def close_window() -> Response:
    d = deps()
    answer_errors(json_only=True)
    if not fetch_site_allowed(_CLOSE_FETCH_SITES):
        raise PermissionDenied("a window is closed from its own site only")
    handle = window_handle()
    if handle is None:
        raise NotFound("no window cookie")
    answer_errors(json_only=True, forget=WINDOW)
    closed = d.services.close_window(handle, d.clock.now_ms())
    resp = jsonify(
        window_credit=b64url_encode(closed.credit.SerializeToString()),
        refund_units=closed.refund_units,
    )
    clear_cookie(resp, WINDOW)
    return no_store(resp)
