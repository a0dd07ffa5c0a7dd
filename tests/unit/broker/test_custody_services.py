"""Custody use cases (broker.services.custody) over the in-memory unit of work: acquire,
hand-off grant, RecordHandoff, Reclaim, Checkpoint, and compare-and-sets that lose."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from broker.domain import CoinState, EpochOpening, EpochView, IndexedWord
from broker.services import (
    BrokerServices,
    CheckpointStatus,
    CustodyGrantView,
    HandOffRequiredView,
)
from netpay.chain import Chain
from netpay.clock import FakeClock
from netpay.envelope import open_envelope
from netpay.errors import (
    AlreadyExists,
    BadPayword,
    Conflict,
    PermissionDenied,
    PreconditionFailed,
)
from netpay.v1 import statements_pb2 as pb
from tests.unit.broker.conftest import PASSWORD, Vendor, bought_coin, enrolled_vendor
from tests.unit.broker.fakes import FakeState, FakeUnitOfWork


@dataclass
class World:
    services: BrokerServices
    uow: FakeUnitOfWork
    clock: FakeClock
    v1: Vendor
    v2: Vendor
    chain: Chain

    @property
    def ecoin_id(self) -> str:
        return self.chain.ecoin_id.hex()

    def acquire(self, vendor: Vendor, index: int = 5) -> CustodyGrantView | HandOffRequiredView:
        return self.services.acquire_coin(
            vendor.vendor_id, self.ecoin_id, index, self.chain.word(index), force=False
        )

    def held(self, vendor: Vendor, index: int = 5) -> CustodyGrantView:
        granted = self.acquire(vendor, index)
        assert isinstance(granted, CustodyGrantView)
        return granted

    def epoch(self, epoch: int) -> EpochView:
        return self.uow.state.epochs[(self.ecoin_id, epoch)]


@pytest.fixture
def w(services: BrokerServices, uow: FakeUnitOfWork, clock: FakeClock) -> World:
    reader_id = services.register_reader("ann", PASSWORD)
    v1, v2 = enrolled_vendor(services, "v1"), enrolled_vendor(services, "v2")
    return World(services, uow, clock, v1, v2, bought_coin(services, reader_id))


def test_acquire_opens_the_first_epoch_for_the_caller(w: World) -> None:
    granted = w.held(w.v1)
    lease_ttl_s = w.services.limits.lease_ttl_s
    assert (granted.epoch, granted.holder, granted.base) == (1, "v1", IndexedWord(0, w.chain.root))
    assert granted.lease_ttl_s == lease_ttl_s
    assert w.uow.committed
    coin = w.uow.state.coins[w.ecoin_id].view
    assert (coin.state, coin.holder, coin.epoch) == (CoinState.HELD, "v1", 1)
    assert coin.lease_expires_ms == w.clock.now_ms() + lease_ttl_s * 1000
    assert w.epoch(1).opened_by is EpochOpening.ACQUIRE and w.epoch(1).end is None


def test_acquire_again_by_the_holder_renews_its_lease(w: World) -> None:
    w.held(w.v1)
    w.clock.advance(30)
    again = w.held(w.v1, 6)
    assert again.epoch == 1
    coin = w.uow.state.coins[w.ecoin_id].view
    assert coin.lease_expires_ms == w.clock.now_ms() + w.services.limits.lease_ttl_s * 1000
    assert list(w.uow.state.epochs) == [(w.ecoin_id, 1)]


def test_a_bad_proof_is_refused_and_nothing_moves(w: World) -> None:
    before = w.uow.snapshot()
    with pytest.raises(BadPayword):
        w.services.acquire_coin("v1", w.ecoin_id, 5, w.chain.word(6), force=False)
    assert not w.uow.committed
    assert w.uow.state == before


def test_another_vendor_gets_a_handoff_grant_naming_the_holder(w: World) -> None:
    w.held(w.v1)
    required = w.acquire(w.v2, 7)
    assert isinstance(required, HandOffRequiredView)
    grant = open_envelope(required.grant, pb.HandOffGrant, w.services.public_key)
    assert (grant.ecoin_id, grant.from_vendor, grant.to_vendor, grant.epoch) == (
        w.ecoin_id,
        "v1",
        "v2",
        1,
    )
    assert required.holder_certificate == w.services.vendor_certificate("v1")
    coin = w.uow.state.coins[w.ecoin_id].view
    assert (coin.holder, coin.grant_epoch, coin.grant_to_vendor) == ("v1", 1, "v2")


def test_record_handoff_closes_the_epoch_and_opens_the_next_once(w: World) -> None:
    w.held(w.v1)
    w.acquire(w.v2, 7)
    index = w.v1.coin_index(w.chain, 1, 7, to="v2")
    granted = w.services.record_handoff("v2", index)
    assert (granted.epoch, granted.holder, granted.base) == (
        2,
        "v2",
        IndexedWord(7, w.chain.word(7)),
    )
    assert w.epoch(1).end == IndexedWord(7, w.chain.word(7))
    assert (w.epoch(2).opened_by, w.epoch(2).opened_from) == (EpochOpening.HANDOFF, "v1")
    coin = w.uow.state.coins[w.ecoin_id].view
    assert (coin.holder, coin.epoch, coin.latest.index, coin.grant_to_vendor) == ("v2", 2, 7, None)
    # The same RecordHandoff again (a retry) answers the same grant and opens nothing.
    assert w.services.record_handoff("v2", index).epoch == 2
    assert len(w.uow.state.epochs) == 2


def test_a_coin_index_handed_to_another_vendor_is_refused(w: World) -> None:
    w.held(w.v1)
    w.acquire(w.v2, 7)
    before = w.uow.snapshot()
    with pytest.raises(PermissionDenied, match="another vendor"):
        w.services.record_handoff("v2", w.v1.coin_index(w.chain, 1, 7, to="v3"))
    assert w.uow.state == before


def test_reclaim_opens_the_next_epoch_for_the_holder(w: World) -> None:
    w.held(w.v1)
    index = w.v1.coin_index(w.chain, 1, 8)
    granted = w.services.reclaim("v1", w.ecoin_id, 1, index)
    assert (granted.epoch, granted.holder, granted.base.index) == (2, "v1", 8)
    assert (w.epoch(2).opened_by, w.epoch(2).opened_from) == (EpochOpening.RECLAIM, "v1")
    assert w.epoch(1).end == IndexedWord(8, w.chain.word(8))
    assert w.services.reclaim("v1", w.ecoin_id, 1, index).epoch == 2  # a retry
    before = w.uow.snapshot()
    with pytest.raises(PreconditionFailed, match="no longer current"):
        w.services.reclaim("v1", w.ecoin_id, 1, w.v1.coin_index(w.chain, 1, 9))
    assert w.uow.state == before


def test_checkpoint_acknowledges_the_index_and_renews_the_lease(w: World) -> None:
    w.held(w.v1)
    w.clock.advance(20)
    outcome = w.services.checkpoint("v1", [w.v1.coin_index(w.chain, 1, 9)])
    [item] = outcome.results
    assert (item.status, item.acknowledged_index, item.ecoin_id) == (
        CheckpointStatus.LEASED,
        9,
        w.ecoin_id,
    )
    coin = w.uow.state.coins[w.ecoin_id].view
    assert coin.latest == IndexedWord(9, w.chain.word(9))
    assert coin.lease_expires_ms == w.clock.now_ms() + w.services.limits.lease_ttl_s * 1000


def test_checkpoint_rejects_an_index_below_the_latest_word(w: World) -> None:
    w.held(w.v1)
    w.services.checkpoint("v1", [w.v1.coin_index(w.chain, 1, 9)])
    before = w.uow.snapshot()
    [item] = w.services.checkpoint("v1", [w.v1.coin_index(w.chain, 1, 4)]).results
    assert item.status is CheckpointStatus.REJECTED and item.acknowledged_index == 9
    assert item.detail.startswith("failed_precondition: index 4 is below")
    assert w.uow.state == before


def test_a_frozen_coin_is_revoked_at_checkpoint(w: World) -> None:
    w.held(w.v1)
    w.services.freeze_coin(w.ecoin_id)
    [item] = w.services.checkpoint("v1", [w.v1.coin_index(w.chain, 1, 9)]).results
    assert item.status is CheckpointStatus.REJECTED and item.revoked
    assert w.uow.state.coins[w.ecoin_id].view.latest.index == 0


def test_a_lost_compare_and_set_refuses_the_checkpoint_and_keeps_the_other_write(
    w: World,
) -> None:
    w.held(w.v1)
    moved = IndexedWord(3, w.chain.word(3))

    def another_checkpoint(state: FakeState) -> None:
        coin = state.coins[w.ecoin_id]
        coin.view = replace(coin.view, latest=moved)

    w.uow.interleave(another_checkpoint)
    before = w.uow.snapshot()
    with pytest.raises(Conflict, match="changed meanwhile"):
        w.services.checkpoint("v1", [w.v1.coin_index(w.chain, 1, 9)])
    assert not w.uow.committed
    # Only the other writer's change is there; the lost checkpoint left nothing.
    another_checkpoint(before)
    assert w.uow.state == before
    assert w.uow.state.coins[w.ecoin_id].view.latest == moved


def test_a_step_refused_after_a_write_rolls_the_whole_acquisition_back(w: World) -> None:
    taken = EpochView(1, "v9", IndexedWord(0, w.chain.root), EpochOpening.ACQUIRE, None)

    def another_epoch(state: FakeState) -> None:
        state.epochs[(w.ecoin_id, 1)] = taken

    w.uow.interleave(another_epoch)
    with pytest.raises(AlreadyExists):
        w.acquire(w.v1)  # the coin's row is written, then opening epoch 1 fails
    assert not w.uow.committed
    coin = w.uow.state.coins[w.ecoin_id].view
    assert (coin.state, coin.holder, coin.epoch) == (CoinState.FREE, None, 0)
    assert w.uow.state.epochs == {(w.ecoin_id, 1): taken}


def test_a_checkpoint_whose_second_index_loses_writes_neither(w: World) -> None:
    w.held(w.v1)
    second = bought_coin(w.services, w.uow.state.coins[w.ecoin_id].owner)
    w.services.acquire_coin("v1", second.ecoin_id.hex(), 2, second.word(2), force=False)

    def another_checkpoint(state: FakeState) -> None:
        coin = state.coins[second.ecoin_id.hex()]
        coin.view = replace(coin.view, latest=IndexedWord(1, second.word(1)))

    # Lands after the second coin was read, just before its write.
    w.uow.interleave(another_checkpoint, at_write=2)
    with pytest.raises(Conflict):
        w.services.checkpoint("v1", [w.v1.coin_index(w.chain, 1, 9), w.v1.coin_index(second, 1, 4)])
    # The first coin's acknowledged index was written, then rolled back with the rest.
    assert w.uow.state.coins[w.ecoin_id].view.latest.index == 0
    assert w.uow.state.coins[second.ecoin_id.hex()].view.latest.index == 1
