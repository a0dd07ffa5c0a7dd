"""Broker use cases over the in-memory FakeUnitOfWork (tests/unit/broker/fakes.py)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher

from broker.services import BrokerServices, BuyCoinInput, WalletKind
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.clock import FakeClock
from netpay.envelope import SigningKey, seal
from netpay.limits import DEFAULT_LIMITS
from netpay.v1 import statements_pb2 as pb
from tests.unit.broker.fakes import FakeUnitOfWork

PASSWORD = "correct horse battery"
DEPOSIT_MINOR = 1_000


@dataclass
class Vendor:
    vendor_id: str
    key: SigningKey
    token: str

    def coin_index(self, chain: Chain, epoch: int, index: int, *, to: str = "") -> pb.Envelope:
        return seal(
            pb.CoinIndex(
                ecoin_id=chain.ecoin_id.hex(),
                epoch=epoch,
                index=index,
                payword=chain.word(index),
                vendor_id=self.vendor_id,
                to_vendor=to,
                issued_at_ms=1,
            ),
            self.key,
        )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def uow() -> FakeUnitOfWork:
    return FakeUnitOfWork()


@pytest.fixture
def services(uow: FakeUnitOfWork, clock: FakeClock) -> BrokerServices:
    return BrokerServices(
        uow,
        SigningKey.generate(),
        "broker",
        limits=DEFAULT_LIMITS,
        currencies=("EUR",),
        demo_deposit_minor=DEPOSIT_MINOR,
        clock=clock,
        # Cheap Argon2id: these tests check the rules, not the hash's cost.
        password_hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
    )


def enrolled_vendor(services: BrokerServices, vendor_id: str) -> Vendor:
    """A vendor admitted and registered through the identity use cases."""
    enrollment = services.add_vendor(vendor_id, f"http://{vendor_id}.example:8001")
    key = SigningKey.generate()
    registered = services.register_vendor(
        enrollment_token=enrollment,
        bearer_token=None,
        public_key=key.public_key,
        grpc_address="127.0.0.1:9000",
        web_origin="",
        display_name=vendor_id.title(),
    )
    assert registered.vendor_token is not None
    return Vendor(vendor_id, key, registered.vendor_token)


def bought_coin(services: BrokerServices, reader_id: str, n: int = 100) -> Chain:
    """A client-side coin of ``n`` one-cent units, bought by the reader."""
    chain = Chain.make(new_ecoin_id(), n, new_seed())
    services.buy_coin(
        reader_id,
        BuyCoinInput(
            request_id=f"buy-{chain.ecoin_id.hex()[:8]}",
            ecoin_id=chain.ecoin_id.hex(),
            root=chain.root,
            n=n,
            unit_value_minor=1,
            currency="EUR",
            wallet_kind=WalletKind.CLIENT_SIDE,
        ),
    )
    return chain
