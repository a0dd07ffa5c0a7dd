"""A real broker on 127.0.0.1:0 over a SQLite file in tmp_path, driven by a FakeClock."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.clock import FakeClock
from netpay.envelope import SigningKey, seal
from netpay.errors import NetPayError
from netpay.limits import DEFAULT_LIMITS
from netpay.transport.auth import bearer_metadata
from netpay.transport.status import from_rpc_error
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb

PASSWORD = "correct horse battery"
# Small allowances so the acquire bound (20 + 50 + 100 + 30 = 200 units for a
# unit value of 1) is cheap to cross in a test.
LIMITS = DEFAULT_LIMITS.replace(
    max_checkpoint_indexes=20,
    max_unreported_units=20,
    max_window_units=50,
    max_gap_units=100,
    max_click_amount_minor=30,
)


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
    key: SigningKey
    token: str
    certificate: pb.Envelope

    @property
    def md(self) -> list[tuple[str, str]]:
        return bearer_metadata(self.token)

    def coin_index(
        self, chain: Chain, epoch: int, index: int, *, to: str = "", key: SigningKey | None = None
    ) -> pb.Envelope:
        return seal(
            pb.CoinIndex(
                ecoin_id=chain.ecoin_id.hex(),
                epoch=epoch,
                index=index,
                payword=chain.word(index),
                vendor_id=self.vendor_id,
                to_vendor=to,
                issued_at_ms=1,
            ),
            key or self.key,
        )


@dataclass
class Coin:
    chain: Chain
    touchstone: pb.Envelope

    @property
    def ecoin_id(self) -> str:
        return self.chain.ecoin_id.hex()


class Harness:
    """Helpers over one broker: readers, vendors, coins, expected errors."""

    password = PASSWORD

    def __init__(self, broker: BrokerHandle, stub: Any, clock: FakeClock, data_dir: Path) -> None:
        self.broker = broker
        self.stub = stub
        self.clock = clock
        self.data_dir = data_dir
        self._names = itertools.count(1)

    def reader(self, username: str | None = None) -> Reader:
        name = username or f"reader{next(self._names)}"
        reg = self.stub.RegisterReader(bpb.RegisterReaderRequest(username=name, password=PASSWORD))
        login = self.stub.Login(bpb.LoginRequest(username=name, password=PASSWORD))
        assert login.reader_id == reg.reader_id
        return Reader(reg.reader_id, name, login.token)

    def vendor(self, vendor_id: str, origin: str | None = None) -> Vendor:
        token = add_vendor(self.data_dir, vendor_id, origin)
        key = SigningKey.generate()
        reply = self.stub.RegisterVendor(
            bpb.RegisterVendorRequest(
                enrollment_token=token,
                public_key=key.public_key,
                grpc_address="127.0.0.1:9999",
                web_origin="http://127.0.0.1:8001",
                display_name=f"The {vendor_id}",
            )
        )
        assert reply.vendor_token
        return Vendor(vendor_id, key, reply.vendor_token, reply.certificate)

    def buy(
        self,
        reader: Reader,
        n: int = 100,
        *,
        unit_value: int = 1,
        request_id: str | None = None,
        chain: Chain | None = None,
    ) -> Coin:
        chain = chain or Chain.make(new_ecoin_id(), n, new_seed())
        reply = self.stub.BuyCoin(
            bpb.BuyCoinRequest(
                request_id=request_id or f"req-{chain.ecoin_id.hex()}",
                ecoin_id=chain.ecoin_id.hex(),
                root=chain.root,
                n=chain.n,
                unit_value_minor=unit_value,
                wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
            ),
            metadata=reader.md,
        )
        return Coin(chain, reply.touchstone)

    def acquire(self, vendor: Vendor, coin: Coin, j: int, **kw: Any) -> bpb.AcquireCoinResponse:
        return self.stub.AcquireCoin(
            bpb.AcquireCoinRequest(
                ecoin_id=coin.ecoin_id, proof_index=j, proof_word=coin.chain.word(j), **kw
            ),
            metadata=vendor.md,
        )

    @staticmethod
    def error(
        call: Callable[..., Any], *args: Any, **kw: Any
    ) -> tuple[grpc.StatusCode, NetPayError]:
        return rpc_error(call, *args, **kw)

    def balance(self, reader: Reader, currency: str = "EUR") -> int:
        reply = self.stub.GetAccount(bpb.GetAccountRequest(), metadata=reader.md)
        return {b.currency: b.balance_minor for b in reply.balances}[currency]


def rpc_error(
    call: Callable[..., Any], *args: Any, **kw: Any
) -> tuple[grpc.StatusCode, NetPayError]:
    """Make a call that must fail; its status code and the typed error it stands for."""
    with pytest.raises(grpc.RpcError) as info:
        call(*args, **kw)
    exc: Any = info.value
    return exc.code(), from_rpc_error(exc)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "broker"


@pytest.fixture
def broker(data_dir: Path, clock: FakeClock) -> Iterator[BrokerHandle]:
    handle = start_broker(
        BrokerConfig(data_dir=data_dir, limits=LIMITS, currencies=("EUR", "USD")), clock=clock
    )
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture
def channel(broker: BrokerHandle) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(broker.grpc_address) as ch:
        yield ch


@pytest.fixture
def stub(channel: grpc.Channel) -> Any:
    return broker_pb2_grpc.BrokerStub(channel)


@pytest.fixture
def h(broker: BrokerHandle, stub: Any, clock: FakeClock, data_dir: Path) -> Harness:
    return Harness(broker, stub, clock, data_dir)
