"""A real broker and a real newspaper (gRPC on 127.0.0.1:0, the site over
loopback, SQLite files under tmp_path) with a dashboard password, and a
reader who buys coins straight from the broker and pays with hand-built
NetPay headers."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
import requests

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.clock import FakeClock, SystemClock
from netpay.header import Credentials, format_authorization
from netpay.transport.auth import bearer_metadata
from netpay.v1 import broker_pb2, broker_pb2_grpc
from netpay.v1 import statements_pb2 as pb
from vendor.articles import DATA_DIR
from vendor.server import VendorConfig, VendorHandle, start_vendor

DASHBOARD_PASSWORD = "ink and paper, 1896"
HTML = {"Accept": "text/html"}
JSON = {"Accept": "application/json"}
CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


@dataclass
class Coin:
    chain: Chain
    n: int
    unit_value_minor: int
    index: int = 0  # the reader's own index: never moves down
    spent: list[tuple[int, int]] = field(default_factory=list)

    @property
    def ecoin_id(self) -> str:
        return self.chain.ecoin_id.hex()

    def header(self, words: int) -> str:
        """The header paying the next ``words`` words (moves the reader's index)."""
        prev, self.index = self.index, self.index + words
        return format_authorization(
            Credentials(self.ecoin_id, prev, self.index, self.chain.word(self.index))
        )


@dataclass
class Reader:
    stub: broker_pb2_grpc.BrokerStub
    token: str

    def buy(self, n: int, *, unit_value_minor: int = 1, currency: str = "EUR") -> Coin:
        chain = Chain.make(new_ecoin_id(), n, new_seed())
        self.stub.BuyCoin(
            broker_pb2.BuyCoinRequest(
                request_id=secrets.token_hex(8),
                ecoin_id=chain.ecoin_id.hex(),
                root=chain.root,
                n=n,
                unit_value_minor=unit_value_minor,
                currency=currency,
                wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
            ),
            metadata=bearer_metadata(self.token),
            timeout=10,
        )
        return Coin(chain, n, unit_value_minor)


@dataclass
class Site:
    clock: FakeClock
    broker: BrokerHandle
    vendor: VendorHandle
    reader: Reader

    @property
    def url(self) -> str:
        return self.vendor.web_url

    def get(
        self, path: str, header: str | None = None, accept: dict[str, str] = HTML
    ) -> requests.Response:
        headers = dict(accept)
        if header is not None:
            headers["Authorization"] = header
        return requests.get(self.url + path, headers=headers, timeout=30)


def articles_file(tmp_path: Path) -> Path:
    """The packaged articles plus one priced in US dollars."""
    data = json.loads((DATA_DIR / "articles.json").read_text(encoding="utf-8"))
    data["articles"].append(
        {
            "id": "dollar",
            "title": "A story sold in dollars",
            "amount": 5,
            "currency": "USD",
            "summary": "Priced in another currency than the coins.",
            "body": ["Five cents, American."],
        }
    )
    path = tmp_path / "articles.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def login_form(http: requests.Session, base: str) -> str:
    """GET the login page; returns its CSRF token."""
    page = http.get(base + "/dashboard/login", timeout=30)
    assert page.status_code == 200, page.text
    match = CSRF_RE.search(page.text)
    assert match is not None
    return match.group(1)


def log_in(http: requests.Session, base: str, password: str = DASHBOARD_PASSWORD) -> None:
    token = login_form(http, base)
    resp = http.post(
        base + "/dashboard/login",
        data={"csrf_token": token, "password": password},
        allow_redirects=False,
        timeout=30,
    )
    assert resp.status_code == 303, resp.text
    assert resp.headers["Location"].endswith("/dashboard")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[tuple[BrokerHandle, FakeClock]]:
    clock = FakeClock(start_ms=SystemClock().now_ms())
    handle = start_broker(
        BrokerConfig(data_dir=tmp_path / "broker", demo_deposit_minor=100_000), clock=clock
    )
    try:
        yield handle, clock
    finally:
        handle.stop()


@pytest.fixture
def reader(broker: tuple[BrokerHandle, FakeClock]) -> Iterator[Reader]:
    channel = grpc.insecure_channel(broker[0].grpc_address)
    stub = broker_pb2_grpc.BrokerStub(channel)
    stub.RegisterReader(
        broker_pb2.RegisterReaderRequest(username="reader", password="reader password"),
        timeout=10,
    )
    token = stub.Login(
        broker_pb2.LoginRequest(username="reader", password="reader password"), timeout=10
    ).token
    yield Reader(stub, token)
    channel.close()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "dashboard-password"
    path.write_text(DASHBOARD_PASSWORD + "\nthe second line is ignored\n", encoding="utf-8")
    return path


def _start(
    tmp_path: Path,
    broker: BrokerHandle,
    clock: FakeClock | None,
    vendor_id: str,
    **config: object,
) -> VendorHandle:
    settings: dict[str, object] = {
        "data_dir": tmp_path / vendor_id,
        "broker_addr": broker.grpc_address,
        "workers": 0,
        "background": False,
        "display_name": "The Daily Hash",
        "articles_file": articles_file(tmp_path),
    }
    settings.update(config)
    if "enroll_token" not in config:
        settings["enroll_token"] = add_vendor(tmp_path / "broker", vendor_id)
    return start_vendor(VendorConfig(**settings), clock=clock)  # type: ignore[arg-type]


@pytest.fixture
def site(
    tmp_path: Path,
    broker: tuple[BrokerHandle, FakeClock],
    reader: Reader,
    password_file: Path,
) -> Iterator[Site]:
    handle, clock = broker
    vendor = _start(tmp_path, handle, clock, "daily-hash", dashboard_password_file=password_file)
    try:
        yield Site(clock, handle, vendor, reader)
    finally:
        vendor.stop()


@pytest.fixture
def start_vendor_here(tmp_path: Path, broker: tuple[BrokerHandle, FakeClock]) -> Iterator[object]:
    """Start more vendors on the same broker: ``start(vendor_id, clock=..., **config)``."""
    handles: list[VendorHandle] = []

    def run(vendor_id: str, *, fake_clock: bool = True, **config: object) -> VendorHandle:
        handle = _start(tmp_path, broker[0], broker[1] if fake_clock else None, vendor_id, **config)
        handles.append(handle)
        return handle

    yield run
    for handle in reversed(handles):
        handle.stop()
