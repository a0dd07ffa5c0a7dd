"""A real broker and two real vendors (in process, port 0) for the wallet's integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.server import BrokerConfig, add_vendor, start_broker
from ewallet_client import Wallet
from vendor.server import VendorConfig, start_vendor

PASSWORD = "integration pass phrase"


@dataclass
class World:
    broker: Any
    vendors: dict[str, Any]
    tmp: Path

    def articles(self, vendor_id: str) -> list[dict[str, Any]]:
        """The vendor's paid articles, cheapest first (from /api/articles)."""
        url = self.vendors[vendor_id].web_url + "/api/articles"
        with requests.Session() as s:
            items = s.get(url, timeout=10).json()
        paid = [a for a in items if a["amount"] > 0]
        return sorted(paid, key=lambda a: (a["amount"], a["id"]))


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    broker = start_broker(BrokerConfig(data_dir=tmp_path / "broker", grpc_addr="127.0.0.1:0"))
    vendors: dict[str, Any] = {}
    try:
        for vendor_id in ("daily", "gazette"):
            token = add_vendor(tmp_path / "broker", vendor_id)
            vendors[vendor_id] = start_vendor(
                VendorConfig(
                    data_dir=tmp_path / vendor_id,
                    broker_addr=broker.grpc_address,
                    enroll_token=token,
                    workers=0,
                    background=False,
                )
            )
        yield World(broker, vendors, tmp_path)
    finally:
        for v in vendors.values():
            v.stop()
        broker.stop()


@pytest.fixture
def wallet(world: World) -> Iterator[Wallet]:
    """A wallet registered as ann at the real broker."""
    w = Wallet(world.tmp / "wallet")
    w.register(world.broker.grpc_address, "ann", PASSWORD)
    yield w
    w.close()
