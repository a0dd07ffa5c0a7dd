"""NetPayError -> HTTP answer, in one place.

A view that pays (an article, a window, a wallet sign-in) never shapes an
error itself: it says how its errors are answered with
:func:`answer_errors` (the article whose 402 challenge goes with them, the
window's challenge, JSON only for a script's call, a cookie to clear) and
lets the NetPayError rise. :func:`answer_error`, the error handler of every
blueprint made by :func:`paying_blueprint`, turns it into the answer
(pages.py renders it).
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Blueprint, Response, g

from netpay.errors import NetPayError, NotFound
from vendor.articles import Article
from vendor.web.common import Cookie, clear_cookie, deps, window_challenge
from vendor.web.pages import error_response, json_error

__all__ = ["ErrorAnswer", "answer_error", "answer_errors", "paying_blueprint"]

_CONTEXT = "netpay_error_answer"


@dataclass(frozen=True)
class ErrorAnswer:
    """How the current view's NetPayErrors are answered."""

    article: Article | None = None  # the page's article: its price, its 402 challenge
    window: bool = False  # the window's challenge (POST /netpay/window)
    json_only: bool = False  # a script's call: {"error", "detail"} whatever Accept says
    forget: Cookie | None = None  # the cookie to clear when the error is NotFound


def answer_errors(
    *,
    article: Article | None = None,
    window: bool = False,
    json_only: bool = False,
    forget: Cookie | None = None,
) -> None:
    """How a NetPayError raised from here on in this request is answered."""
    setattr(g, _CONTEXT, ErrorAnswer(article, window, json_only, forget))


def answer_error(err: NetPayError) -> Response:
    """The error handler: a NetPayError as the HTTP answer the view asked for."""
    how = getattr(g, _CONTEXT, None) or ErrorAnswer()
    if how.json_only:
        resp = json_error(err)
    else:
        d = deps()
        resp = error_response(d, err, how.article)
        if how.window:
            resp.headers["WWW-Authenticate"] = window_challenge(d)
    if how.forget is not None and isinstance(err, NotFound):
        clear_cookie(resp, how.forget)
    return resp


def paying_blueprint(name: str, import_name: str) -> Blueprint:
    """A blueprint whose views' NetPayErrors are answered by :func:`answer_error`."""
    bp = Blueprint(name, import_name)
    bp.register_error_handler(NetPayError, answer_error)
    return bp
