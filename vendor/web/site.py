"""The newspaper itself: the front page and the articles, with the paid click.

``GET /articles/<id>`` serves a free article, or a paid one once
``VendorServices.pay`` has committed its spend (the Authorization header),
or pays it from the reader's window or server-side wallet cookie (windows.py,
wallet.py); otherwise it answers 402 with the challenge.
"""

from __future__ import annotations

from flask import Response, render_template, request

from netpay.errors import NotFound
from vendor.web.common import cookie_click_allowed, deps, is_netpay, page_context
from vendor.web.errors import answer_errors, paying_blueprint
from vendor.web.pages import paid_response, payment_required
from vendor.web.wallet import pay_with_wallet, wallet_handle
from vendor.web.windows import pay_from_window, window_handle

__all__ = ["article", "bp", "index"]

bp = paying_blueprint("site", __name__)


@bp.get("/")
def index() -> str:
    return render_template("index.html", **page_context(deps()))


@bp.get("/articles/<article_id>")
def article(article_id: str) -> Response:
    d = deps()
    found = d.newspaper.article(article_id[:64])
    if found is None:
        raise NotFound(f"no article {article_id[:64]!r}")
    if found.is_free:
        return Response(
            render_template("article.html", article=found, paid=None, **page_context(d)),
            mimetype="text/html",
        )
    answer_errors(article=found)
    auth = request.headers.get("Authorization")
    if request.method != "GET" or not is_netpay(auth):
        handle = window_handle()
        if request.method == "GET" and handle is not None and cookie_click_allowed():
            return pay_from_window(d, found, handle)
        wallet = wallet_handle()
        if request.method == "GET" and wallet is not None and cookie_click_allowed():
            return pay_with_wallet(d, found, wallet)
        return payment_required(d, found)
    assert auth is not None
    result = d.services.pay(auth, found.item(), d.clock.now_ms())
    return paid_response(d, found, result)
