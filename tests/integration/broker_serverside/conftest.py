"""A real broker (gRPC + portal on 127.0.0.1:0, SQLite in tmp_path) for server-side wallets."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
import requests

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from netpay.clock import FakeClock
from netpay.envelope import SigningKey, open_envelope
from netpay.errors import NetPayError
from netpay.limits import DEFAULT_LIMITS
from netpay.transport.auth import bearer_metadata
from netpay.transport.status import from_rpc_error
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb

PASSWORD = "correct horse battery"
WALLET_PASSWORD = "wallet pass phrase 42"
LIMITS = DEFAULT_LIMITS.replace(
    max_unreported_units=20, max_window_units=50, max_gap_units=100, max_click_amount_minor=30
)
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Reader:
    reader_id: str
    username: str
    token: str

    @property
    def md(self) -> list[tuple[str, str]]:
        return bearer_metadata(self.token)


@dataclass
class Vendor:
    vendor_id: str
    origin: str
    key: SigningKey
    token: str

    @property
    def md(self) -> list[tuple[str, str]]:
        return bearer_metadata(self.token)


@dataclass
class ServerCoin:
    ecoin_id: str
    touchstone: pb.Envelope
    body: pb.Touchstone
    amount_minor: int


class Browser:
    """A requests session that fills in the CSRF token as a browser form does."""

    def __init__(self, base_url: str) -> None:
        self.base = base_url
        self.http = requests.Session()

    def close(self) -> None:
        self.http.close()

    def get(self, path: str, **params: str) -> requests.Response:
        return self.http.get(self.base + path, params=params, timeout=30, allow_redirects=False)

    def csrf(self, page: requests.Response) -> str:
        match = _CSRF_RE.search(page.text)
        assert match is not None, page.text
        return match.group(1)

    def post(self, path: str, data: dict[str, str]) -> requests.Response:
        return self.http.post(self.base + path, data=data, timeout=30, allow_redirects=False)

    def signin_page(self, vendor: Vendor, return_to: str | None = None) -> requests.Response:
        return self.get(
            "/wallet/signin", vendor=vendor.vendor_id, return_to=return_to or vendor.origin + "/a"
        )

    def signin(
        self,
        vendor: Vendor,
        ecoin_id: str,
        password: str = WALLET_PASSWORD,
        return_to: str | None = None,
    ) -> requests.Response:
        page = self.signin_page(vendor, return_to)
        assert page.status_code == 200, page.text
        return self.post(
            "/wallet/signin",
            {
                "csrf_token": self.csrf(page),
                "vendor": vendor.vendor_id,
                "return_to": return_to or vendor.origin + "/a",
                "ecoin_id": ecoin_id,
                "password": password,
            },
        )


def code_from(resp: requests.Response) -> str:
    """The netpay_code of a sign-in redirect."""
    assert resp.status_code == 303, resp.text
    codes = parse_qs(urlsplit(resp.headers["Location"]).query)["netpay_code"]
    assert len(codes) == 1
    return codes[0]


def rpc_error(
    call: Callable[..., Any], *args: Any, **kw: Any
) -> tuple[grpc.StatusCode, NetPayError]:
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    exc: Any = info.value
    return exc.code(), from_rpc_error(exc)


class Harness:
    def __init__(self, broker: BrokerHandle, stub: Any, clock: FakeClock, data_dir: Path) -> None:
        self.broker = broker
        self.stub = stub
        self.clock = clock
        self.data_dir = data_dir
        self._names = itertools.count(1)
        self._ports = itertools.count(8001)

    @property
    def web(self) -> str:
        assert self.broker.web_url is not None
        return self.broker.web_url

    def reader(self) -> Reader:
        name = f"reader{next(self._names)}"
        reg = self.stub.RegisterReader(bpb.RegisterReaderRequest(username=name, password=PASSWORD))
        login = self.stub.Login(bpb.LoginRequest(username=name, password=PASSWORD))
        return Reader(reg.reader_id, name, login.token)

    def vendor(self, vendor_id: str) -> Vendor:
        origin = f"http://127.0.0.1:{next(self._ports)}"
        token = add_vendor(self.data_dir, vendor_id, origin)
        key = SigningKey.generate()
        reply = self.stub.RegisterVendor(
            bpb.RegisterVendorRequest(
                enrollment_token=token,
                public_key=key.public_key,
                grpc_address="127.0.0.1:9999",
                display_name=f"The {vendor_id}",
            )
        )
        return Vendor(vendor_id, origin, key, reply.vendor_token)

    def buy_request(self, n: int = 100, **kw: Any) -> bpb.BuyCoinRequest:
        fields: dict[str, Any] = {
            "request_id": f"req-{next(self._names)}",
            "n": n,
            "unit_value_minor": 1,
            "wallet_kind": pb.WALLET_KIND_SERVER_SIDE,
            "wallet_password": WALLET_PASSWORD,
        }
        fields.update(kw)
        return bpb.BuyCoinRequest(**fields)

    def buy(self, reader: Reader, n: int = 100, **kw: Any) -> ServerCoin:
        reply = self.stub.BuyCoin(self.buy_request(n, **kw), metadata=reader.md)
        body = open_envelope(reply.touchstone, pb.Touchstone, self.broker.public_key)
        return ServerCoin(reply.ecoin_id, reply.touchstone, body, reply.amount_minor)

    def code(self, coin: ServerCoin, vendor: Vendor, password: str = WALLET_PASSWORD) -> str:
        """A sign-in code through the services (the portal tests go through HTTP)."""
        return self.broker.services.wallet_signin(coin.ecoin_id, password, vendor.vendor_id).code

    def grant(self, coin: ServerCoin, vendor: Vendor) -> bpb.ExchangeWalletCodeResponse:
        reply: bpb.ExchangeWalletCodeResponse = self.stub.ExchangeWalletCode(
            bpb.ExchangeWalletCodeRequest(code=self.code(coin, vendor)), metadata=vendor.md
        )
        return reply

    def acquire(self, vendor: Vendor, coin: ServerCoin, grant: pb.Envelope) -> Any:
        return self.stub.AcquireCoin(
            bpb.AcquireCoinRequest(ecoin_id=coin.ecoin_id, wallet_grant=grant),
            metadata=vendor.md,
        )

    def draw(self, vendor: Vendor, grant: pb.Envelope, epoch: int, units: int) -> Any:
        return self.stub.DrawWindow(
            bpb.DrawWindowRequest(wallet_grant=grant, epoch=epoch, units=units),
            metadata=vendor.md,
        )

    def coin_status(self, reader: Reader, coin: ServerCoin) -> bpb.CoinStatus:
        status: bpb.CoinStatus = self.stub.GetCoin(
            bpb.GetCoinRequest(ecoin_id=coin.ecoin_id), metadata=reader.md
        )
        return status

    def balance(self, reader: Reader, currency: str = "EUR") -> int:
        reply = self.stub.GetAccount(bpb.GetAccountRequest(), metadata=reader.md)
        return int({b.currency: b.balance_minor for b in reply.balances}[currency])


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "broker"


@pytest.fixture
def broker(data_dir: Path, clock: FakeClock) -> Iterator[BrokerHandle]:
    handle = start_broker(
        BrokerConfig(data_dir=data_dir, limits=LIMITS, web_addr="127.0.0.1:0"), clock=clock
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def stub(broker: BrokerHandle) -> Iterator[Any]:
    with grpc.insecure_channel(broker.grpc_address) as ch:
        yield broker_pb2_grpc.BrokerStub(ch)  # type: ignore[no-untyped-call]


@pytest.fixture
def h(broker: BrokerHandle, stub: Any, clock: FakeClock, data_dir: Path) -> Harness:
    return Harness(broker, stub, clock, data_dir)


@pytest.fixture
def new_browser(h: Harness) -> Iterator[Callable[[], Browser]]:
    made: list[Browser] = []

    def make() -> Browser:
        made.append(Browser(h.web))
        return made[-1]

    try:
        yield make
    finally:
        for b in made:
            b.close()
