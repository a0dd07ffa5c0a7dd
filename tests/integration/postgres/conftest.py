"""A real broker and real vendors in process, each over its own fresh database on
the backend under test (tests/dbs.py: SQLite files under tmp_path, or new
databases in the PostgreSQL cluster of NETPAY_TEST_PG_URL).

Reuses the fixtures of tests/integration/vendor (``clock``, ``broker_dir``,
``broker_stub``, ``reader``); ``broker`` and ``start`` are redefined here to pass
the databases. The tests use the HTTP helpers of tests/integration/vendor_windows
and the books' checks of tests/integration/redemption."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.server import BrokerConfig, BrokerHandle, add_vendor, start_broker
from netpay.clock import FakeClock
from netpay.files import read_json
from tests.dbs import BACKENDS, fresh_db_url
from tests.integration.vendor import conftest as vendor_fixtures
from tests.integration.vendor.conftest import StartVendor
from vendor.domain import CoinView
from vendor.server import VendorConfig, VendorHandle, start_vendor

# Fixtures reused by name from tests/integration/vendor; its ``broker`` and ``start``
# are redefined below.
clock = vendor_fixtures.clock  # a FakeClock at the real time
broker_dir = vendor_fixtures.broker_dir
broker_stub = vendor_fixtures.broker_stub
reader = vendor_fixtures.reader  # "alice", logged in at the broker


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def broker_db(backend: str, tmp_path: Path) -> str:
    return fresh_db_url(backend, tmp_path, "broker")


@pytest.fixture
def broker(broker_dir: Path, broker_db: str, clock: FakeClock) -> Iterator[BrokerHandle]:
    handle = start_broker(
        BrokerConfig(data_dir=broker_dir, grpc_addr="127.0.0.1:0", db_url=broker_db), clock=clock
    )
    yield handle
    handle.stop()


@pytest.fixture
def start(
    tmp_path: Path,
    backend: str,
    broker: BrokerHandle,
    broker_dir: Path,
    broker_db: str,
    clock: FakeClock,
) -> Iterator[StartVendor]:
    """``start(vendor_id)``: enroll and start a vendor over a fresh database."""
    handles: list[VendorHandle] = []

    def run(vendor_id: str) -> VendorHandle:
        handle = start_vendor(
            VendorConfig(
                data_dir=tmp_path / vendor_id,
                broker_addr=broker.grpc_address,
                enroll_token=add_vendor(broker_dir, vendor_id, db_url=broker_db),
                db_url=fresh_db_url(backend, tmp_path, vendor_id),
                workers=0,
                background=False,
            ),
            clock=clock,
        )
        handles.append(handle)
        return handle

    yield run
    for handle in handles:
        handle.stop()


def vendor_token(data_dir: Path) -> str:
    """The vendor's bearer token at the broker (from its data dir)."""
    return str(read_json(data_dir / "vendor.json")["vendor_token"])


def coin_view(vendor: VendorHandle, ecoin_id: str) -> CoinView:
    """The vendor's row of a coin (it must have one)."""
    stored = vendor.services.coin(ecoin_id)
    assert stored is not None, (vendor.vendor_id, ecoin_id)
    return stored.view
