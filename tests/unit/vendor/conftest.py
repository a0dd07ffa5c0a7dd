"""Fakes for the vendor's unit tests: an in-memory broker (implements
``vendor.services.BrokerClient`` per vendor) and in-process peers
(``vendor.services.PeerClient``), over real SQLite files under tmp_path."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import pytest

from netpay.chain import Chain, new_ecoin_id, new_seed, verify_word
from netpay.clock import FakeClock
from netpay.envelope import SigningKey, open_envelope, seal
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    BrokerUnavailable,
    NotFound,
    PreconditionFailed,
    Unavailable,
)
from netpay.header import Credentials, format_authorization
from netpay.limits import DEFAULT_LIMITS, Limits
from netpay.sqlstore import UnitOfWork, make_engine, sqlite_url
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from vendor.services import HandOffResult, VendorIdentity, VendorServices
from vendor.storage import Base, VendorUnit


@dataclass
class FakeCoin:
    chain: Chain
    touchstone: pb.Envelope
    holder: str | None = None
    epoch: int = 0
    latest_index: int = 0
    latest_word: bytes = b""
    grants: dict[int, bpb.CustodyGrant] = field(default_factory=dict)
    opened_by: dict[int, str] = field(default_factory=dict)  # epoch -> "acquire" | ...
    frozen: bool = False


class FakeBroker:
    """A small, faithful-enough model of the broker's custody rules."""

    def __init__(self, clock: FakeClock, limits: Limits = DEFAULT_LIMITS) -> None:
        self.clock = clock
        self.limits = limits
        self.broker_id = "broker"
        self.key = SigningKey.generate()
        self.coins: dict[str, FakeCoin] = {}
        self.vendor_keys: dict[str, bytes] = {}
        self.addresses: dict[str, str] = {}
        self.down = False
        self.window_credits: list[pb.Envelope] = []  # forwarded with RecordHandoff
        self.calls: collections.Counter[str] = collections.Counter()
        self.lock = threading.RLock()

    # -- test helpers ----------------------------------------------------------

    def enroll(self, vendor_id: str, key: SigningKey) -> str:
        self.vendor_keys[vendor_id] = key.public_key
        self.addresses[vendor_id] = f"{vendor_id}.test:1"
        return self.addresses[vendor_id]

    def identity(self, vendor_id: str, key: SigningKey) -> VendorIdentity:
        return VendorIdentity(vendor_id, key, self.broker_id, self.key.public_key)

    def issue(
        self, n: int = 100, *, unit_value: int = 1, currency: str = "EUR", expires_in_s: int = 86400
    ) -> Chain:
        chain = Chain.make(new_ecoin_id(), n, new_seed())
        now = self.clock.now_ms()
        touchstone = seal(
            pb.Touchstone(
                ecoin_id=chain.ecoin_id.hex(),
                root=chain.root,
                n=n,
                unit_value_minor=unit_value,
                currency=currency,
                wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
                owner="reader",
                issued_at_ms=now,
                expires_at_ms=now + expires_in_s * 1000,
                broker_id=self.broker_id,
            ),
            self.key,
        )
        self.coins[chain.ecoin_id.hex()] = FakeCoin(
            chain, touchstone, latest_word=chain.root, latest_index=0
        )
        return chain

    def certificate(self, vendor_id: str) -> pb.Envelope:
        return seal(
            pb.VendorCertificate(
                vendor_id=vendor_id,
                public_key=self.vendor_keys[vendor_id],
                grpc_address=self.addresses[vendor_id],
                web_origin=f"http://{vendor_id}.test",
                valid_until_ms=self.clock.now_ms() + 86_400_000,
                broker_id=self.broker_id,
            ),
            self.key,
        )

    def hand_off_grant(self, ecoin_id: str, to_vendor: str) -> pb.Envelope:
        coin = self.coins[ecoin_id]
        assert coin.holder is not None
        return seal(
            pb.HandOffGrant(
                ecoin_id=ecoin_id,
                from_vendor=coin.holder,
                to_vendor=to_vendor,
                epoch=coin.epoch,
                expires_at_ms=self.clock.now_ms() + 30_000,
                broker_id=self.broker_id,
            ),
            self.key,
        )

    def move_elsewhere(self, ecoin_id: str, holder: str = "elsewhere") -> None:
        """The coin's epoch ends behind the holder's back (say a forced acquisition)."""
        coin = self.coins[ecoin_id]
        coin.epoch += 1
        coin.holder = holder

    def client(self, vendor_id: str) -> FakeBrokerClient:
        return FakeBrokerClient(self, vendor_id)

    # -- broker rules ----------------------------------------------------------

    def _check_up(self, name: str) -> None:
        self.calls[name] += 1
        if self.down:
            raise BrokerUnavailable("UNAVAILABLE: fake broker is down")

    def _open_epoch(self, coin: FakeCoin, holder: str, index: int, word: bytes, how: str) -> None:
        coin.epoch += 1
        coin.holder = holder
        coin.latest_index, coin.latest_word = index, word
        coin.opened_by[coin.epoch] = how
        coin.grants[coin.epoch] = bpb.CustodyGrant(
            ecoin_id=coin.chain.ecoin_id.hex(),
            epoch=coin.epoch,
            base_index=index,
            base_word=word,
            touchstone=coin.touchstone,
            lease_ttl_s=self.limits.lease_ttl_s,
            max_skew_s=self.limits.max_skew_s,
            holder=holder,
        )

    def _coin(self, ecoin_id: str) -> FakeCoin:
        coin = self.coins.get(ecoin_id)
        if coin is None:
            raise NotFound("no such coin")
        return coin

    def _open_index(self, envelope: pb.Envelope) -> pb.CoinIndex:
        return open_envelope(envelope, pb.CoinIndex, lambda m: self.vendor_keys[m.vendor_id])

    def _hashes_down(self, coin: FakeCoin, ci: pb.CoinIndex) -> bool:
        if ci.index == coin.latest_index:
            return ci.payword == coin.latest_word
        return ci.index > coin.latest_index and verify_word(
            coin.chain.ecoin_id, coin.latest_index, coin.latest_word, ci.index, ci.payword, 10**6
        )

    def acquire(self, caller: str, ecoin_id: str, j: int, w: bytes) -> bpb.AcquireCoinResponse:
        with self.lock:
            self._check_up("AcquireCoin")
            coin = self._coin(ecoin_id)
            if coin.holder == caller:
                return bpb.AcquireCoinResponse(custody=coin.grants[coin.epoch])
            if j <= coin.latest_index:
                raise AlreadySpent("spent", index=coin.latest_index, payword=coin.latest_word)
            bound = self.limits.acquire_bound_units(100)
            if not verify_word(
                coin.chain.ecoin_id, coin.latest_index, coin.latest_word, j, w, bound
            ):
                raise BadPayword("proof does not verify")
            if coin.holder is None:
                self._open_epoch(coin, caller, coin.latest_index, coin.latest_word, "acquire")
                return bpb.AcquireCoinResponse(custody=coin.grants[coin.epoch])
            return bpb.AcquireCoinResponse(
                handoff=bpb.HandOffRequired(
                    grant=self.hand_off_grant(ecoin_id, caller),
                    holder_certificate=self.certificate(coin.holder),
                    touchstone=coin.touchstone,
                )
            )

    def record_handoff(self, caller: str, envelope: pb.Envelope) -> bpb.CustodyGrant:
        with self.lock:
            self._check_up("RecordHandoff")
            ci = self._open_index(envelope)
            coin = self._coin(ci.ecoin_id)
            if (
                coin.holder == caller
                and ci.epoch == coin.epoch - 1
                and coin.opened_by.get(coin.epoch) == "handoff"
            ):
                return coin.grants[coin.epoch]
            if (
                ci.epoch != coin.epoch
                or ci.vendor_id != coin.holder
                or ci.to_vendor != caller
                or not self._hashes_down(coin, ci)
            ):
                raise PreconditionFailed("hand-off does not match the current epoch")
            self._open_epoch(coin, caller, ci.index, ci.payword, "handoff")
            return coin.grants[coin.epoch]

    def reclaim(
        self, caller: str, ecoin_id: str, epoch: int, envelope: pb.Envelope
    ) -> bpb.CustodyGrant:
        with self.lock:
            self._check_up("Reclaim")
            coin = self._coin(ecoin_id)
            if (
                coin.holder == caller
                and coin.epoch == epoch + 1
                and coin.opened_by.get(coin.epoch) == "reclaim"
            ):
                return coin.grants[coin.epoch]
            ci = self._open_index(envelope)
            if epoch != coin.epoch or coin.holder != caller or ci.vendor_id != caller:
                raise PreconditionFailed("the epoch is closed")
            if not self._hashes_down(coin, ci):
                raise PreconditionFailed("index does not hash down")
            self._open_epoch(coin, caller, ci.index, ci.payword, "reclaim")
            return coin.grants[coin.epoch]

    def checkpoint(self, caller: str, envelopes: Sequence[pb.Envelope]) -> bpb.CheckpointResponse:
        with self.lock:
            self._check_up("Checkpoint")
            reply = bpb.CheckpointResponse(
                lease_ttl_s=self.limits.lease_ttl_s, max_skew_s=self.limits.max_skew_s
            )
            for envelope in envelopes:
                ci = self._open_index(envelope)
                coin = self._coin(ci.ecoin_id)
                result = reply.results.add(ecoin_id=ci.ecoin_id, epoch=ci.epoch)
                if coin.holder != caller or coin.epoch != ci.epoch:
                    result.status = bpb.CHECKPOINT_STATUS_CLOSED
                    result.acknowledged_index = coin.latest_index
                elif coin.frozen:
                    result.status = bpb.CHECKPOINT_STATUS_REJECTED
                    result.detail = "revoked: the coin is frozen"
                    result.revoked = True
                elif not self._hashes_down(coin, ci):
                    result.status = bpb.CHECKPOINT_STATUS_REJECTED
                    result.acknowledged_index = coin.latest_index
                else:
                    coin.latest_index, coin.latest_word = ci.index, ci.payword
                    result.status = bpb.CHECKPOINT_STATUS_LEASED
                    result.acknowledged_index = ci.index
            return reply


