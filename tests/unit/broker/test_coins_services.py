"""Coin use cases (broker.services.coins) over the in-memory unit of work: buy,
status, the reader's list, freeze and unfreeze."""

from __future__ import annotations

import pytest

from broker.domain import AccountRef, CoinState
from broker.services import BrokerServices, BuyCoinInput, WalletKind
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.clock import FakeClock
from netpay.envelope import open_envelope
from netpay.errors import AlreadyExists, Insufficient, NotFound
from netpay.v1 import statements_pb2 as pb
from tests.unit.broker.conftest import DEPOSIT_MINOR, PASSWORD, bought_coin
from tests.unit.broker.fakes import FakeUnitOfWork


@pytest.fixture
def reader_id(services: BrokerServices) -> str:
    return services.register_reader("ann", PASSWORD)


def _order(chain: Chain, request_id: str = "r-1", unit_value_minor: int = 1) -> BuyCoinInput:
    return BuyCoinInput(
        request_id=request_id,
        ecoin_id=chain.ecoin_id.hex(),
        root=chain.root,
        n=chain.n,
        unit_value_minor=unit_value_minor,
        currency="EUR",
        wallet_kind=WalletKind.CLIENT_SIDE,
    )


def test_buying_debits_the_reader_and_signs_a_free_coin(
    services: BrokerServices, uow: FakeUnitOfWork, reader_id: str
) -> None:
    chain = Chain.make(new_ecoin_id(), 100, new_seed())
    bought = services.buy_coin(reader_id, _order(chain, unit_value_minor=2))
    assert uow.committed and bought.amount_minor == 200 and bought.currency == "EUR"
    touchstone = open_envelope(bought.touchstone, pb.Touchstone, services.public_key)
    assert (touchstone.ecoin_id, touchstone.root, touchstone.owner) == (
        chain.ecoin_id.hex(),
        chain.root,
        reader_id,
    )
    assert uow.state.balance(AccountRef.reader(reader_id, "EUR")) == DEPOSIT_MINOR - 200
    assert uow.state.balance(AccountRef.broker_float("EUR")) == 200
    coin = uow.state.coins[chain.ecoin_id.hex()].view
    assert (coin.state, coin.epoch, coin.latest.index, coin.holder) == (CoinState.FREE, 0, 0, None)


def test_the_same_request_again_returns_the_first_coin_and_charges_once(
    services: BrokerServices, uow: FakeUnitOfWork, reader_id: str
) -> None:
    chain = Chain.make(new_ecoin_id(), 100, new_seed())
    first = services.buy_coin(reader_id, _order(chain))
    before = uow.snapshot()
    again = services.buy_coin(reader_id, _order(chain))
    assert again == first
    assert uow.state == before
    other = Chain.make(new_ecoin_id(), 100, new_seed())
    with pytest.raises(AlreadyExists, match="different request"):
        services.buy_coin(reader_id, _order(other))  # the same request id, another coin
    assert uow.state == before


def test_a_coin_the_balance_does_not_cover_is_refused_and_nothing_moves(
    services: BrokerServices, uow: FakeUnitOfWork, reader_id: str
) -> None:
    chain = Chain.make(new_ecoin_id(), 100, new_seed())
    before = uow.snapshot()
    with pytest.raises(Insufficient):
        services.buy_coin(reader_id, _order(chain, unit_value_minor=30))  # 30.00 > 10.00
    assert not uow.committed
    assert uow.state == before


def test_status_for_the_owner_and_any_vendor_but_not_another_reader(
    services: BrokerServices, reader_id: str, clock: FakeClock
) -> None:
    chain = bought_coin(services, reader_id)
    ecoin_id = chain.ecoin_id.hex()
    mine = services.get_coin(ecoin_id, reader_id=reader_id)
    assert (mine.state, mine.frozen, mine.epoch, mine.latest.word) == (
        CoinState.FREE,
        False,
        0,
        chain.root,
    )
    assert services.get_coin(ecoin_id, vendor_id="daily") == mine
    other = services.register_reader("bob", PASSWORD)
    with pytest.raises(NotFound):
        services.get_coin(ecoin_id, reader_id=other)
    clock.advance(services.limits.coin_expiry_s)
    assert services.get_coin(ecoin_id, vendor_id="daily").state is CoinState.EXPIRED


def test_the_list_is_the_readers_coins_newest_first(
    services: BrokerServices, reader_id: str, clock: FakeClock
) -> None:
    older = bought_coin(services, reader_id)
    clock.advance(1)
    newer = bought_coin(services, reader_id)
    bought_coin(services, services.register_reader("bob", PASSWORD))
    listed = [
        open_envelope(c.touchstone, pb.Touchstone, services.public_key).ecoin_id
        for c in services.list_coins(reader_id)
    ]
    assert listed == [newer.ecoin_id.hex(), older.ecoin_id.hex()]


def test_freeze_and_unfreeze_by_the_owner(
    services: BrokerServices, uow: FakeUnitOfWork, reader_id: str
) -> None:
    ecoin_id = bought_coin(services, reader_id).ecoin_id.hex()
    assert services.freeze_coin(ecoin_id, reader_id=reader_id).frozen
    assert uow.committed and uow.state.coins[ecoin_id].view.frozen
    commits = uow.commits
    assert services.freeze_coin(ecoin_id, reader_id=reader_id).frozen  # idempotent
    assert uow.commits == commits  # nothing to write
    assert not services.freeze_coin(ecoin_id, frozen=False, reader_id=reader_id).frozen
    assert not uow.state.coins[ecoin_id].view.frozen


def test_another_reader_cannot_freeze_the_coin(
    services: BrokerServices, uow: FakeUnitOfWork, reader_id: str
) -> None:
    ecoin_id = bought_coin(services, reader_id).ecoin_id.hex()
    other = services.register_reader("bob", PASSWORD)
    before = uow.snapshot()
    with pytest.raises(NotFound):
        services.freeze_coin(ecoin_id, reader_id=other)
    assert uow.state == before and not uow.state.coins[ecoin_id].view.frozen
    with pytest.raises(NotFound):
        services.freeze_coin("ab" * 16)
