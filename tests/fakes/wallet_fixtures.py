"""The fixtures the wallet's unit tests share (tests/unit/wallet, wallet_windows, wallet_limits).

Each of those folders' conftest imports the ones it uses (pytest finds a
fixture a conftest binds). Every party shares one FakeClock, so a test moves
to the next UTC day without sleeping: the fake broker (tests/fakes/broker/,
the one the vendor tests use too, with its ``clock`` and ``broker``
fixtures), the fake newspaper (tests/fakes/vendor.py, served by
tests/fakes/pages.py) and the wallet under test.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ewallet_client.domain import CoinEvent
from ewallet_client.store import PEBBLE_EVERY
from ewallet_client.wallet import Wallet
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.clock import FakeClock
from netpay.transport.server import create_grpc_server
from netpay.v1 import broker_pb2_grpc
from tests.fakes.broker import DAY_MS, FakeBroker, FakeBrokerServicer
from tests.fakes.broker.fixtures import broker, clock
from tests.fakes.pages import Server
from tests.fakes.vendor import FakeVendor
from tests.fakes.wallet_store import StoreShortcuts

__all__ = [
    "PASSWORD",
    "add_active_coin",
    "broker",
    "clock",
    "grpc_broker",
    "make_wallet",
    "start_vendor",
    "store",
    "vendor",
    "wallet",
    "wallet_dir",
]

PASSWORD = "correct horse battery staple"


@pytest.fixture
def start_vendor(broker: FakeBroker) -> Iterator[Callable[..., FakeVendor]]:
    """``start_vendor(vendor_id="daily", **fields)``: a served newspaper the broker certified."""
    servers: list[Server] = []

    def start(vendor_id: str = "daily", **kwargs: Any) -> FakeVendor:
        v = FakeVendor(broker, vendor_id=vendor_id, **kwargs)
        server = Server(v.app())
        servers.append(server)
        v.url = server.origin
        broker.certify(vendor_id, v.key.public_key, server.origin)
        return v

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def vendor(start_vendor: Callable[..., FakeVendor]) -> FakeVendor:
    """A newspaper selling /articles/<id> for 5 cents, with windows."""
    return start_vendor()


@pytest.fixture
def wallet_dir(tmp_path: Path) -> Path:
    return tmp_path / "wallet"


@pytest.fixture
def make_wallet(
    wallet_dir: Path, clock: FakeClock, broker: FakeBroker
) -> Iterator[Callable[[], Wallet]]:
    """Another Wallet object on the wallet dir (as each command of the CLI would be)."""
    made: list[Wallet] = []

    def make() -> Wallet:
        w = Wallet(wallet_dir, clock=clock, broker_factory=broker.factory)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture
def wallet(make_wallet: Callable[[], Wallet]) -> Wallet:
    """A wallet registered as ann at the fake broker (10,000 cents in the bank), no coin."""
    w = make_wallet()
    w.register("127.0.0.1:7000", "ann", PASSWORD)
    return w


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StoreShortcuts]:
    """A wallet file of its own (no Wallet), seen through its one-unit shortcuts."""
    s = StoreShortcuts.open(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture
def grpc_broker(broker: FakeBroker) -> Iterator[str]:
    """The fake broker behind a real gRPC server (for the CLI); yields its address."""
    servicer = FakeBrokerServicer(broker)
    server = create_grpc_server(
        "127.0.0.1:0",
        [lambda s: broker_pb2_grpc.add_BrokerServicer_to_server(servicer, s)],
        ["netpay.v1.Broker"],
    )
    yield server.address
    server.stop(0)


def add_active_coin(
    store: StoreShortcuts,
    now_ms: int,
    n: int = 1000,
    *,
    unit_value_minor: int = 1,
    currency: str = "EUR",
    expires_at_ms: int | None = None,
) -> str:
    """Put an active coin straight into a store (no broker); returns its id."""
    ecoin = new_ecoin_id()
    seed = new_seed()
    chain = Chain.make(ecoin, n, seed, pebble_every=PEBBLE_EVERY)
    store.add_pending_coin(
        ecoin_id=ecoin.hex(),
        request_id=secrets.token_hex(16),
        seed=seed,
        n=n,
        unit_value_minor=unit_value_minor,
        currency=currency,
        pebbles=chain.pebbles,
        now_ms=now_ms,
    )
    store.change_state(
        ecoin.hex(),
        CoinEvent.SOLD,
        touchstone=b"not checked here",
        expires_at_ms=expires_at_ms or now_ms + 90 * DAY_MS,
    )
    return ecoin.hex()
