"""Fakes for the wallet's unit tests: an in-process broker and a tiny vendor web site.

The fake broker keeps readers, tokens, balances and coins in dicts and signs
touchstones and vendor certificates with its own key. ``FakeBrokerServicer``
puts the same fake behind a real gRPC server (for the BrokerClient and the
CLI). The fake vendor is a Flask app served by werkzeug on 127.0.0.1:0 that
implements the 402 flow of protocol.md closely enough for the wallet: the
challenge, the rules on (prev, index), hashing down to its stored word,
signed receipts, replays, and injected answers.
"""

from __future__ import annotations

import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from flask import Flask, Response, request
from werkzeug.serving import make_server

from ewallet_client.wallet import Wallet
from netpay.chain import verify_word
from netpay.clock import FakeClock
from netpay.encoding import b64url_encode
from netpay.envelope import SigningKey, seal
from netpay.errors import (
    AlreadyExists,
    BrokerUnavailable,
    Insufficient,
    Malformed,
    NetPayError,
    NotFound,
    Unauthenticated,
)
from netpay.header import Challenge, format_challenge, parse_authorization
from netpay.limits import DEFAULT_LIMITS
from netpay.transport.auth import bearer_token
from netpay.transport.server import create_grpc_server
from netpay.transport.status import maps_errors
from netpay.v1 import broker_pb2, broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb

DAY_MS = 86_400_000


class FakeBroker:
    """An in-process broker with the wallet-facing RPCs (a BrokerApi)."""

    def __init__(self, clock: FakeClock, broker_id: str = "broker", max_gap_units: int = 1000):
        self.clock = clock
        self.broker_id = broker_id
        self.key = SigningKey.generate()
        self.max_gap_units = max_gap_units
        self.readers: dict[str, tuple[str, str]] = {}  # username -> (password, reader id)
        self.tokens: dict[str, str] = {}  # token -> reader id
        self.balances: dict[str, int] = {}  # reader id -> EUR minor
        self.sales: dict[str, broker_pb2.BuyCoinResponse] = {}  # request id -> reply
        self.coins: dict[str, pb.Touchstone] = {}
        self.buy_requests: list[broker_pb2.BuyCoinRequest] = []
        self.fail_buy_before: list[NetPayError] = []  # raised before the sale
        self.lose_buy_replies = 0  # sell, then raise BrokerUnavailable
        self.certificates: dict[str, pb.Envelope] = {}
        self.addresses: list[str] = []
        self.certificate_calls = 0
        self.latest: dict[str, tuple[int, bytes]] = {}  # GetCoin's latest known word
        self.get_coin_calls = 0

    # the wallet's factory: BrokerFactory = Callable[[str], BrokerApi]
    def factory(self, address: str) -> FakeBroker:
        self.addresses.append(address)
        return self

    def close(self) -> None:
        pass

    def _reader(self, token: str) -> str:
        if token not in self.tokens:
            raise Unauthenticated("unknown token")
        return self.tokens[token]

    def get_info(self) -> broker_pb2.BrokerInfo:
        return broker_pb2.BrokerInfo(
            broker_id=self.broker_id,
            public_key=self.key.public_key,
            currencies=["EUR"],
            limits=broker_pb2.Limits(
                max_chain_units=DEFAULT_LIMITS.max_chain_units,
                max_gap_units=self.max_gap_units,
                max_skew_s=5,
                max_click_amount_minor=10_000,
            ),
        )

    def register_reader(self, username: str, password: str) -> str:
        if username in self.readers:
            raise AlreadyExists("username taken")
        reader_id = f"r-{len(self.readers) + 1}"
        self.readers[username] = (password, reader_id)
        self.balances[reader_id] = 10_000
        return reader_id

    def login(self, username: str, password: str) -> broker_pb2.LoginResponse:
        known = self.readers.get(username)
        if known is None or known[0] != password:
            raise Unauthenticated("wrong username or password")
        token = secrets.token_urlsafe(32)
        self.tokens[token] = known[1]
        return broker_pb2.LoginResponse(
            token=token, expires_at_ms=self.clock.now_ms() + DAY_MS, reader_id=known[1]
        )

    def buy_coin(self, token: str, req: broker_pb2.BuyCoinRequest) -> broker_pb2.BuyCoinResponse:
        reader = self._reader(token)
        self.buy_requests.append(req)
        if self.fail_buy_before:
            raise self.fail_buy_before.pop(0)
        if req.request_id in self.sales:
            return self.sales[req.request_id]
        if req.ecoin_id in self.coins:
            raise AlreadyExists("ecoin id seen under another request id")
        u = req.unit_value_minor or 1
        amount = req.n * u
        if self.balances[reader] < amount:
            raise Insufficient("not enough money in the bank account")
        self.balances[reader] -= amount
        now = self.clock.now_ms()
        ts = pb.Touchstone(
            ecoin_id=req.ecoin_id,
            root=req.root,
            n=req.n,
            unit_value_minor=u,
            currency=req.currency or "EUR",
            wallet_kind=req.wallet_kind,
            owner=reader,
            issued_at_ms=now,
            expires_at_ms=now + 90 * DAY_MS,
            broker_id=self.broker_id,
        )
        self.coins[req.ecoin_id] = ts
        reply = broker_pb2.BuyCoinResponse(
            touchstone=seal(ts, self.key), amount_minor=amount, currency=ts.currency
        )
        self.sales[req.request_id] = reply
        if self.lose_buy_replies:
            self.lose_buy_replies -= 1
            raise BrokerUnavailable("UNAVAILABLE: the reply was lost")
        return reply

    def get_coin(self, token: str, ecoin_id: str) -> broker_pb2.CoinStatus:
        reader = self._reader(token)
        self.get_coin_calls += 1
        ts = self.coins.get(ecoin_id)
        if ts is None or ts.owner != reader:
            raise NotFound(f"no coin {ecoin_id}")
        index, word = self.latest.get(ecoin_id, (0, ts.root))
        return broker_pb2.CoinStatus(
            touchstone=seal(ts, self.key),
            state=broker_pb2.COIN_STATE_HELD,
            latest_index=index,
            latest_word=word,
        )

    def list_coins(self, token: str) -> list[broker_pb2.CoinStatus]:
        reader = self._reader(token)
        return [
            broker_pb2.CoinStatus(touchstone=seal(ts, self.key), state=broker_pb2.COIN_STATE_FREE)
            for ts in self.coins.values()
            if ts.owner == reader
        ]

    def get_account(self, token: str) -> broker_pb2.GetAccountResponse:
        reader = self._reader(token)
        return broker_pb2.GetAccountResponse(
            reader_id=reader,
            balances=[
                broker_pb2.AccountBalance(currency="EUR", balance_minor=self.balances[reader])
            ],
        )

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope:
        self.certificate_calls += 1
        if vendor_id not in self.certificates:
            raise NotFound(f"no vendor {vendor_id}")
        return self.certificates[vendor_id]

    def certify(self, vendor_id: str, public_key: bytes, web_origin: str) -> None:
        cert = pb.VendorCertificate(
            vendor_id=vendor_id,
            public_key=public_key,
            grpc_address="127.0.0.1:1",
            web_origin=web_origin,
            valid_until_ms=self.clock.now_ms() + DAY_MS,
            broker_id=self.broker_id,
            display_name=vendor_id,
            issued_at_ms=self.clock.now_ms(),
        )
        self.certificates[vendor_id] = seal(cert, self.key)


