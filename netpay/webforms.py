"""Form safety shared by the Flask sites (the broker portal, the vendor dashboard).

A CSRF token lives in the signed session; every form carries it in a hidden
field, and a POST whose token is missing or differs is refused with 400
before the view runs, so it changes nothing.
"""

from __future__ import annotations

import secrets

from flask import request, session
from werkzeug.exceptions import BadRequest

__all__ = ["CSRF_FIELD", "check_csrf", "csrf_token"]

CSRF_FIELD = "csrf_token"
_SESSION_KEY = "csrf"
_MAX_TOKEN_CHARS = 128


def csrf_token() -> str:
    """This session's CSRF token, made on first use."""
    token = session.get(_SESSION_KEY)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        session[_SESSION_KEY] = token
    return token


def check_csrf() -> None:
    """Raise 400 unless the form's token equals the session's."""
    expected = session.get(_SESSION_KEY)
    sent = request.form.get(CSRF_FIELD, "")
    if (
        not isinstance(expected, str)
        or not sent
        or len(sent) > _MAX_TOKEN_CHARS
        or not secrets.compare_digest(sent.encode(), expected.encode())
    ):
        raise BadRequest(
            "The form expired or did not come from this site. Reload it and try again."
        )
