"""The fixtures the vendor's unit tests share (tests/unit/vendor, vendor_windows, vendor_serverside).

Real :class:`VendorServices` over SQLite files under tmp_path, each booked
at the one fake broker (tests/fakes/broker/) and calling it through its own
client; other vendors are reached in process (:class:`FakePeers`). Each of
those folders' conftest imports the fixtures it uses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netpay.chain import Chain
from netpay.clock import FakeClock
from netpay.envelope import SigningKey
from netpay.errors import Unavailable
from netpay.header import Credentials, format_authorization
from netpay.limits import Limits
from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url
from netpay.v1 import statements_pb2 as pb
from tests.fakes.broker import FakeBroker, FakeWalletClient
from tests.fakes.broker.fixtures import broker, clock
from vendor.services import BrokerClient, HandOffResult, VendorServices
from vendor.storage import Base, VendorUnit

__all__ = [
    "FakePeers",
    "MakeVendor",
    "MakeWalletVendor",
    "broker",
    "clock",
    "header",
    "make_header",
    "make_vendor",
    "make_wallet_vendor",
    "new_code",
    "peer_registry",
    "vendor",
]


class FakePeers:
    """``PeerClient`` calling other vendors' services in process."""

    def __init__(self, registry: dict[str, VendorServices | None], caller: str, clock: FakeClock):
        self.registry = registry
        self.caller = caller
        self.clock = clock
        self.calls = 0

    def hand_off(self, address: str, grant: pb.Envelope) -> HandOffResult:
        self.calls += 1
        target = self.registry.get(address)
        if target is None:
            raise Unavailable("UNAVAILABLE: peer down")
        return target.hand_off_with_credit(grant, self.caller, self.clock.now_ms())


def header(
    chain: Chain, prev: int, index: int, *, word: bytes | None = None, **extra: object
) -> str:
    return format_authorization(
        Credentials(
            ecoin_id=chain.ecoin_id.hex(),
            prev=prev,
            index=index,
            payword=chain.word(index) if word is None else word,
            **extra,  # type: ignore[arg-type]
        )
    )


@pytest.fixture
def peer_registry() -> dict[str, VendorServices | None]:
    return {}


MakeVendor = Callable[..., VendorServices]


@pytest.fixture
def make_vendor(
    tmp_path: Path,
    broker: FakeBroker,
    clock: FakeClock,
    peer_registry: dict[str, VendorServices | None],
) -> Iterator[MakeVendor]:
    """``make_vendor(vendor_id="daily-hash", *, limits=None, client=None)``: a vendor
    booked at the broker, calling it through ``client`` (``broker.client(vendor_id)``)."""
    engines = []

    def make(
        vendor_id: str = "daily-hash",
        *,
        limits: Limits | None = None,
        client: BrokerClient | None = None,
    ) -> VendorServices:
        key = SigningKey.generate()
        address = broker.enroll(vendor_id, key)
        engine = make_engine(sqlite_url(tmp_path / f"{vendor_id}.sqlite"), private=True)
        engines.append(engine)
        uow = UnitOfWork(engine, VendorUnit)
        uow.create_all(Base)
        services = VendorServices(
            uow=uow,
            identity=broker.identity(vendor_id, key),
            broker=broker.client(vendor_id) if client is None else client,
            peers=FakePeers(peer_registry, vendor_id, clock),
            limits=limits or broker.limits,
            clock=clock,
        )
        peer_registry[address] = services
        return services

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def vendor(make_vendor: MakeVendor) -> VendorServices:
    return make_vendor("daily-hash")


@pytest.fixture
def make_header() -> Callable[..., str]:
    return header


MakeWalletVendor = Callable[[str], tuple[VendorServices, FakeWalletClient]]


@pytest.fixture
def make_wallet_vendor(broker: FakeBroker, make_vendor: MakeVendor) -> MakeWalletVendor:
    """A vendor with server-side wallets, and its client (the wallet RPCs' knobs)."""

    def make(vendor_id: str) -> tuple[VendorServices, FakeWalletClient]:
        client = broker.wallet_client(vendor_id)
        return make_vendor(vendor_id, client=client), client

    return make


@pytest.fixture
def new_code(broker: FakeBroker) -> Callable[[str, str], str]:
    """``new_code(ecoin_id, vendor_id)``: a wallet code the broker will exchange once."""
    return broker.wallet_code
