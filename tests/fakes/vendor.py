"""The fake newspaper the wallet's unit tests pay: clicks, windows and a free page.

A Flask app (served by :class:`tests.fakes.pages.Server` on 127.0.0.1:0)
that implements the 402 flow of protocol.md and the window contract closely
enough for the wallet, with the real codecs (``netpay.header``) and hash
chain (``netpay.chain``):

* ``GET /articles/<id>``: 402 with the challenge; a NetPay header pays one
  click (the rules on (prev, index), hashing down to its stored word, signed
  receipts, replays of the same header answered with the same receipt); the
  cookie ``netpay_window`` (and no Authorization) pays from the window, with
  a signed Receipt inside it;
* ``POST /netpay/window``: 402 without a header; with ``window="m"`` the
  spend of (p, p+m] and a window with a random 32-byte handle cookie;
* ``POST /netpay/window/close``: a signed WindowCredit for the rest;
* ``GET /`` and ``GET /free``: pages that ask for no payment.

Tests inject answers, tamper with what it signs, or refuse clicks, to show
the wallet checks.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, Response, request

from netpay.chain import seen_of, verify_word
from netpay.encoding import b64url_encode
from netpay.envelope import SigningKey, seal
from netpay.errors import Malformed
from netpay.header import Challenge, Credentials, format_challenge, parse_authorization
from netpay.limits import DEFAULT_LIMITS
from netpay.v1 import statements_pb2 as pb
from tests.fakes.broker import FakeBroker
from tests.fakes.pages import json_response

__all__ = ["WINDOW_TTL_MS", "FakeVendor", "FakeWindow"]

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
    """A newspaper selling /articles/<id> for ``price_minor``, with windows."""

    broker: FakeBroker
    vendor_id: str = "daily"
    price_minor: int = 5
    currency: str = "EUR"
    epoch: int = 7
    key: SigningKey = field(default_factory=SigningKey.generate)
    coins: dict[str, tuple[int, bytes]] = field(default_factory=dict)  # id -> (index, word)
    # Per click: (ecoin id, index, payword) -> (item, receipt header), for replays.
    clicks: dict[tuple[str, int, bytes], tuple[str, str]] = field(default_factory=dict)
    windows: list[FakeWindow] = field(default_factory=list)
    window_headers: dict[str, tuple[str, str]] = field(default_factory=dict)  # header -> answer
    requests: list[dict[str, str]] = field(default_factory=list)  # headers of every request
    paid_requests: list[str] = field(default_factory=list)  # the header of every paid request
    unpaid_requests: int = 0
    paid_clicks: int = 0
    window_clicks: int = 0
    inject: list[Response] = field(default_factory=list)  # answers to paid requests
    challenge_broker: str | None = None  # name another broker in the challenge
    # Tamper hooks: change a click's receipt fields, a window answer, a window
    # receipt (frm/to/amount) or a credit before signing; sign with other keys.
    receipt_tamper: dict[str, Any] = field(default_factory=dict)
    tamper_window: dict[str, Any] = field(default_factory=dict)
    tamper_receipt: dict[str, Any] = field(default_factory=dict)
    tamper_credit: dict[str, Any] = field(default_factory=dict)
    receipt_key: SigningKey | None = None  # sign click receipts with another key
    sign_with: SigningKey | None = None  # sign receipts and credits with another key
    refuse_window_clicks: bool = False
    no_cookie: bool = False
    url: str = ""

    # -- answers ---------------------------------------------------------------

    def challenge(self, amount: int | None = None) -> dict[str, str]:
        ch = Challenge(
            realm=self.vendor_id,
            amount_minor=amount or self.price_minor,
            currency=self.currency,
            broker=self.challenge_broker or self.broker.broker_id,
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
        """An error answer; with a coin the vendor knows, its index and its seen."""
        if ecoin_id is not None and ecoin_id in self.coins:
            return self.error_at(status, code, *self.coins[ecoin_id])
        return json_response(
            status, {"error": code, "detail": f"fake vendor: {code}"}, self.challenge()
        )

    def error_at(self, status: int, code: str, index: int, word: bytes) -> Response:
        body: dict[str, object] = {
            "error": code,
            "detail": f"fake vendor: {code}",
            "index": index,
            "seen": b64url_encode(seen_of(word)),  # 1.1: never the word itself
        }
        return json_response(status, body, self.challenge())

    def move(self, ecoin_id: str, index: int, word: bytes) -> None:
        """Someone else paid this coin up to ``index`` here."""
        self.coins[ecoin_id] = (index, word)

    def _receipt(
        self, ecoin_id: str, frm: int, to: int, amount: int, item: str, **tamper: Any
    ) -> str:
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
        fields.update(tamper)
        key = self.receipt_key or self.sign_with or self.key
        return b64url_encode(seal(pb.Receipt(**fields), key).SerializeToString())

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

    # -- spending ----------------------------------------------------------------

    def _spend(self, cred: Credentials, ts: pb.Touchstone, words: int | None) -> Response | None:
        """Check a header against the coin and move it; ``words`` None: a window (any m).

        A click's refusal names the vendor's index and its seen (its root at 0
        for a coin it never saw); a window's only for a coin it knows.
        """
        index, word = self.coins.get(cred.ecoin_id, (0, ts.root))
        step = cred.index - cred.prev
        if words is None:
            if cred.window is None or cred.window != step or not 1 <= step <= 500:
                return self.error(402, "wrong_amount", cred.ecoin_id)
        elif step != words:
            return self.error_at(402, "wrong_amount", index, word)
        if cred.prev < index:
            return self.error(409, "already_spent", cred.ecoin_id)
        gap = self.broker.max_gap_units
        if not verify_word(cred.ecoin_bytes, index, word, cred.index, cred.payword, step + gap):
            return self.error(402, "bad_payword")
        self.coins[cred.ecoin_id] = (cred.index, cred.payword)
        return None

    def _credentials(self, auth: str) -> tuple[Credentials, pb.Touchstone] | Response:
        """The header and its coin's touchstone, or the refusal to send."""
        try:
            cred = parse_authorization(auth)
        except Malformed as exc:
            return json_response(400, {"error": "malformed", "detail": exc.detail})
        coin = self.broker.coins.get(cred.ecoin_id)
        if coin is None:
            return self.error(402, "bad_payword")
        return cred, coin.touchstone

    def pay(self, item: str, auth: str) -> Response:
        """A click paid with a NetPay header."""
        self.paid_requests.append(auth)
        if self.inject:
            return self.inject.pop(0)
        found = self._credentials(auth)
        if isinstance(found, Response):
            return found
        cred, ts = found
        replay = self.clicks.get((cred.ecoin_id, cred.index, cred.payword))
        if replay is not None:
            if replay[0] != item:
                return self.error(409, "already_spent", cred.ecoin_id)
            return self.serve(item, replay[1], ts.n - cred.index)
        if cred.window is not None:
            return json_response(400, {"error": "malformed", "detail": "window on an article"})
        if ts.currency != self.currency:
            return self.error(402, "wrong_currency")
        refused = self._spend(cred, ts, self.price_minor // ts.unit_value_minor)
        if refused is not None:
            return refused
        self.paid_clicks += 1
        receipt = self._receipt(
            cred.ecoin_id, cred.prev, cred.index, self.price_minor, item, **self.receipt_tamper
        )
        self.clicks[(cred.ecoin_id, cred.index, cred.payword)] = (item, receipt)
        return self.serve(item, receipt, ts.n - cred.index)

    def article(self, item: str) -> Response:
        self.requests.append(dict(request.headers))
        auth = request.headers.get("Authorization")
        if auth:
            return self.pay(item, auth)
        handle = request.cookies.get("netpay_window")
        if handle and request.headers.get("Sec-Fetch-Site", "same-origin") == "same-origin":
            paid = self.window_click(item, handle)
            if paid is not None:
                return paid
        self.unpaid_requests += 1
        return self.payment_required()

    # -- windows -----------------------------------------------------------------

    def window_click(self, item: str, handle: str) -> Response | None:
        """A click paid from the window of ``handle`` (None: the window does not pay it)."""
        w = self.find(handle)
        if w is None or not w.open or self.refuse_window_clicks:
            return None
        if item in w.clicks:
            return self.serve(item, w.clicks[item], w.window_top - w.consumed)
        words = self.price_minor // w.unit_value
        if w.consumed + words > w.window_top:
            return None
        frm, w.consumed = w.consumed, w.consumed + words
        self.window_clicks += 1
        fields = {"frm": frm, "to": w.consumed, "amount": self.price_minor}
        fields.update(self.tamper_receipt)
        receipt = self._receipt(w.ecoin_id, fields["frm"], fields["to"], fields["amount"], item)
        w.clicks[item] = receipt
        return self.serve(item, receipt, w.window_top - w.consumed)

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
        found = self._credentials(auth)
        if isinstance(found, Response):
            return found
        cred, ts = found
        refused = self._spend(cred, ts, None)
        if refused is not None:
            return refused
        for old in self.windows:
            if old.ecoin_id == cred.ecoin_id and old.open:
                old.open = False
        handle = b64url_encode(secrets.token_bytes(32))
        w = FakeWindow(
            handle_sha256=hashlib.sha256(handle.encode()).digest(),
            ecoin_id=cred.ecoin_id,
            window_from=cred.prev,
            window_top=cred.index,
            consumed=cred.prev,
            unit_value=ts.unit_value_minor,
            currency=ts.currency,
            expires_at_ms=self.broker.clock.now_ms() + WINDOW_TTL_MS,
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

    # -- the site ----------------------------------------------------------------

    def app(self) -> Flask:
        app = Flask(f"fake_vendor_{self.vendor_id}")
        app.add_url_rule("/articles/<item>", "article", self.article)
        app.add_url_rule("/netpay/window", "open", self.open_window, methods=["POST"])
        app.add_url_rule("/netpay/window/close", "close", self.close_window, methods=["POST"])

        @app.get("/")
        def home() -> Response:
            return Response("front page", mimetype="text/plain")

        @app.get("/free")
        def free() -> Response:
            return Response("free text", mimetype="text/plain")

        return app
