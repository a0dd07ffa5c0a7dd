"""A whole NetPay world in process: a broker, two newspapers, a reader's wallet.

Every part is real: gRPC servers on port 0, Flask served over loopback,
SQLite files under tmp_path. One FakeClock drives all of them, so tests move
time (lease and hand-off timeouts) without sleeping.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from ewallet_client import Wallet
from netpay.clock import FakeClock
from netpay.transport.auth import bearer_metadata
from netpay.v1 import broker_pb2, broker_pb2_grpc
from vendor.server import VendorConfig, VendorHandle, start_vendor

DEPOSIT_MINOR = 10_000
PASSWORD = "correct horse battery"


@dataclass
class World:
    clock: FakeClock
    broker: BrokerHandle
    broker_dir: Path
    daily: VendorHandle
    gazette: VendorHandle
    wallet: Wallet
    channel: grpc.Channel
    token: str

    @property
    def stub(self) -> broker_pb2_grpc.BrokerStub:
        return broker_pb2_grpc.BrokerStub(self.channel)

    def coin_status(self, ecoin_id: str) -> broker_pb2.CoinStatus:
        return self.stub.GetCoin(
            broker_pb2.GetCoinRequest(ecoin_id=ecoin_id), metadata=bearer_metadata(self.token)
        )

    def bank_balance(self) -> int:
        reply = self.stub.GetAccount(
            broker_pb2.GetAccountRequest(), metadata=bearer_metadata(self.token)
        )
        return {b.currency: b.balance_minor for b in reply.balances}["EUR"]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = FakeClock()
    broker_dir = tmp_path / "broker"
    broker = start_broker(
        BrokerConfig(data_dir=broker_dir, demo_deposit_minor=DEPOSIT_MINOR), clock=clock
    )
    vendors: list[VendorHandle] = []
    try:
        for vendor_id, name in (
            ("daily-hash", "The Daily Hash"),
            ("chain-gazette", "The Chain Gazette"),
        ):
            token = add_vendor(broker_dir, vendor_id)
            vendors.append(
                start_vendor(
                    VendorConfig(
                        data_dir=tmp_path / vendor_id,
                        broker_addr=broker.grpc_address,
                        enroll_token=token,
                        workers=0,
                        display_name=name,
                        background=False,
                    ),
                    clock=clock,
                )
            )
        wallet = Wallet(tmp_path / "wallet", clock=clock)
        wallet.register(broker.grpc_address, "reader", PASSWORD)
        channel = grpc.insecure_channel(broker.grpc_address)
        token = (
            broker_pb2_grpc.BrokerStub(channel)
            .Login(broker_pb2.LoginRequest(username="reader", password=PASSWORD))
            .token
        )
        yield World(clock, broker, broker_dir, vendors[0], vendors[1], wallet, channel, token)
        channel.close()
        wallet.close()
    finally:
        for v in reversed(vendors):
            v.stop()
        broker.stop()