class FakeBrokerServicer(broker_pb2_grpc.BrokerServicer):  # type: ignore[misc]
    """The fake broker behind a real gRPC server (errors mapped as the real one does)."""

    def __init__(self, fake: FakeBroker) -> None:
        self.fake = fake

    @staticmethod
    def _token(context: grpc.ServicerContext) -> str:
        return bearer_token(context.invocation_metadata())

    @maps_errors
    def GetInfo(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.get_info()

    @maps_errors
    def RegisterReader(self, request: Any, context: grpc.ServicerContext) -> Any:
        reader = self.fake.register_reader(request.username, request.password)
        return broker_pb2.RegisterReaderResponse(reader_id=reader)

    @maps_errors
    def Login(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.login(request.username, request.password)

    @maps_errors
    def BuyCoin(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.buy_coin(self._token(context), request)

    @maps_errors
    def GetCoin(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.get_coin(self._token(context), request.ecoin_id)

    @maps_errors
    def ListCoins(self, request: Any, context: grpc.ServicerContext) -> Any:
        return broker_pb2.ListCoinsResponse(coins=self.fake.list_coins(self._token(context)))

    @maps_errors
    def GetAccount(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self.fake.get_account(self._token(context))

    @maps_errors
    def GetVendorCertificate(self, request: Any, context: grpc.ServicerContext) -> Any:
        env = self.fake.get_vendor_certificate(request.vendor_id)
        return broker_pb2.GetVendorCertificateResponse(certificate=env)


def _json(status: int, obj: dict[str, object], headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(obj), status=status, headers=headers or {}, mimetype="application/json"
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
        return _json(status, body, self.challenge())

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
            return _json(400, {"error": "malformed", "detail": exc.detail})
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
            return _json(
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


class _Server:
    def __init__(self, app: Flask) -> None:
        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> FakeBroker:
    return FakeBroker(clock)


@pytest.fixture
def vendor(broker: FakeBroker) -> Iterator[FakeVendor]:
    v = FakeVendor(broker)
    server = _Server(v.app())
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
