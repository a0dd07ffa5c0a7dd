"""The wallet's plain rules: coin choice, origins, states, vendor error bodies."""

from __future__ import annotations

import json

import pytest
from requests.structures import CaseInsensitiveDict

from ewallet_client.domain import (
    CoinEvent,
    CoinState,
    CoinView,
    check_origin,
    choose_coin,
    origin_of,
    transition,
)
from ewallet_client.http import HttpResponse, error_from_response, retry_after_s
from netpay.encoding import b64url_encode
from netpay.errors import (
    AlreadySpent,
    CoinBusy,
    Insufficient,
    InvalidArgument,
    NetPayError,
    PermissionDenied,
    PreconditionFailed,
)

NOW = 1_800_000_000_000


def _coin(ecoin: str, *, index: int = 0, n: int = 100, u: int = 1, **kw: object) -> CoinView:
    fields: dict[str, object] = {
        "ecoin_id": ecoin * 32,
        "state": CoinState.ACTIVE,
        "n": n,
        "unit_value_minor": u,
        "currency": "EUR",
        "index": index,
        "accepted_index": index,
        "expires_at_ms": NOW + 10**9,
        "last_vendor": None,
        "created_at_ms": 1,
    }
    fields.update(kw)
    return CoinView(**fields)  # type: ignore[arg-type]


def _choose(coins: list[CoinView], amount: int = 5, realm: str = "daily") -> tuple[str, int]:
    coin, words = choose_coin(
        coins, amount_minor=amount, currency="EUR", realm=realm, now_ms=NOW, skew_ms=5000
    )
    return coin.ecoin_id[0], words


def test_the_coin_the_vendor_holds_comes_first() -> None:
    coins = [_coin("a"), _coin("b", last_vendor="daily"), _coin("c", last_vendor="other")]
    assert _choose(coins) == ("b", 5)
    assert _choose(coins, realm="other") == ("c", 5)
    assert _choose(coins, realm="new") == ("a", 5)


def test_a_coin_needs_words_currency_unit_and_time() -> None:
    assert _choose([_coin("a", index=96), _coin("b", index=95)]) == ("b", 5)
    assert _choose([_coin("a", u=2), _coin("b", u=5)], amount=10) == ("a", 5)
    with pytest.raises(Insufficient):
        _choose([_coin("a", u=3)], amount=10)
    with pytest.raises(Insufficient):
        _choose([_coin("a", currency="USD")])
    with pytest.raises(Insufficient):
        _choose([_coin("a", expires_at_ms=NOW + 4000)])  # inside the skew
    with pytest.raises(Insufficient):
        _choose([_coin("a", state=CoinState.PENDING)])
    with pytest.raises(InvalidArgument):
        _choose([_coin("a")], amount=0)


def test_transitions() -> None:
    assert transition(CoinState.PENDING, CoinEvent.SOLD) is CoinState.ACTIVE
    assert transition(CoinState.PENDING, CoinEvent.REFUSED) is CoinState.ABANDONED
    for state in (CoinState.ACTIVE, CoinState.ABANDONED):
        for event in CoinEvent:
            with pytest.raises(PreconditionFailed):
                transition(state, event)


def test_origins() -> None:
    assert origin_of("http://127.0.0.1:8001/articles/1?x=1") == "http://127.0.0.1:8001"
    assert origin_of("HTTPS://News.Example/a") == "https://news.example:443"
    assert origin_of("http://[::1]/a") == "http://[::1]:80"
    for bad in ("ftp://x/", "http:///nohost", "http://h:99999/", "x" * 9000):
        with pytest.raises(InvalidArgument):
            origin_of(bad)
    check_origin("http://127.0.0.1:8001/articles/1", "http://127.0.0.1:8001")
    check_origin("https://news.example/a", "https://news.example:443")
    with pytest.raises(PermissionDenied):
        check_origin("http://127.0.0.1:8002/a", "http://127.0.0.1:8001")
    with pytest.raises(PermissionDenied):
        check_origin("http://localhost:8001/a", "http://127.0.0.1:8001")
    with pytest.raises(PermissionDenied, match="plain HTTP"):
        check_origin("http://news.example/a", "http://news.example")


def _resp(status: int, body: object, **headers: str) -> HttpResponse:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return HttpResponse(status, CaseInsensitiveDict(headers), raw)


def test_vendor_error_bodies() -> None:
    # 1.1: {"error", "detail", "index", "seen"}; seen = SHA-256("NP1-seen" || w[index]).
    seen = b"\x05" * 32
    err = error_from_response(
        _resp(
            409,
            {"error": "already_spent", "detail": "d", "index": 7, "seen": b64url_encode(seen)},
        )
    )
    assert isinstance(err, AlreadySpent) and (err.index, err.seen) == (7, seen)
    # out-of-range or badly typed fields are dropped, not trusted
    for bad_seen in ("!!", b64url_encode(seen[:31]), b64url_encode(seen + b"x"), 7, None):
        err = error_from_response(
            _resp(409, {"error": "already_spent", "index": 2**40, "seen": bad_seen})
        )
        assert isinstance(err, AlreadySpent) and err.index is None and err.seen is None
    # a 1.0 body's word is not read at all
    err = error_from_response(
        _resp(409, {"error": "already_spent", "index": 7, "payword": b64url_encode(seen)})
    )
    assert (err.index, err.seen) == (7, None) and not hasattr(err, "payword")
    err = error_from_response(_resp(409, {"error": "already_spent", "index": True}))
    assert err.index is None
    busy = error_from_response(_resp(409, {"error": "coin_busy"}, **{"Retry-After": "3"}))
    assert isinstance(busy, CoinBusy) and busy.retry_after_s == 3
    other = error_from_response(_resp(500, b"<html>oops</html>"))
    assert type(other) is NetPayError and "HTTP 500" in other.detail
    unknown = error_from_response(_resp(402, {"error": "payment_required", "detail": "pay"}))
    assert type(unknown) is NetPayError and "payment_required" in unknown.detail
    assert retry_after_s(_resp(409, {}, **{"Retry-After": "30"}), 5) == 5
    assert retry_after_s(_resp(409, {}, **{"Retry-After": "Wed, 21 Oct 2015"}), 5) == 1


def test_http_get_is_bounded(vendor: object) -> None:
    import requests

    from ewallet_client import http

    url = f"{vendor.url}/free"  # type: ignore[attr-defined]
    with requests.Session() as s:
        assert http.get(s, url, {}).body == b"free text"
        with pytest.raises(InvalidArgument, match="larger than 4 bytes"):
            http.get(s, url, {}, max_bytes=4)
        with pytest.raises(NetPayError) as info:
            http.get(s, "http://127.0.0.1:1/x", {}, timeout_s=2)
        assert info.value.code == "unavailable"