class FakeBrokerClient:
    """``BrokerClient`` for one vendor over a shared FakeBroker."""

    def __init__(self, broker: FakeBroker, vendor_id: str) -> None:
        self.broker = broker
        self.vendor_id = vendor_id
        self.forced = 0  # forced acquisitions asked for (this fake never recalls)

    def get_vendor_certificate(self, vendor_id: str) -> pb.Envelope:
        self.broker._check_up("GetVendorCertificate")
        if vendor_id not in self.broker.vendor_keys:
            raise NotFound("no such vendor")
        return self.broker.certificate(vendor_id)

    def acquire_coin(
        self,
        ecoin_id: str,
        proof_index: int,
        proof_word: bytes,
        *,
        force: bool = False,
        currency: str = "",
    ) -> bpb.AcquireCoinResponse:
        self.forced += int(force)
        return self.broker.acquire(self.vendor_id, ecoin_id, proof_index, proof_word)

    def record_handoff(
        self, coin_index: pb.Envelope, window_credit: pb.Envelope | None = None
    ) -> bpb.CustodyGrant:
        if window_credit is not None:
            self.broker.window_credits.append(window_credit)
        return self.broker.record_handoff(self.vendor_id, coin_index)

    def reclaim(self, ecoin_id: str, epoch: int, coin_index: pb.Envelope) -> bpb.CustodyGrant:
        return self.broker.reclaim(self.vendor_id, ecoin_id, epoch, coin_index)

    def checkpoint(self, indexes: Sequence[pb.Envelope]) -> bpb.CheckpointResponse:
        return self.broker.checkpoint(self.vendor_id, indexes)


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
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> FakeBroker:
    return FakeBroker(clock)


@pytest.fixture
def peer_registry() -> dict[str, VendorServices | None]:
    return {}


MakeVendor = Callable[..., VendorServices]


@pytest.fixture
def make_vendor(
    tmp_path, broker: FakeBroker, clock: FakeClock, peer_registry
) -> Iterator[MakeVendor]:
    engines = []

    def make(vendor_id: str = "daily-hash", *, limits: Limits | None = None) -> VendorServices:
        key = SigningKey.generate()
        address = broker.enroll(vendor_id, key)
        engine = make_engine(sqlite_url(tmp_path / f"{vendor_id}.sqlite"), private=True)
        engines.append(engine)
        uow = UnitOfWork(engine, VendorUnit)
        uow.create_all(Base)
        services = VendorServices(
            uow=uow,
            identity=broker.identity(vendor_id, key),
            broker=broker.client(vendor_id),
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
