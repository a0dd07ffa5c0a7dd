"""A real broker and two real newspapers in process, and a funded wallet.

gRPC servers on port 0, Flask served over loopback, SQLite files under
tmp_path, one FakeClock for every party (as tests/e2e/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from ewallet_client import Wallet
from netpay.clock import FakeClock
from netpay.v1 import statements_pb2 as pb
from tests.fakes.wallet_store import shortcuts
from vendor.server import VendorConfig, VendorHandle, start_vendor

PASSWORD = "window pass phrase"
COIN_UNITS = 1000


@dataclass
class World:
    clock: FakeClock
    tmp: Path
    broker: BrokerHandle
    vendors: dict[str, VendorHandle]
    wallet: Wallet

    def origin(self, vendor_id: str) -> str:
        return self.vendors[vendor_id].web_url

    def broker_certificate(self, vendor_id: str) -> pb.Envelope:
        return self.wallet._broker().get_vendor_certificate(vendor_id)

    def broker_key(self) -> bytes:
        key = shortcuts(self.wallet).settings().broker_public_key
        assert key is not None
        return key

    def articles(self, vendor_id: str) -> list[dict[str, Any]]:
        """The vendor's paid articles, cheapest first."""
        with requests.Session() as s:
            items = s.get(self.origin(vendor_id) + "/api/articles", timeout=10).json()
        return sorted((a for a in items if a["amount"] > 0), key=lambda a: (a["amount"], a["id"]))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = FakeClock()
    broker_dir = tmp_path / "broker"
    broker = start_broker(BrokerConfig(data_dir=broker_dir), clock=clock)
    vendors: dict[str, VendorHandle] = {}
    wallet: Wallet | None = None
    try:
        for vendor_id in ("daily", "gazette"):
            vendors[vendor_id] = start_vendor(
                VendorConfig(
                    data_dir=tmp_path / vendor_id,
                    broker_addr=broker.grpc_address,
                    enroll_token=add_vendor(broker_dir, vendor_id),
                    workers=0,
                    background=False,
                ),
                clock=clock,
            )
        wallet = Wallet(tmp_path / "wallet", clock=clock)
        wallet.register(broker.grpc_address, "ann", PASSWORD)
        wallet.buy(COIN_UNITS)
        yield World(clock, tmp_path, broker, vendors, wallet)
    finally:
        if wallet is not None:
            wallet.close()
        for v in vendors.values():
            v.stop()
        broker.stop()
