"""The wallet-side fake broker (tests/unit/wallet*, through tests/fakes/wallet_fixtures.py).

``FakeBroker`` is an in-process broker with the wallet-facing RPCs (a
``BrokerApi``, the wallet's ``broker_factory``): readers, tokens, balances
and coins in dicts, touchstones and vendor certificates signed with its own
key. ``FakeBrokerServicer`` puts the same fake behind a real gRPC server (for
the BrokerClient and the CLI). The fake newspaper is tests/fakes/vendor.py,
the page server tests/fakes/pages.py.
"""

from __future__ import annotations

import secrets
from typing import Any

import grpc

from netpay.clock import FakeClock
from netpay.envelope import SigningKey, seal
from netpay.errors import (
    AlreadyExists,
    BrokerUnavailable,
    Insufficient,
    NetPayError,
    NotFound,
    Unauthenticated,
)
from netpay.limits import DEFAULT_LIMITS
from netpay.transport.auth import bearer_token
from netpay.transport.status import maps_errors
from netpay.v1 import broker_pb2, broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb

__all__ = ["DAY_MS", "FakeBroker", "FakeBrokerServicer"]

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
        # reader id -> currency -> the limits SetSpendingLimits kept
        self.limits: dict[str, dict[str, broker_pb2.SpendingLimit]] = {}
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
            limits=list(self.limits.get(reader, {}).values()),
        )

    def history(self, token: str, request: broker_pb2.HistoryRequest) -> broker_pb2.HistoryResponse:
        self._reader(token)
        return broker_pb2.HistoryResponse()

    def set_spending_limits(
        self, token: str, limit: broker_pb2.SpendingLimit
    ) -> broker_pb2.GetAccountResponse:
        reader = self._reader(token)
        self.limits.setdefault(reader, {})[limit.currency] = limit
        return self.get_account(token)

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
