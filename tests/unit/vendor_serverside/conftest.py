"""Server-side wallets at one vendor: the vendor unit tests' in-memory broker
extended with the wallet calls (ExchangeWalletCode, AcquireCoin with a
WalletGrant, DrawWindow), over real SQLite files."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from netpay.clock import FakeClock
from netpay.envelope import SigningKey, open_envelope, seal
from netpay.errors import (
    BrokerUnavailable,
    CoinBusy,
    Insufficient,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from tests.unit.vendor.conftest import (  # noqa: F401 (fixtures, re-exported)
    FakeBroker,
    FakeBrokerClient,
    FakePeers,
    broker,
    clock,
    peer_registry,
)
from vendor.services import VendorServices
from vendor.storage import Base, VendorUnit


class FakeWalletClient(FakeBrokerClient):
    """The wallet RPCs of one vendor over the shared FakeBroker."""

    def __init__(
        self,
        broker: FakeBroker,  # noqa: F811 (not the fixture)
        vendor_id: str,
        codes: dict[str, tuple[str, str]],
    ) -> None:
        super().__init__(broker, vendor_id)
        self.codes = codes  # code -> (ecoin_id, vendor_id)
        self.draws: list[tuple[int, int]] = []
        self.lose_next_draw = False
        self.wrong_word = False
        self.busy = False
        # Runs once at the start of the next draw, before it is recorded: a twin
        # request (another worker) that draws and commits first.
        self.twin: Callable[[], object] | None = None

    def exchange_wallet_code(self, code: str) -> bpb.ExchangeWalletCodeResponse:
        found = self.codes.get(code)
        if found is None or found[1] != self.vendor_id:
            raise NotFound("no such code")
        del self.codes[code]
        coin = self.broker.coins[found[0]]
        body = open_envelope(coin.touchstone, pb.Touchstone, self.broker.key.public_key)
        grant = seal(
            pb.WalletGrant(
                grant_id=secrets.token_hex(16),
                ecoin_id=found[0],
                vendor_id=self.vendor_id,
                max_units=body.n - coin.latest_index,
                expires_at_ms=body.expires_at_ms,
                broker_id=self.broker.broker_id,
                issued_at_ms=self.broker.clock.now_ms(),
            ),
            self.broker.key,
        )
        return bpb.ExchangeWalletCodeResponse(
            grant=grant, touchstone=coin.touchstone, latest_index=coin.latest_index
        )

    def _grant(self, envelope: pb.Envelope, ecoin_id: str) -> pb.WalletGrant:
        grant = open_envelope(envelope, pb.WalletGrant, self.broker.key.public_key)
        if grant.vendor_id != self.vendor_id or grant.ecoin_id != ecoin_id:
            raise PermissionDenied("not your grant")
        return grant

    def acquire_coin_with_grant(
        self, ecoin_id: str, wallet_grant: pb.Envelope, *, force: bool = False
    ) -> bpb.AcquireCoinResponse:
        b = self.broker
        with b.lock:
            b._check_up("AcquireCoin")
            self._grant(wallet_grant, ecoin_id)
            coin = b._coin(ecoin_id)
            if coin.holder == self.vendor_id:
                return bpb.AcquireCoinResponse(custody=coin.grants[coin.epoch])
            if coin.holder is None:
                b._open_epoch(coin, self.vendor_id, coin.latest_index, coin.latest_word, "acquire")
                return bpb.AcquireCoinResponse(custody=coin.grants[coin.epoch])
            return bpb.AcquireCoinResponse(
                handoff=bpb.HandOffRequired(
                    grant=b.hand_off_grant(ecoin_id, self.vendor_id),
                    holder_certificate=b.certificate(coin.holder),
                    touchstone=coin.touchstone,
                )
            )

    def draw_window(
        self, wallet_grant: pb.Envelope, epoch: int, units: int
    ) -> bpb.DrawWindowResponse:
        b = self.broker
        with b.lock:
            b._check_up("DrawWindow")
            grant = self._grant(wallet_grant, open_ecoin(wallet_grant, b))
            if self.twin is not None:
                twin, self.twin = self.twin, None
                twin()
            coin = b._coin(grant.ecoin_id)
            if self.busy:
                raise CoinBusy("a hand-off grant was issued", retry_after_s=30)
            if coin.holder != self.vendor_id or coin.epoch != epoch:
                raise PreconditionFailed("not the holder")
            if units > coin.chain.n - coin.latest_index:
                raise Insufficient("not enough words")
            start, top = coin.latest_index, coin.latest_index + units
            coin.latest_index, coin.latest_word = top, coin.chain.word(top)
            self.draws.append((start, top))
            if self.lose_next_draw:
                self.lose_next_draw = False
                raise BrokerUnavailable("UNAVAILABLE: the reply was lost")
            word = coin.chain.word(top - 1) if self.wrong_word else coin.chain.word(top)
            return bpb.DrawWindowResponse(
                ecoin_id=grant.ecoin_id,
                epoch=epoch,
                from_index=start,
                to_index=top,
                payword=word,
                touchstone=coin.touchstone,
                grant_units_left=grant.max_units,
            )


def open_ecoin(envelope: pb.Envelope, b: FakeBroker) -> str:
    return open_envelope(envelope, pb.WalletGrant, b.key.public_key).ecoin_id


MakeWalletVendor = Callable[[str], tuple[VendorServices, FakeWalletClient]]


@pytest.fixture
def codes() -> dict[str, tuple[str, str]]:
    return {}


@pytest.fixture
def make_wallet_vendor(
    tmp_path: Path,
    broker: FakeBroker,  # noqa: F811 (the re-exported fixture)
    clock: FakeClock,  # noqa: F811
    peer_registry: dict[str, VendorServices | None],  # noqa: F811
    codes: dict[str, tuple[str, str]],
) -> Iterator[MakeWalletVendor]:
    engines = []

    def make(vendor_id: str) -> tuple[VendorServices, FakeWalletClient]:
        key = SigningKey.generate()
        address = broker.enroll(vendor_id, key)
        engine = make_engine(sqlite_url(tmp_path / f"{vendor_id}.sqlite"), private=True)
        engines.append(engine)
        uow = UnitOfWork(engine, VendorUnit)
        uow.create_all(Base)
        client = FakeWalletClient(broker, vendor_id, codes)
        services = VendorServices(
            uow=uow,
            identity=broker.identity(vendor_id, key),
            broker=client,
            peers=FakePeers(peer_registry, vendor_id, clock),
            limits=broker.limits,
            clock=clock,
        )
        peer_registry[address] = services
        return services, client

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def new_code(codes: dict[str, tuple[str, str]]) -> Callable[[str, str], str]:
    def make(ecoin_id: str, vendor_id: str) -> str:
        code = secrets.token_urlsafe(32)
        codes[code] = (ecoin_id, vendor_id)
        return code

    return make
