"""Server-side wallets on the site (docs/protocol.md, "Server-side wallets at
the vendor (choices)").

``GET /netpay/wallet/signin?next=/path`` sends the reader to the broker
portal's sign-in; ``GET /netpay/wallet/return`` exchanges the
``netpay_code`` for a WalletGrant and sets the ``netpay_wallet`` cookie
(HttpOnly, SameSite=Lax, Path=/, Secure unless on a loopback host); an
article requested with it (no Authorization header, no window cookie,
``Sec-Fetch-Site`` same-origin, none or absent) is paid from the wallet
(:func:`pay_with_wallet`, called by the article view).
"""

from __future__ import annotations

import secrets
from urllib.parse import urlencode, urlsplit

from flask import Response, render_template, request

from netpay.encoding import b64url_encode
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
from vendor.articles import Article
from vendor.web.common import (
    WALLET,
    WALLET_STATE,
    WINDOW_HEADER,
    WebDeps,
    clear_cookie,
    deps,
    no_store,
    page_context,
    set_cookie,
)
from vendor.web.errors import paying_blueprint
from vendor.web.pages import paid_response, payment_required

__all__ = ["bp", "pay_with_wallet", "wallet_handle", "wallet_return", "wallet_signin"]

bp = paying_blueprint("wallet", __name__)

_WALLET_STATE_MAX_AGE_S = 600
_NEXT_MAX_CHARS = 512
_HANDLE_MAX_CHARS = 64


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


def wallet_handle() -> str | None:
    """The ``netpay_wallet`` cookie, if it can be a handle."""
    handle = request.cookies.get(WALLET.name)
    if not handle or len(handle) > _HANDLE_MAX_CHARS:
        return None
    return handle


def pay_with_wallet(d: WebDeps, article: Article, handle: str) -> Response:
    """An article paid by the server-side wallet; a session that cannot pay is
    the normal 402 challenge (nothing spent)."""
    try:
        result = d.services.pay_with_wallet(handle, article.item(), d.clock.now_ms())
    except (CoinBusy, BrokerUnavailable, LimitExceeded):
        raise  # answered as the article's error; a spending limit says why in its own words
    except NetPayError as err:
        resp = payment_required(d, article, f"Your wallet did not pay: {err.detail}")
        if isinstance(err, NotFound | Expired):
            clear_cookie(resp, WALLET)
        return resp
    resp = paid_response(d, article, result)
    if result.window_words_left is not None:
        resp.headers[WINDOW_HEADER] = str(result.window_words_left)
    return resp


@bp.get("/netpay/wallet/signin")
def wallet_signin() -> Response:
    d = deps()
    target = _local_path(request.args.get("next"))
    if not d.portal_url or not d.web_origin:
        raise NotFound("this newspaper's broker has no wallet sign-in")
    state = b64url_encode(secrets.token_bytes(16))
    query = urlencode({"next": target, "state": state})
    return_to = d.web_origin + "/netpay/wallet/return?" + query
    location = (
        d.portal_url.rstrip("/")
        + "/wallet/signin?"
        + urlencode({"vendor": d.services.vendor_id, "return_to": return_to})
    )
    resp = no_store(Response("", 303))
    resp.headers["Location"] = location
    set_cookie(resp, WALLET_STATE, state, _WALLET_STATE_MAX_AGE_S)
    return resp


@bp.get("/netpay/wallet/return")
def wallet_return() -> Response:
    d = deps()
    target = _local_path(request.args.get("next"))
    code = request.args.get("netpay_code")
    if not code:
        # The reader cancelled at the broker: back where they were.
        resp = no_store(Response("", 303))
        resp.headers["Location"] = target
        return resp
    state = request.args.get("state", "")
    expected = request.cookies.get(WALLET_STATE.name, "")
    if not state or not expected or not secrets.compare_digest(state, expected):
        raise PermissionDenied("this sign-in was not started from this browser")
    now_ms = d.clock.now_ms()
    signed_in = d.services.wallet_signin(code, now_ms)
    # A page that moves on by itself, not a redirect: a navigation redirected
    # from the broker arrives "cross-site", and only a same-origin one pays.
    resp = no_store(
        Response(
            render_template(
                "wallet_signed_in.html",
                target=target,
                ecoin_id=signed_in.ecoin_id,
                **page_context(d),
            ),
            mimetype="text/html",
        )
    )
    set_cookie(resp, WALLET, signed_in.handle, signed_in.max_age_s(now_ms))
    clear_cookie(resp, WALLET_STATE)
    return resp
