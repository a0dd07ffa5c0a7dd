"""The newspaper web site (Flask): articles, the 402 challenge, paid clicks.

Views only translate: a paid click calls ``VendorServices.pay`` in process
and maps a NetPayError to its HTTP answer (the one HTTP boundary of the
error tree). Bodies are negotiated on ``Accept``: JSON for API clients, HTML
for browsers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Flask, Response, jsonify, render_template, request, url_for

from netpay.clock import Clock
from netpay.encoding import b64url_encode
from netpay.errors import CoinBusy, NetPayError, NotFound
from netpay.header import Challenge, format_challenge
from vendor.articles import Article, Newspaper
from vendor.services import VendorServices

__all__ = ["BALANCE_HEADER", "RECEIPT_HEADER", "WebDeps", "create_app"]

RECEIPT_HEADER = "NetPay-Receipt"
BALANCE_HEADER = "NetPay-Balance"
_EXTENSION = "netpay_vendor"


@dataclass(frozen=True)
class WebDeps:
    services: VendorServices
    newspaper: Newspaper
    clock: Clock


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


def _deps() -> WebDeps:
    from flask import current_app

    holder = current_app.extensions[_EXTENSION]
    assert isinstance(holder, _Deps)
    return holder.get()


def _wants_json() -> bool:
    return request.accept_mimetypes.best_match(["text/html", "application/json"]) == (
        "application/json"
    )


def _page_context(deps: WebDeps) -> dict[str, Any]:
    return {
        "paper": deps.newspaper,
        "vendor_id": deps.services.vendor_id,
        "broker_id": deps.services.broker_id,
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
    resp.headers["Vary"] = "Accept, Authorization"
    return resp


def _payment_required(deps: WebDeps, article: Article) -> Response:
    detail = f"This article costs {article.price}. Pay with NetPay."
    if _wants_json():
        resp = jsonify(
            error="payment_required",
            detail=detail,
            amount=article.amount_minor,
            currency=article.currency,
        )
    else:
        resp = Response(
            render_template(
                "payment.html",
                heading="Payment required",
                article=article,
                code="payment_required",
                detail=detail,
                index=None,
                **_page_context(deps),
            ),
            mimetype="text/html",
        )
    resp.status_code = 402
    resp.headers["WWW-Authenticate"] = _challenge(deps, article)
    return _no_store(resp)


def _error(deps: WebDeps, err: NetPayError, article: Article | None) -> Response:
    if _wants_json():
        body: dict[str, Any] = {"error": err.code, "detail": err.detail}
        if err.index is not None:
            body["index"] = err.index
        if err.payword is not None:
            body["payword"] = b64url_encode(err.payword)
        resp = jsonify(body)
    else:
        resp = Response(
            render_template(
                "payment.html",
                heading="Not found" if isinstance(err, NotFound) else "Payment not accepted",
                article=article,
                code=err.code,
                detail=err.detail,
                index=err.index,
                **_page_context(deps),
            ),
            mimetype="text/html",
        )
    resp.status_code = err.http_status
    if article is not None and not article.is_free:
        resp.headers["WWW-Authenticate"] = _challenge(deps, article)
    if isinstance(err, CoinBusy):
        resp.headers["Retry-After"] = str(err.retry_after_s or 1)
    return _no_store(resp)


def _is_netpay(auth: str | None) -> bool:
    if not auth or not auth.strip():
        return False
    return auth.strip().split(None, 1)[0].lower() == "netpay"


def create_app(deps: WebDeps | Callable[[], WebDeps]) -> Flask:
    """The newspaper site; ``deps`` may be a factory called on first request."""
    app = Flask(__name__)
    app.extensions[_EXTENSION] = _Deps(deps)
    app.json.sort_keys = False  # type: ignore[attr-defined]

    @app.get("/healthz")
    def healthz() -> Response:
        d = _deps()
        return jsonify(status="ok", vendor_id=d.services.vendor_id)

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
                render_template("article.html", article=found, words_left=None, **_page_context(d)),
                mimetype="text/html",
            )
        auth = request.headers.get("Authorization")
        if request.method != "GET" or not _is_netpay(auth):
            return _payment_required(d, found)
        assert auth is not None
        try:
            result = d.services.pay(auth, found.item(), d.clock.now_ms())
        except NetPayError as err:
            return _error(d, err, found)
        resp = Response(
            render_template(
                "article.html", article=found, words_left=result.words_left, **_page_context(d)
            ),
            mimetype="text/html",
        )
        resp.headers[RECEIPT_HEADER] = b64url_encode(result.receipt)
        resp.headers[BALANCE_HEADER] = str(result.words_left)
        return _no_store(resp)

    return app
