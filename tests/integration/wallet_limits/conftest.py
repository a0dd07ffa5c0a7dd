"""A real broker and a real newspaper in process, and a registered wallet.

gRPC on 127.0.0.1:0, the newspaper's web site served in process, SQLite
files under tmp_path, one FakeClock for every party (as
tests/integration/wallet_windows does). The broker can be stopped and
started again on the same address and data dir: an outage.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from ewallet_client import Wallet
from netpay.clock import FakeClock
from vendor.server import VendorConfig, VendorHandle, start_vendor

PASSWORD = "limits pass phrase"
BANK_MINOR = 10_000  # the demo bank's opening deposit per reader


@dataclass
class World:
    clock: FakeClock
    tmp: Path
    broker: BrokerHandle
    vendor: VendorHandle
    wallet: Wallet
    extra: list[Wallet] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.vendor.web_url

    def article(self, amount: int) -> str:
        """The URL of a paid article of the newspaper at this price."""
        with requests.Session() as s:
            items = s.get(self.origin + "/api/articles", timeout=10).json()
        return str(next(a["url"] for a in items if a["amount"] == amount))

    def new_wallet(self) -> Wallet:
        """Another Wallet on the same directory: the next command of the reader."""
        w = Wallet(self.tmp / "wallet", clock=self.clock)
        self.extra.append(w)
        return w

    def bank_minor(self, wallet: Wallet | None = None) -> int:
        balances = (wallet or self.wallet).bank_balances()
        return int(str(next(b["balance_minor"] for b in balances if b["currency"] == "EUR")))

    def stop_broker(self) -> None:
        self.broker.stop()

    def restart_broker(self) -> None:
        self.broker = start_broker(
            BrokerConfig(data_dir=self.tmp / "broker", grpc_addr=self.broker.grpc_address),
            clock=self.clock,
        )


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = FakeClock()
    broker_dir = tmp_path / "broker"
    broker = start_broker(BrokerConfig(data_dir=broker_dir), clock=clock)
    vendor: VendorHandle | None = None
    wallet: Wallet | None = None
    made: World | None = None
    try:
        vendor = start_vendor(
            VendorConfig(
                data_dir=tmp_path / "daily",
                broker_addr=broker.grpc_address,
                enroll_token=add_vendor(broker_dir, "daily"),
                workers=0,
                background=False,
            ),
            clock=clock,
        )
        wallet = Wallet(tmp_path / "wallet", clock=clock)
        wallet.register(broker.grpc_address, "ann", PASSWORD)
        made = World(clock, tmp_path, broker, vendor, wallet)
        yield made
    finally:
        for w in made.extra if made is not None else []:
            w.close()
        if wallet is not None:
            wallet.close()
        if vendor is not None:
            vendor.stop()
        (made.broker if made is not None else broker).stop()


def json_post(url: str, body: dict[str, Any], origin: str) -> requests.Response:
    """What a newspaper page's script sends to the wallet bridge."""
    with requests.Session() as s:
        return s.post(url, json=body, headers={"Origin": origin}, timeout=10)
