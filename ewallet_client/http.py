"""The wallet's HTTP side: bounded requests and the vendor's error bodies.

Every request has a timeout, never follows a redirect (a payment goes to the
certified origin only), and reads at most ``MAX_BODY_BYTES``. The wallet's
session keeps no cookies (:func:`no_cookies`): a window handle is sent only
explicitly, to the origin that issued it — a cookie jar would send a
127.0.0.1 cookie to every port.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.cookiejar import Cookie, DefaultCookiePolicy
from typing import Any

import requests

from netpay.chain import MAX_CHAIN_UNITS, SEEN_BYTES
from netpay.encoding import b64url_exact
from netpay.errors import InvalidArgument, NetPayError, Unavailable, error_for_code

__all__ = [
    "MAX_BODY_BYTES",
    "TIMEOUT_S",
    "HttpResponse",
    "error_from_response",
    "get",
    "no_cookies",
    "post",
    "request",
    "retry_after_s",
    "set_cookie_value",
]

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_ERROR_BODY_BYTES = 64 * 1024
TIMEOUT_S = 10.0
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]  # case-insensitive (requests' CaseInsensitiveDict)
    body: bytes
    set_cookies: tuple[str, ...] = field(default=(), repr=False)  # each Set-Cookie

    @property
    def content_type(self) -> str:
        return self.headers.get("Content-Type", "")


class _RefuseAll(DefaultCookiePolicy):
    """Store no cookie, send no cookie."""

    def set_ok(self, cookie: Cookie, request: Any) -> bool:
        return False

    def return_ok(self, cookie: Cookie, request: Any) -> bool:
        return False


def no_cookies(session: requests.Session) -> requests.Session:
    """Make ``session`` keep and send no cookies (headers given explicitly still go)."""
    session.cookies.set_policy(_RefuseAll())
    session.cookies.clear()
    return session


def set_cookie_value(resp: HttpResponse, name: str) -> str | None:
    """The value the response's ``Set-Cookie`` gives cookie ``name`` (the last one)."""
    value = None
    for line in resp.set_cookies:
        pair = line.split(";", 1)[0]
        key, sep, raw = pair.partition("=")
        if sep and key.strip() == name:
            value = raw.strip().strip('"')
    return value


def get(
    session: requests.Session,
    url: str,
    headers: Mapping[str, str],
    *,
    timeout_s: float = TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
) -> HttpResponse:
    """GET ``url`` without redirects; the whole exchange takes at most ``timeout_s``."""
    return request(session, "GET", url, headers, timeout_s=timeout_s, max_bytes=max_bytes)


def post(
    session: requests.Session,
    url: str,
    headers: Mapping[str, str],
    *,
    timeout_s: float = TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
) -> HttpResponse:
    """POST ``url`` with no body, without redirects (:func:`request`)."""
    return request(session, "POST", url, headers, timeout_s=timeout_s, max_bytes=max_bytes)


def request(
    session: requests.Session,
    method: str,
    url: str,
    headers: Mapping[str, str],
    *,
    timeout_s: float = TIMEOUT_S,
    max_bytes: int = MAX_BODY_BYTES,
) -> HttpResponse:
    """One request without redirects; the whole exchange takes at most ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    try:
        with session.request(
            method,
            url,
            headers=dict(headers),
            timeout=timeout_s,
            stream=True,
            allow_redirects=False,
        ) as resp:
            length = resp.headers.get("Content-Length", "")
            if length.isdigit() and int(length) > max_bytes:
                raise InvalidArgument(f"response larger than {max_bytes} bytes")
            body = bytearray()
            for chunk in resp.iter_content(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise InvalidArgument(f"response larger than {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise Unavailable(f"response took longer than {timeout_s:g} s")
            raw_headers = getattr(resp.raw, "headers", None)
            cookies = tuple(raw_headers.getlist("Set-Cookie")) if raw_headers is not None else ()
            return HttpResponse(resp.status_code, resp.headers, bytes(body), cookies[:16])
    except requests.RequestException as exc:
        raise Unavailable(f"cannot reach {url[:200]}: {type(exc).__name__}") from None


def retry_after_s(resp: HttpResponse, cap_s: float) -> float:
    """The vendor's Retry-After (delay-seconds form), capped; 1 s when absent."""
    raw = resp.headers.get("Retry-After", "").strip()
    if raw.isdigit() and len(raw) <= 6:
        return float(min(int(raw), cap_s))
    return min(1.0, cap_s)


def error_from_response(resp: HttpResponse) -> NetPayError:
    """The typed error a vendor's error answer stands for.

    The JSON body is ``{"error": code, "detail": text[, "index": int,
    "seen": base64url]}`` (``seen`` = SHA-256("NP1-seen" || w[index]), never a
    word); an unparsable body gives a generic error.
    """
    obj: object = None
    if len(resp.body) <= MAX_ERROR_BODY_BYTES:
        try:
            obj = json.loads(resp.body)
        except ValueError:
            obj = None
    if not isinstance(obj, dict) or not isinstance(obj.get("error"), str):
        return NetPayError(f"vendor answered HTTP {resp.status} without a NetPay error body")
    code = obj["error"][:64]
    detail_raw = obj.get("detail")
    detail = detail_raw[:500] if isinstance(detail_raw, str) else ""
    index_raw = obj.get("index")
    index = (
        index_raw
        if isinstance(index_raw, int)
        and not isinstance(index_raw, bool)
        and 0 <= index_raw <= MAX_CHAIN_UNITS
        else None
    )
    retry = resp.headers.get("Retry-After", "").strip()
    cls = error_for_code(code)
    if cls is NetPayError:
        detail = f"{code}: {detail}" if detail else code
    return cls(
        detail or f"vendor answered HTTP {resp.status}",
        index=index,
        seen=b64url_exact(obj.get("seen"), SEEN_BYTES),
        retry_after_s=int(retry) if retry.isdigit() and len(retry) <= 6 else None,
    )
