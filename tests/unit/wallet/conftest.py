"""Fixtures for the wallet's unit tests: the fake broker and a tiny vendor web site.

The fake broker (and its gRPC servicer) is shared with tests/unit/wallet_windows
and lives in ``tests/unit/wallet/fakes.py``. The fake vendor here is a Flask
app served by werkzeug on 127.0.0.1:0 that implements the 402 flow of
protocol.md closely enough for the wallet: the challenge, the rules on
(prev, index), hashing down to its stored word, signed receipts, replays, and
injected answers.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
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
from netpay.transport.server import create_grpc_server
from netpay.v1 import broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb
from tests.unit.wallet.fakes import (
    DAY_MS,
    FakeBroker,
    FakeBrokerServicer,
    Server,
    json_response,
)


@dataclass
class _CoinAtVendor:
    index: int
    word: bytes
    highest: int


@dataclass
class FakeVendor:
    """A newspaper that sells /articles/<id> for ``price_minor`` and serves /free."""

    broker: FakeBroker
    vendor_id: str = "daily"
    price_minor: int = 5
    currency: str = "EUR"
    key: SigningKey = field(default_factory=SigningKey.generate)
    receipt_key: SigningKey | None = None  # sign receipts with another key (a bad vendor)
    receipt_tamper: dict[str, Any] = field(default_factory=dict)  # fields to change
    challenge_broker: str | None = None  # name another broker in the challenge
    inject: list[Response] = field(default_factory=list)  # answers to paid requests
    coins: dict[str, _CoinAtVendor] = field(default_factory=dict)
    clicks: dict[tuple[str, int, bytes], tuple[str, str]] = field(default_factory=dict)
    paid_requests: list[str] = field(default_factory=list)
    unpaid_requests: int = 0
    url: str = ""

    def challenge(self) -> dict[str, str]:
        ch = Challenge(
            realm=self.vendor_id,
            amount_minor=self.price_minor,
            currency=self.currency,
            broker=self.challenge_broker or self.broker.broker_id,
        )
        return {"WWW-Authenticate": format_challenge(ch)}

    def error(self, status: int, code: str, coin: _CoinAtVendor | None = None) -> Response:
        body: dict[str, object] = {"error": code, "detail": f"fake vendor: {code}"}
        if coin is not None:
            body["index"] = coin.index
            body["payword"] = b64url_encode(coin.word)
        return json_response(status, body, self.challenge())

    def error_at(self, status: int, code: str, index: int, word: bytes) -> Response:
        return self.error(status, code, _CoinAtVendor(index, word, index))

    def move(self, ecoin_id: str, index: int, word: bytes) -> None:
        """Someone else paid this coin up to ``index`` here."""
        self.coins[ecoin_id] = _CoinAtVendor(index, word, index)

    def pay(self, item: str, auth: str) -> Response:
        self.paid_requests.append(auth)
        if self.inject:
            return self.inject.pop(0)
        try:
            cred = parse_authorization(auth)
        except Malformed as exc:
            return json_response(400, {"error": "malformed", "detail": exc.detail})
        ts = self.broker.coins.get(cred.ecoin_id)
        if ts is None:
            return self.error(402, "bad_payword")
        replay = self.clicks.get((cred.ecoin_id, cred.index, cred.payword))
        if replay is not None:
            if replay[0] != item:
                return self.error(409, "already_spent", self.coins[cred.ecoin_id])
            return self.serve(item, replay[1], ts.n - cred.index)
        if ts.currency != self.currency:
            return self.error(402, "wrong_currency")
        coin = self.coins.get(cred.ecoin_id) or _CoinAtVendor(0, ts.root, 0)
        words = self.price_minor // ts.unit_value_minor
        if cred.index - cred.prev != words:
            return self.error(402, "wrong_amount", coin)
        if cred.prev < coin.index or cred.prev < coin.highest:
            return self.error(409, "already_spent", coin)
        gap = self.broker.max_gap_units
        if not verify_word(
            cred.ecoin_bytes, coin.index, coin.word, cred.index, cred.payword, words + gap
        ):
            return self.error(402, "bad_payword")
        self.coins[cred.ecoin_id] = _CoinAtVendor(cred.index, cred.payword, cred.index)
        fields: dict[str, Any] = {
            "vendor_id": self.vendor_id,
            "ecoin_id": cred.ecoin_id,
            "epoch": 1,
            "from_index": cred.prev,
            "to_index": cred.index,
            "amount_minor": self.price_minor,
            "currency": self.currency,
            "item_id": item,
            "time_ms": self.broker.clock.now_ms(),
        }
        fields.update(self.receipt_tamper)
        env = seal(pb.Receipt(**fields), self.receipt_key or self.key)
        header = b64url_encode(env.SerializeToString())
        self.clicks[(cred.ecoin_id, cred.index, cred.payword)] = (item, header)
        return self.serve(item, header, ts.n - cred.index)

    @staticmethod
    def serve(item: str, receipt: str, balance: int) -> Response:
        return Response(
            f"<html><body>article {item}</body></html>",
            status=200,
            headers={"NetPay-Receipt": receipt, "NetPay-Balance": str(balance)},
            mimetype="text/html",
        )

    def app(self) -> Flask:
        app = Flask("fake_vendor")

        @app.get("/articles/<item>")
        def article(item: str) -> Response:
            auth = request.headers.get("Authorization")
            if auth:
                return self.pay(item, auth)
            self.unpaid_requests += 1
            return json_response(
                402,
                {
                    "error": "payment_required",
                    "detail": "pay",
                    "amount": self.price_minor,
                    "currency": self.currency,
                },
                self.challenge(),
            )

        @app.get("/free")
        def free() -> Response:
            return Response("free text", mimetype="text/plain")

        return app


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> FakeBroker:
    return FakeBroker(clock)


@pytest.fixture
def vendor(broker: FakeBroker) -> Iterator[FakeVendor]:
    v = FakeVendor(broker)
    server = Server(v.app())
    v.url = server.origin
    broker.certify(v.vendor_id, v.key.public_key, server.origin)
    yield v
    server.stop()


@pytest.fixture
def wallet_dir(tmp_path: Path) -> Path:
    return tmp_path / "wallet"


@pytest.fixture
def wallet(wallet_dir: Path, clock: FakeClock, broker: FakeBroker) -> Iterator[Wallet]:
    """A wallet registered as ann at the fake broker, with no coin yet."""
    w = Wallet(wallet_dir, clock=clock, broker_factory=broker.factory)
    w.register("127.0.0.1:7000", "ann", "correct horse battery staple")
    yield w
    w.close()


@pytest.fixture
def make_wallet(wallet_dir: Path, clock: FakeClock, broker: FakeBroker) -> Iterator[Any]:
    """Another Wallet object on the same directory (as a second command would be)."""
    made: list[Wallet] = []

    def make() -> Wallet:
        w = Wallet(wallet_dir, clock=clock, broker_factory=broker.factory)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture
def grpc_broker(broker: FakeBroker) -> Iterator[str]:
    """The fake broker behind a real gRPC server; yields its address."""
    servicer = FakeBrokerServicer(broker)
    server = create_grpc_server(
        "127.0.0.1:0",
        [lambda s: broker_pb2_grpc.add_BrokerServicer_to_server(servicer, s)],
        ["netpay.v1.Broker"],
    )
    yield server.address
    server.stop(0)


@pytest.fixture
def add_coin(clock: FakeClock) -> Any:
    """Put an active coin straight into a store (no broker); returns its id."""
    from ewallet_client.domain import CoinEvent
    from ewallet_client.store import PEBBLE_EVERY, WalletStore
    from netpay.chain import Chain, new_ecoin_id, new_seed

    def add(
        store: WalletStore,
        n: int = 1000,
        unit_value_minor: int = 1,
        currency: str = "EUR",
        expires_in_ms: int = 90 * DAY_MS,
    ) -> str:
        ecoin = new_ecoin_id()
        seed = new_seed()
        chain = Chain.make(ecoin, n, seed, pebble_every=PEBBLE_EVERY)
        store.add_pending_coin(
            ecoin_id=ecoin.hex(),
            request_id=secrets.token_hex(16),
            seed=seed,
            n=n,
            unit_value_minor=unit_value_minor,
            currency=currency,
            pebbles=chain.pebbles,
            now_ms=clock.now_ms(),
        )
        store.change_state(
            ecoin.hex(),
            CoinEvent.SOLD,
            touchstone=b"not checked here",
            expires_at_ms=clock.now_ms() + expires_in_ms,
        )
        return ecoin.hex()

    return add
