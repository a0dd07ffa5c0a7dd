"""The site's payment pages: the 402 challenge, the paid article, and the
answer to a payment that did not go through.

Bodies are negotiated on ``Accept``: JSON for API clients (the protocol's
shape), an HTML page for browsers that says what happened and what the
reader can do. :func:`error_response` and :func:`json_error` are called by
the one error handler (errors.py), never by a view.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Response, jsonify, render_template

from netpay.encoding import b64url_encode
from netpay.errors import CoinBusy, NetPayError
from vendor.articles import Article
from vendor.services import PaymentResult
from vendor.web.common import (
    BALANCE_HEADER,
    RECEIPT_HEADER,
    WebDeps,
    challenge,
    format_money,
    no_store,
    page_context,
    wants_html,
    wants_json,
)

__all__ = ["error_response", "json_error", "paid_response", "payment_page", "payment_required"]


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


def payment_page(
    d: WebDeps,
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
        **page_context(d),
    )


def payment_required(d: WebDeps, article: Article, detail: str | None = None) -> Response:
    detail = detail or f"This article costs {article.price}. Pay with NetPay."
    if wants_json():
        resp = jsonify(
            error="payment_required",
            detail=detail,
            amount=article.amount_minor,
            currency=article.currency,
        )
    else:
        resp = Response(
            payment_page(d, code="payment_required", detail=detail, article=article),
            mimetype="text/html",
        )
    resp.status_code = 402
    resp.headers["WWW-Authenticate"] = challenge(d, article)
    return no_store(resp)


def error_response(d: WebDeps, err: NetPayError, article: Article | None) -> Response:
    retry_after_s = (err.retry_after_s or 1) if isinstance(err, CoinBusy) else None
    if wants_json():
        body: dict[str, Any] = {"error": err.code, "detail": err.detail}
        if err.index is not None:
            body["index"] = err.index
        if err.seen is not None:
            body["seen"] = b64url_encode(err.seen)  # never a word (protocol.md 1.1, change 1)
        resp = jsonify(body)
    else:
        resp = Response(
            payment_page(
                d,
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
        resp.headers["WWW-Authenticate"] = challenge(d, article)
    if retry_after_s is not None:
        resp.headers["Retry-After"] = str(retry_after_s)
    return no_store(resp)


def json_error(err: NetPayError) -> Response:
    resp = jsonify(error=err.code, detail=err.detail)
    resp.status_code = err.http_status
    if isinstance(err, CoinBusy):
        resp.headers["Retry-After"] = str(err.retry_after_s or 1)
    return no_store(resp)


def paid_response(d: WebDeps, article: Article, result: PaymentResult) -> Response:
    """The article, paid: its Receipt and the reader's balance in the headers."""
    # Window credit on its way back to the reader (a hand-off closed a window
    # elsewhere): one more read, made only for a browser's page.
    returning = d.services.refund_pending(result.ecoin_id) if wants_html() else None
    resp = Response(
        render_template(
            "article.html",
            article=article,
            paid=result,
            returning=returning,
            **page_context(d),
        ),
        mimetype="text/html",
    )
    resp.headers[RECEIPT_HEADER] = b64url_encode(result.receipt)
    resp.headers[BALANCE_HEADER] = str(result.words_left)
    return no_store(resp)
