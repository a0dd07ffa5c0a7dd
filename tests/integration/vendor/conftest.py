"""A real broker (gRPC on 127.0.0.1:0) and real vendors in process."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from broker.server import BrokerConfig, add_vendor, start_broker
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.clock import FakeClock, SystemClock
from netpay.transport.auth import bearer_metadata
from netpay.transport.server import channel_options
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb
from vendor.server import VendorConfig, VendorHandle, start_vendor


@dataclass
class Reader:
    """A reader account at the broker with a logged-in token."""

    stub: broker_pb2_grpc.BrokerStub
    token: str

    def buy(self, n: int = 200) -> Chain:
        chain = Chain.make(new_ecoin_id(), n, new_seed())
        self.stub.BuyCoin(
            bpb.BuyCoinRequest(
                request_id=secrets.token_hex(8),
                ecoin_id=chain.ecoin_id.hex(),
                root=chain.root,
                n=n,
                unit_value_minor=1,
                currency="EUR",
                wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
            ),
            metadata=bearer_metadata(self.token),
            timeout=10,
        )
        return chain

    def coin(self, chain: Chain) -> bpb.CoinStatus:
        return self.stub.GetCoin(
            bpb.GetCoinRequest(ecoin_id=chain.ecoin_id.hex()),
            metadata=bearer_metadata(self.token),
            timeout=10,
        )


@pytest.fixture
def clock() -> FakeClock:
    # Starts at the real time: gunicorn workers and CLI subprocesses use the system clock.
    return FakeClock(start_ms=SystemClock().now_ms())


@pytest.fixture
def broker_dir(tmp_path: Path) -> Path:
    return tmp_path / "broker"


@pytest.fixture
def broker(broker_dir: Path, clock: FakeClock):
    handle = start_broker(BrokerConfig(data_dir=broker_dir, grpc_addr="127.0.0.1:0"), clock=clock)
    yield handle
    handle.stop()


@pytest.fixture
def broker_stub(broker) -> Iterator[broker_pb2_grpc.BrokerStub]:
    channel = grpc.insecure_channel(broker.grpc_address, options=channel_options())
    yield broker_pb2_grpc.BrokerStub(channel)
    channel.close()


@pytest.fixture
def reader(broker_stub) -> Reader:
    broker_stub.RegisterReader(
        bpb.RegisterReaderRequest(username="alice", password="correct horse battery"), timeout=10
    )
    login = broker_stub.Login(
        bpb.LoginRequest(username="alice", password="correct horse battery"), timeout=10
    )
    return Reader(broker_stub, login.token)


StartVendor = Callable[..., VendorHandle]


@pytest.fixture
def start(tmp_path: Path, broker, broker_dir: Path, clock: FakeClock) -> Iterator[StartVendor]:
    handles: list[VendorHandle] = []

    def run(vendor_id: str, *, enroll: bool = True, **config: object) -> VendorHandle:
        token = add_vendor(broker_dir, vendor_id) if enroll else None
        settings: dict[str, object] = {
            "data_dir": tmp_path / vendor_id,
            "broker_addr": broker.grpc_address,
            "enroll_token": token,
            "workers": 0,
            "background": False,
        }
        settings.update(config)
        handle = start_vendor(VendorConfig(**settings), clock=clock)  # type: ignore[arg-type]
        handles.append(handle)
        return handle

    yield run
    for handle in handles:
        handle.stop()
