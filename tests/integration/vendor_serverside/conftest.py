"""A real broker (gRPC + portal on 127.0.0.1:0, SQLite in tmp_path) and real
vendors in process (workers=0), for server-side wallets at the vendor.

Newspaper 1 listens on 127.0.0.2 and newspaper 2 on 127.0.0.3 (the broker on
127.0.0.1): cookies are not separated by port, so each site needs its own
host for its ``netpay_wallet`` cookie, as on the real web.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import grpc
import pytest
import requests

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from netpay.clock import FakeClock, SystemClock
from netpay.transport.auth import bearer_metadata
from netpay.transport.server import channel_options
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb
from vendor.server import VendorConfig, VendorHandle, start_vendor

WALLET_PASSWORD = "wallet pass phrase 42"
READER_PASSWORD = "correct horse battery"
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Browser:
    """One browser: a cookie jar, and every request it sent (to check what
    the newspapers saw)."""

    http: requests.Session = field(default_factory=requests.Session)
    sent: list[requests.PreparedRequest] = field(default_factory=list)

    def get(self, url: str, **kw: Any) -> requests.Response:
        resp = self.http.get(url, timeout=30, allow_redirects=False, **kw)
        self.sent.append(resp.request)
        return resp

    def post(self, url: str, data: dict[str, str], **kw: Any) -> requests.Response:
        resp = self.http.post(url, data=data, timeout=30, allow_redirects=False, **kw)
        self.sent.append(resp.request)
        return resp

    def sign_in(
        self,
        vendor: VendorHandle,
        ecoin_id: str,
        next_path: str = "/articles/1",
        *,
        one_click: bool = False,
        password: str = WALLET_PASSWORD,
    ) -> requests.Response:
        """The newspaper's sign-in link, the broker portal, back to the newspaper.

        Returns the newspaper's answer to the return: a page that moves on to
        ``next`` (a same-origin navigation; a redirect would arrive cross-site)."""
        start = self.get(vendor.web_url + "/netpay/wallet/signin", params={"next": next_path})
        assert start.status_code == 303, start.text
        portal = start.headers["Location"]
        page = self.get(portal)
        assert page.status_code == 200, page.text
        match = _CSRF_RE.search(page.text)
        assert match is not None, page.text
        query = parse_qs(urlsplit(portal).query)
        data = {
            "csrf_token": match.group(1),
            "vendor": query["vendor"][0],
            "return_to": query["return_to"][0],
        }
        if one_click:
            assert f"Continue as e-coin {ecoin_id}" in page.text
            assert 'name="password"' not in page.text
            data["continue"] = "yes"
        else:
            data.update(ecoin_id=ecoin_id, password=password)
        base = portal.split("/wallet/signin", 1)[0]
        back = self.post(base + "/wallet/signin", data)
        assert back.status_code == 303, back.text
        assert back.headers["Location"].startswith(vendor.web_url + "/netpay/wallet/return?")
        done = self.get(back.headers["Location"])
        assert done.status_code == 200, done.text
        assert f'<meta http-equiv="refresh" content="0;url={next_path}">' in done.text
        return done

    def read(self, vendor: VendorHandle, article: str, **headers: str) -> requests.Response:
        return self.get(f"{vendor.web_url}/articles/{article}", headers=headers)

    def close(self) -> None:
        self.http.close()


@dataclass
class World:
    broker: BrokerHandle
    stub: Any
    clock: FakeClock
    reader_token: str
    reader_id: str
    start_vendor: Callable[[str, str], VendorHandle]
    browsers: list[Browser] = field(default_factory=list)

    def browser(self) -> Browser:
        self.browsers.append(Browser())
        return self.browsers[-1]

    def buy(self, n: int = 200, password: str = WALLET_PASSWORD) -> bpb.BuyCoinResponse:
        reply: bpb.BuyCoinResponse = self.stub.BuyCoin(
            bpb.BuyCoinRequest(
                request_id=secrets.token_hex(8),
                n=n,
                unit_value_minor=1,
                currency="EUR",
                wallet_kind=pb.WALLET_KIND_SERVER_SIDE,
                wallet_password=password,
            ),
            metadata=bearer_metadata(self.reader_token),
            timeout=10,
        )
        return reply

    def coin(self, ecoin_id: str) -> bpb.CoinStatus:
        status: bpb.CoinStatus = self.stub.GetCoin(
            bpb.GetCoinRequest(ecoin_id=ecoin_id),
            metadata=bearer_metadata(self.reader_token),
            timeout=10,
        )
        return status


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    clock = FakeClock(start_ms=SystemClock().now_ms())
    broker_dir = tmp_path / "broker"
    broker = start_broker(
        BrokerConfig(data_dir=broker_dir, grpc_addr="127.0.0.1:0", web_addr="127.0.0.1:0"),
        clock=clock,
    )
    vendors: list[VendorHandle] = []
    channel = grpc.insecure_channel(broker.grpc_address, options=channel_options())
    made: World | None = None
    try:
        stub = broker_pb2_grpc.BrokerStub(channel)  # type: ignore[no-untyped-call]
        registered = stub.RegisterReader(
            bpb.RegisterReaderRequest(username="alice", password=READER_PASSWORD), timeout=10
        )
        login = stub.Login(bpb.LoginRequest(username="alice", password=READER_PASSWORD))

        def run(vendor_id: str, host: str) -> VendorHandle:
            handle = start_vendor(
                VendorConfig(
                    data_dir=tmp_path / vendor_id,
                    broker_addr=broker.grpc_address,
                    enroll_token=add_vendor(broker_dir, vendor_id),
                    web_addr=f"{host}:0",
                    workers=0,
                    background=False,
                ),
                clock=clock,
            )
            vendors.append(handle)
            return handle

        made = World(broker, stub, clock, login.token, registered.reader_id, run)
        yield made
    finally:
        if made is not None:
            for b in made.browsers:
                b.close()
        for handle in vendors:
            handle.stop()
        channel.close()
        broker.stop()
