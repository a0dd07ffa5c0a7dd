"""Fixtures for the reader-money unit tests: spending limits and auto-load.

The fake broker (``tests/unit/wallet/fakes.py``: readers, balances, coins,
lost replies, injected failures) and the fake newspaper with clicks and
cookie-cache windows (``tests/unit/wallet_windows/conftest.py``) are reused
as they are; the newspaper is served by werkzeug on 127.0.0.1:0. Every party
shares one FakeClock, so a test moves to the next UTC day without sleeping.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ewallet_client.domain import CoinEvent
from ewallet_client.store import PEBBLE_EVERY, WalletStore
from ewallet_client.wallet import Wallet
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.clock import FakeClock
from netpay.transport.server import create_grpc_server
from netpay.v1 import broker_pb2_grpc
from tests.unit.wallet.fakes import DAY_MS, FakeBroker, FakeBrokerServicer, Server
from tests.unit.wallet_windows.conftest import FakeVendor

__all__ = ["DAY_MS", "FakeBroker", "FakeVendor", "add_coin"]

PASSWORD = "correct horse battery staple"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> FakeBroker:
    return FakeBroker(clock)


@pytest.fixture
def vendor(broker: FakeBroker) -> Iterator[FakeVendor]:
    """A newspaper selling /articles/<id> for 5 cents, with windows."""
    v = FakeVendor(broker)
    server = Server(v.app())
    v.url = server.origin
    broker.certify(v.vendor_id, v.key.public_key, server.origin)
    yield v
    server.stop()


@pytest.fixture
def wallet_dir(tmp_path: Path) -> Path:
    return tmp_path / "wallet"


@pytest.fixture
def make_wallet(
    wallet_dir: Path, clock: FakeClock, broker: FakeBroker
) -> Iterator[Callable[[], Wallet]]:
    """A Wallet object on the wallet dir (as each command of the CLI would be)."""
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
def store(tmp_path: Path) -> Iterator[WalletStore]:
    s = WalletStore(tmp_path / "store")
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


def add_coin(
    store: WalletStore,
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


def allocate(store: WalletStore, amount: int, now_ms: int, **kwargs: Any) -> int:
    """One click of ``amount`` EUR cents at the vendor "daily"; returns the new index."""
    alloc = store.allocate(
        amount_minor=amount,
        currency="EUR",
        realm="daily",
        url="http://127.0.0.1:1/articles/1",
        now_ms=now_ms,
        skew_ms=5000,
        **kwargs,
    )
    return alloc.index
