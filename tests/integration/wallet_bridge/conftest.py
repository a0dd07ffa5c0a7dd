"""A real broker, real newspapers and a funded wallet served by a real bridge (port 0).

``World.page(origin)`` is what a newspaper page's JavaScript would send: the
bridge cannot tell a script from this client, the browser test shows the
same through Chromium.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from ewallet_client import Wallet
from ewallet_client.bridge import BridgeCaps, BridgeHandle, start_bridge
from tests.fakes.wallet_store import shortcuts
from vendor.server import VendorConfig, VendorHandle, start_vendor

PASSWORD = "bridge pass phrase"
COIN_UNITS = 1000


@dataclass
class World:
    tmp: Path
    broker: BrokerHandle
    vendors: dict[str, VendorHandle]
    wallet: Wallet  # the reader's own view of the wallet (another Wallet object)
    bridges: list[BridgeHandle] = field(default_factory=list)

    @property
    def bridge(self) -> BridgeHandle:
        return self.bridges[0]

    def origin(self, vendor_id: str) -> str:
        return self.vendors[vendor_id].web_url

    def article(self, vendor_id: str, rank: int = 0) -> dict[str, Any]:
        """A paid article of the vendor (cheapest first)."""
        with requests.Session() as s:
            items = s.get(self.origin(vendor_id) + "/api/articles", timeout=10).json()
        paid = sorted((a for a in items if a["amount"] > 0), key=lambda a: (a["amount"], a["id"]))
        return dict(paid[rank])

    def free_article(self, vendor_id: str) -> str:
        with requests.Session() as s:
            items = s.get(self.origin(vendor_id) + "/api/articles", timeout=10).json()
        return str(next(a["url"] for a in items if a["amount"] == 0))

    def approve(self, vendor_id: str, **caps: int | None) -> None:
        shortcuts(self.wallet).approve_origin(
            self.origin(vendor_id),
            max_click_minor=caps.get("max_click_minor"),
            max_day_minor=caps.get("max_day_minor"),
            now_ms=self.wallet.clock.now_ms(),
        )

    def start_bridge(self, caps: BridgeCaps | None = None) -> BridgeHandle:
        handle = start_bridge(
            Wallet(self.tmp / "wallet"), listen="127.0.0.1:0", caps=caps, close_wallet=True
        )
        self.bridges.append(handle)
        return handle

    def index(self) -> int:
        return sum(c.index for c in self.wallet.coins())

    def post(
        self,
        bridge_url: str,
        url: str,
        *,
        origin: str | None,
        host: str | None = None,
        content_type: str = "application/json",
        data: bytes | None = None,
    ) -> requests.Response:
        """POST /v1/authorize as a page of ``origin`` would."""
        headers = {"Content-Type": content_type}
        if origin is not None:
            headers["Origin"] = origin
        if host is not None:
            headers["Host"] = host
        body = data if data is not None else json.dumps({"url": url}).encode()
        return requests.post(bridge_url + "/v1/authorize", data=body, headers=headers, timeout=15)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    broker_dir = tmp_path / "broker"
    broker = start_broker(BrokerConfig(data_dir=broker_dir))
    vendors: dict[str, VendorHandle] = {}
    wallet: Wallet | None = None
    w: World | None = None
    try:
        for vendor_id, origin in (
            ("daily", None),
            ("gazette", None),
            # Certified for another origin than the one it serves from.
            ("liar", "http://127.0.0.1:1"),
        ):
            token = add_vendor(broker_dir, vendor_id, origin)
            vendors[vendor_id] = start_vendor(
                VendorConfig(
                    data_dir=tmp_path / vendor_id,
                    broker_addr=broker.grpc_address,
                    enroll_token=token,
                    workers=0,
                    background=False,
                )
            )
        wallet = Wallet(tmp_path / "wallet")
        wallet.register(broker.grpc_address, "ann", PASSWORD)
        wallet.buy(COIN_UNITS)
        w = World(tmp_path, broker, vendors, wallet)
        w.start_bridge()
        yield w
    finally:
        for b in w.bridges if w is not None else []:
            b.stop()
        if wallet is not None:
            wallet.close()
        for v in vendors.values():
            v.stop()
        broker.stop()
