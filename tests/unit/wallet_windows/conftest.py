"""Fakes for the wallet-window unit tests: a broker and a newspaper with windows.

The fake broker is in process (the wallet's ``broker_factory``) and signs
touchstones and vendor certificates; it is the one of tests/unit/wallet,
shared through ``tests/unit/wallet/fakes.py`` (with the werkzeug ``Server``).
The fake vendor is a Flask app served by
werkzeug on 127.0.0.1:0 that implements the window contract
(/tmp/window-contract.md) closely enough for the wallet, with the real
codecs (``netpay.header``) and hash chain (``netpay.chain``):

* ``GET /articles/<id>``: 402 with the challenge; a NetPay header pays one
  click; the cookie ``netpay_window`` (and no Authorization) pays from the
  window, with a signed Receipt inside it;
* ``POST /netpay/window``: 402 without a header; with ``window="m"`` the
  spend of (p, p+m] and a window with a random 32-byte handle cookie;
* ``POST /netpay/window/close``: a signed WindowCredit for the rest.

Tests can tamper with what it signs, or refuse clicks, to show the wallet
checks.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, request

from ewallet_client.wallet import Wallet
from netpay.chain import verify_word
from netpay.clock import FakeClock
from netpay.encoding import b64url_encode
from netpay.envelope import SigningKey, seal
from netpay.errors import Malformed
from netpay.header import Challenge, format_challenge, parse_authorization
from netpay.limits import DEFAULT_LIMITS
from netpay.v1 import statements_pb2 as pb
from tests.unit.wallet.fakes import FakeBroker, Server, json_response

__all__ = ["FakeBroker", "FakeVendor", "FakeWindow"]  # the tests import them from here

WINDOW_TTL_MS = DEFAULT_LIMITS.window_ttl_s * 1000


@dataclass
class FakeWindow:
    handle_sha256: bytes
    ecoin_id: str
    window_from: int
    window_top: int
    consumed: int
    unit_value: int
    currency: str
    expires_at_ms: int
    open: bool = True
    clicks: dict[str, str] = field(default_factory=dict)  # item -> receipt header


@dataclass
class FakeVendor:
    """A newspaper selling /articles/<id> for ``price_minor`` with windows."""

    broker: FakeBroker
    vendor_id: str = "daily"
    price_minor: int = 5
    currency: str = "EUR"
    epoch: int = 7
    key: SigningKey = field(default_factory=SigningKey.generate)
    coins: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # id -> (index, word)
    windows: list[FakeWindow] = field(default_factory=list)
    window_headers: dict[str, tuple[str, str]] = field(default_factory=dict)  # header -> answer
    requests: list[dict[str, str]] = field(default_factory=list)  # headers of every request
    paid_clicks: int = 0
    window_clicks: int = 0
    # Tamper hooks: change a window answer, a window receipt or a credit before signing.
    tamper_window: dict[str, Any] = field(default_factory=dict)
    tamper_receipt: dict[str, Any] = field(default_factory=dict)
    tamper_credit: dict[str, Any] = field(default_factory=dict)
    sign_with: SigningKey | None = None
    refuse_window_clicks: bool = False
    no_cookie: bool = False
    url: str = ""

    def challenge(self, amount: int | None = None) -> dict[str, str]:
        ch = Challenge(
            realm=self.vendor_id,
            amount_minor=amount or self.price_minor,
            currency=self.currency,
            broker=self.broker.broker_id,
        )
        return {"WWW-Authenticate": format_challenge(ch)}

    def payment_required(self, amount: int | None = None) -> Response:
        return json_response(
            402,
            {
                "error": "payment_required",
                "detail": "pay",
                "amount": amount or self.price_minor,
                "currency": self.currency,
            },
            self.challenge(amount),
        )

    def error(self, status: int, code: str, ecoin_id: str | None = None) -> Response:
        body: dict[str, object] = {"error": code, "detail": f"fake vendor: {code}"}
        if ecoin_id is not None and ecoin_id in self.coins:
            index, word = self.coins[ecoin_id]
            body["index"] = index
            body["payword"] = b64url_encode(word)
        return json_response(status, body, self.challenge())

    def _receipt(self, ecoin_id: str, frm: int, to: int, amount: int, item: str) -> str:
        fields: dict[str, Any] = {
            "vendor_id": self.vendor_id,
            "ecoin_id": ecoin_id,
            "epoch": self.epoch,
            "from_index": frm,
            "to_index": to,
            "amount_minor": amount,
            "currency": self.currency,
            "item_id": item,
            "time_ms": self.broker.clock.now_ms(),
        }
        return b64url_encode(
            seal(pb.Receipt(**fields), self.sign_with or self.key).SerializeToString()
        )

    def _spend(self, auth: str, words: int | None) -> tuple[Any, Response | None]:
        """Check a header and move the coin; ``words`` None: a window (any m)."""
        try:
            cred = parse_authorization(auth)
        except Malformed as exc:
            return None, json_response(400, {"error": "malformed", "detail": exc.detail})
        ts = self.broker.coins.get(cred.ecoin_id)
        if ts is None:
            return None, self.error(402, "bad_payword")
        index, word = self.coins.get(cred.ecoin_id, (0, ts.root))
        step = cred.index - cred.prev
        if words is None:
            if cred.window is None or cred.window != step or not 1 <= step <= 500:
                return None, self.error(402, "wrong_amount", cred.ecoin_id)
        elif cred.window is not None:
            return None, json_response(
                400, {"error": "malformed", "detail": "window on an article"}
            )
        elif step != words:
            return None, self.error(402, "wrong_amount", cred.ecoin_id)
        if cred.prev < index:
            return None, self.error(409, "already_spent", cred.ecoin_id)
        if not verify_word(cred.ecoin_bytes, index, word, cred.index, cred.payword, step + 1000):
            return None, self.error(402, "bad_payword")
        self.coins[cred.ecoin_id] = (cred.index, cred.payword)
        return (cred, ts), None

    def article(self, item: str) -> Response:
        self.requests.append(dict(request.headers))
        auth = request.headers.get("Authorization")
        handle = request.cookies.get("netpay_window")
        if auth:
            words = self.price_minor  # unit value 1 in these tests
            spent, refused = self._spend(auth, words)
            if refused is not None:
                return refused
            cred, ts = spent
            self.paid_clicks += 1
            receipt = self._receipt(cred.ecoin_id, cred.prev, cred.index, self.price_minor, item)
            return self.serve(item, receipt, ts.n - cred.index)
        if handle and request.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin":
            w = self.find(handle)
            if w is not None and w.open and not self.refuse_window_clicks:
                if item in w.clicks:
                    return self.serve(item, w.clicks[item], w.window_top - w.consumed)
                words = self.price_minor // w.unit_value
                if w.consumed + words <= w.window_top:
                    frm, w.consumed = w.consumed, w.consumed + words
                    self.window_clicks += 1
                    fields = {"frm": frm, "to": w.consumed, "amount": self.price_minor}
                    fields.update(self.tamper_receipt)
                    receipt = self._receipt(
                        w.ecoin_id, fields["frm"], fields["to"], fields["amount"], item
                    )
                    w.clicks[item] = receipt
                    return self.serve(item, receipt, w.window_top - w.consumed)
        return self.payment_required()

    def find(self, handle: str) -> FakeWindow | None:
        digest = hashlib.sha256(handle.encode()).digest()
        for w in self.windows:
            if secrets.compare_digest(w.handle_sha256, digest):
                return w
        return None

    def open_window(self) -> Response:
        self.requests.append(dict(request.headers))
        auth = request.headers.get("Authorization")
        if not auth:
            return self.payment_required(1)
        if auth in self.window_headers:  # a retry: the same window, nothing spent
            body, handle = self.window_headers[auth]
            return self.window_answer(json.loads(body), handle)
        spent, refused = self._spend(auth, None)
        if refused is not None:
            return refused
        cred, ts = spent
        for old in self.windows:
            if old.ecoin_id == cred.ecoin_id and old.open:
                old.open = False
        handle = b64url_encode(secrets.token_bytes(32))
        now = self.broker.clock.now_ms()
        w = FakeWindow(
            handle_sha256=hashlib.sha256(handle.encode()).digest(),
            ecoin_id=cred.ecoin_id,
            window_from=cred.prev,
            window_top=cred.index,
            consumed=cred.prev,
            unit_value=ts.unit_value_minor,
            currency=ts.currency,
            expires_at_ms=now + WINDOW_TTL_MS,
        )
        self.windows.append(w)
        body: dict[str, Any] = {
            "vendor_id": self.vendor_id,
            "ecoin_id": cred.ecoin_id,
            "epoch": self.epoch,
            "window_from": cred.prev,
            "window_top": cred.index,
            "units": cred.index - cred.prev,
            "words_left": cred.index - cred.prev,
            "unit_value": ts.unit_value_minor,
            "currency": ts.currency,
            "expires_at_ms": w.expires_at_ms,
        }
        body.update(self.tamper_window)
        self.window_headers[auth] = (json.dumps(body), handle)
        return self.window_answer(body, handle)

    def window_answer(self, body: dict[str, Any], handle: str) -> Response:
        resp = json_response(200, body)
        if not self.no_cookie:
            resp.headers["Set-Cookie"] = (
                f"netpay_window={handle}; HttpOnly; SameSite=Strict; Path=/; "
                f"Max-Age={WINDOW_TTL_MS // 1000}"
            )
        return resp

    def close_window(self) -> Response:
        self.requests.append(dict(request.headers))
        handle = request.cookies.get("netpay_window")
        w = self.find(handle) if handle else None
        if w is None or not w.open:
            return self.payment_required()
        w.open = False
        fields: dict[str, Any] = {
            "vendor_id": self.vendor_id,
            "ecoin_id": w.ecoin_id,
            "epoch": self.epoch,
            "window_top": w.window_top,
            "consumed_index": w.consumed,
            "refund_units": w.window_top - w.consumed,
            "time_ms": self.broker.clock.now_ms(),
            "reason": "closed",
        }
        fields.update(self.tamper_credit)
        env = seal(pb.WindowCredit(**fields), self.sign_with or self.key)
        resp = json_response(
            200,
            {
                "window_credit": b64url_encode(env.SerializeToString()),
                "refund_units": fields["refund_units"],
            },
        )
        resp.headers["Set-Cookie"] = "netpay_window=; Max-Age=0; Path=/"
        return resp

    @staticmethod
    def serve(item: str, receipt: str, balance: int) -> Response:
        return Response(
            f"<html><body>article {item}</body></html>",
            status=200,
            headers={
                "NetPay-Receipt": receipt,
                "NetPay-Balance": str(balance),
                "NetPay-Window": str(balance),
            },
            mimetype="text/html",
        )

    def app(self) -> Flask:
        app = Flask(f"fake_vendor_{self.vendor_id}")
        app.add_url_rule("/articles/<item>", "article", self.article)
        app.add_url_rule("/netpay/window", "open", self.open_window, methods=["POST"])
        app.add_url_rule("/netpay/window/close", "close", self.close_window, methods=["POST"])

        @app.get("/")
        def home() -> Response:
            return Response("front page", mimetype="text/plain")

        return app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> FakeBroker:
    return FakeBroker(clock)


@pytest.fixture
def start_vendor(broker: FakeBroker) -> Iterator[Callable[..., FakeVendor]]:
    servers: list[Server] = []

    def start(vendor_id: str = "daily", **kwargs: Any) -> FakeVendor:
        v = FakeVendor(broker, vendor_id=vendor_id, **kwargs)
        server = Server(v.app())
        servers.append(server)
        v.url = server.origin
        broker.certify(vendor_id, v.key.public_key, server.origin)
        return v

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def vendor(start_vendor: Callable[..., FakeVendor]) -> FakeVendor:
    return start_vendor()


@pytest.fixture
def wallet_dir(tmp_path: Path) -> Path:
    return tmp_path / "wallet"


@pytest.fixture
def wallet(wallet_dir: Path, clock: FakeClock, broker: FakeBroker) -> Iterator[Wallet]:
    """A wallet registered at the fake broker with one 1000-word coin of 1 cent."""
    w = Wallet(wallet_dir, clock=clock, broker_factory=broker.factory)
    w.register("127.0.0.1:7000", "ann", "correct horse battery staple")
    w.buy(1000)
    yield w
    w.close()
