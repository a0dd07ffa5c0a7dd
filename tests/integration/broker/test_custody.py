"""Coin custody over a real channel: AcquireCoin, RecordHandoff, Reclaim, Checkpoint."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from sqlalchemy import select

from broker.domain import EpochOpening, IndexedWord
from broker.storage import CoinRow, CustodyEpochRow
from netpay.chain import new_ecoin_id, seen_of
from netpay.envelope import SigningKey, open_envelope, seal
from netpay.errors import (
    AlreadySpent,
    BadPayword,
    CoinBusy,
    Expired,
    Insufficient,
    LimitExceeded,
    NotFound,
    PreconditionFailed,
    Revoked,
    SignatureInvalid,
)
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb

BOUND = 200  # conftest LIMITS: 20 + 50 + 100 + 30 // 1


@dataclass
class World:
    h: Any
    reader: Any
    v1: Any
    v2: Any
    v3: Any
    coin: Any

    def coin_row(self, coin: Any = None) -> CoinRow:
        with self.h.broker.services.store.begin() as repos:
            row = repos.session.get(CoinRow, (coin or self.coin).ecoin_id)
            assert row is not None
            repos.session.expunge(row)  # keep its loaded values after the rollback
            return row

    def log(self, coin: Any = None) -> list[CustodyEpochRow]:
        with self.h.broker.services.store.begin() as repos:
            rows = list(
                repos.session.scalars(
                    select(CustodyEpochRow)
                    .where(CustodyEpochRow.ecoin_id == (coin or self.coin).ecoin_id)
                    .order_by(CustodyEpochRow.epoch)
                )
            )
            repos.session.expunge_all()
            return rows

    def status(self, coin: Any = None) -> bpb.CoinStatus:
        request = bpb.GetCoinRequest(ecoin_id=(coin or self.coin).ecoin_id)
        return self.h.stub.GetCoin(request, metadata=self.v3.md)

    def record(self, caller: Any, index: pb.Envelope) -> bpb.CustodyGrant:
        return self.h.stub.RecordHandoff(
            bpb.RecordHandoffRequest(coin_index=index), metadata=caller.md
        )

    def reclaim(self, caller: Any, epoch: int, index: pb.Envelope, coin: Any = None) -> Any:
        request = bpb.ReclaimRequest(
            ecoin_id=(coin or self.coin).ecoin_id, epoch=epoch, coin_index=index
        )
        return self.h.stub.Reclaim(request, metadata=caller.md)

    def checkpoint(self, caller: Any, *indexes: pb.Envelope) -> bpb.CheckpointResponse:
        return self.h.stub.Checkpoint(
            bpb.CheckpointRequest(indexes=list(indexes)), metadata=caller.md
        )


@pytest.fixture
def w(h: Any) -> World:
    reader = h.reader()
    return World(h, reader, h.vendor("v1"), h.vendor("v2"), h.vendor("v3"), h.buy(reader, 500))


# -- AcquireCoin --------------------------------------------------------------------


def test_acquiring_a_free_coin_grants_the_next_epoch(w: World) -> None:
    now = w.h.clock.now_ms()
    reply = w.h.acquire(w.v1, w.coin, 3)
    assert reply.WhichOneof("result") == "custody"
    g = reply.custody
    assert (g.ecoin_id, g.epoch, g.holder) == (w.coin.ecoin_id, 1, "v1")
    assert (g.base_index, g.base_word) == (0, w.coin.chain.root)
    assert g.touchstone == w.coin.touchstone
    assert (g.lease_ttl_s, g.max_skew_s) == (60, 5)
    status = w.status()
    assert (status.state, status.holder, status.epoch) == (bpb.COIN_STATE_HELD, "v1", 1)
    assert status.latest_index == 0  # the proof never moves the latest known word
    assert w.coin_row().lease_expires_ms == now + 60_000
    [epoch] = w.log()
    assert (epoch.epoch, epoch.holder, epoch.base_index, epoch.opened_by) == (1, "v1", 0, "acquire")
    assert epoch.end_index is None and epoch.closed_at_ms is None


def test_the_holder_repeating_acquire_gets_the_original_grant_and_a_new_lease(w: World) -> None:
    first = w.h.acquire(w.v1, w.coin, 3)
    w.h.clock.advance(30)
    again = w.h.acquire(w.v1, w.coin, 7)
    assert again.SerializeToString() == first.SerializeToString()
    assert w.coin_row().lease_expires_ms == w.h.clock.now_ms() + 60_000
    assert len(w.log()) == 1


def test_acquiring_a_held_coin_returns_a_handoff_grant(w: World) -> None:
    w.h.acquire(w.v1, w.coin, 3)
    now = w.h.clock.now_ms()
    reply = w.h.acquire(w.v2, w.coin, 4)
    assert reply.WhichOneof("result") == "handoff"
    grant = open_envelope(reply.handoff.grant, pb.HandOffGrant, w.h.broker.public_key)
    assert (grant.ecoin_id, grant.from_vendor, grant.to_vendor) == (w.coin.ecoin_id, "v1", "v2")
    assert (grant.epoch, grant.expires_at_ms, grant.broker_id) == (1, now + 30_000, "broker")
    assert reply.handoff.holder_certificate == w.v1.certificate
    assert reply.handoff.touchstone == w.coin.touchstone
    row = w.coin_row()
    assert (row.holder, row.epoch, row.grant_epoch, row.grant_to_vendor) == ("v1", 1, 1, "v2")


def test_acquire_proof_errors(w: World) -> None:
    h, chain = w.h, w.coin.chain
    h.acquire(w.v1, w.coin, 3)
    w.checkpoint(w.v1, w.v1.coin_index(chain, 1, 10))

    code, err = h.error(h.acquire, w.v2, w.coin, 10)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and isinstance(err, AlreadySpent)
    # 1.1: the latest index and its seen, never w[10] (it would prove nothing here,
    # but no refusal publishes a word).
    assert (err.index, err.seen) == (10, seen_of(chain.word(10)))
    for j in (10, 7):  # a spent j with a word that is not the coin's: nothing named
        request = bpb.AcquireCoinRequest(
            ecoin_id=w.coin.ecoin_id, proof_index=j, proof_word=b"\x01" * 32
        )
        code, err = h.error(h.stub.AcquireCoin, request, metadata=w.v2.md)
        assert isinstance(err, BadPayword) and (err.index, err.seen) == (None, None)

    request = bpb.AcquireCoinRequest(ecoin_id=w.coin.ecoin_id, proof_index=12)
    request.proof_word = chain.word(13)
    code, err = h.error(h.stub.AcquireCoin, request, metadata=w.v2.md)
    assert isinstance(err, BadPayword)

    code, err = h.error(h.acquire, w.v2, w.coin, 10 + BOUND + 1)
    assert isinstance(err, LimitExceeded)
    assert h.acquire(w.v2, w.coin, 10 + BOUND).WhichOneof("result") == "handoff"

    small = h.buy(w.reader, 5)
    code, err = h.error(
        h.stub.AcquireCoin,
        bpb.AcquireCoinRequest(ecoin_id=small.ecoin_id, proof_index=6, proof_word=b"\1" * 32),
        metadata=w.v2.md,
    )
    assert isinstance(err, Insufficient)

    # Forcing without a hand-off grant first (v3 never asked) is refused.
    code, err = h.error(h.acquire, w.v3, w.coin, 12, force=True)
    assert type(err) is PreconditionFailed and "acquire without force first" in err.detail

    unknown = bpb.AcquireCoinRequest(
        ecoin_id=new_ecoin_id().hex(), proof_index=1, proof_word=b"\0" * 32
    )
    code, err = h.error(h.stub.AcquireCoin, unknown, metadata=w.v2.md)
    assert code == grpc.StatusCode.NOT_FOUND and isinstance(err, NotFound)

    short = bpb.AcquireCoinRequest(ecoin_id=w.coin.ecoin_id, proof_index=12, proof_word=b"x")
    code, _ = h.error(h.stub.AcquireCoin, short, metadata=w.v2.md)
    assert code == grpc.StatusCode.INVALID_ARGUMENT

    code, _ = h.error(h.acquire, w.reader, w.coin, 12)  # a reader token is no vendor token
    assert code == grpc.StatusCode.UNAUTHENTICATED


def test_frozen_and_expired_coins_take_no_new_custody(w: World) -> None:
    h = w.h
    h.broker.services.freeze_coin(w.coin.ecoin_id)
    _, err = h.error(h.acquire, w.v1, w.coin, 3)
    assert isinstance(err, Revoked)
    h.broker.services.freeze_coin(w.coin.ecoin_id, frozen=False)
    assert h.acquire(w.v1, w.coin, 3).WhichOneof("result") == "custody"
    h.clock.advance(90 * 86_400)
    _, err = h.error(h.acquire, w.v2, w.coin, 3)
    assert isinstance(err, Expired)


# -- RecordHandoff --------------------------------------------------------------------


def handed_to_v2(w: World, index: int = 5) -> pb.Envelope:
    """v1 holds epoch 1, v2 got a grant; v1's CoinIndex for v2 at ``index``."""
    w.h.acquire(w.v1, w.coin, 3)
    assert w.h.acquire(w.v2, w.coin, index + 1).WhichOneof("result") == "handoff"
    return w.v1.coin_index(w.coin.chain, 1, index, to="v2")


def test_record_handoff_opens_the_next_epoch_for_the_new_holder(w: World) -> None:
    index = handed_to_v2(w, 5)
    grant = w.record(w.v2, index)
    assert (grant.ecoin_id, grant.epoch, grant.holder) == (w.coin.ecoin_id, 2, "v2")
    assert (grant.base_index, grant.base_word) == (5, w.coin.chain.word(5))
    assert grant.touchstone == w.coin.touchstone
    assert (grant.lease_ttl_s, grant.max_skew_s) == (60, 5)
    status = w.status()
    assert (status.holder, status.epoch, status.latest_index) == ("v2", 2, 5)
    assert status.latest_word == w.coin.chain.word(5)
    first, second = w.log()
    assert (first.end_index, first.end_word, first.close_reason) == (
        5,
        w.coin.chain.word(5),
        "handoff",
    )
    assert first.closed_at_ms == w.h.clock.now_ms()
    assert (second.holder, second.base_index, second.opened_by, second.opened_from) == (
        "v2",
        5,
        "handoff",
        "v1",
    )
    # A lost reply: the same call returns the same reply, and changes nothing.
    w.h.clock.advance(10)
    again = w.record(w.v2, index)
    assert again.SerializeToString() == grant.SerializeToString()
    assert len(w.log()) == 2
    assert w.coin_row().lease_expires_ms == w.h.clock.now_ms() + 60_000
    # v1 no longer holds the coin: acquiring it again is a hand-off from v2.
    assert w.h.acquire(w.v1, w.coin, 6).handoff.holder_certificate == w.v2.certificate


def test_record_handoff_at_the_latest_word_needs_no_hashing(w: World) -> None:
    w.h.acquire(w.v1, w.coin, 3)
    w.checkpoint(w.v1, w.v1.coin_index(w.coin.chain, 1, 7))
    w.h.acquire(w.v2, w.coin, 8)
    assert w.record(w.v2, w.v1.coin_index(w.coin.chain, 1, 7, to="v2")).base_index == 7
    below = w.v2.coin_index(w.coin.chain, 2, 6, to="v3")
    code, err = w.h.error(w.record, w.v3, below)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and type(err) is PreconditionFailed


def test_record_handoff_refusals_change_nothing(w: World) -> None:
    h, chain = w.h, w.coin.chain
    handed_to_v2(w, 5)
    cases: list[tuple[Any, pb.Envelope, type[Exception]]] = [
        (w.v2, w.v1.coin_index(chain, 1, 5, to="v3"), Exception),  # handed to another
        (w.v2, w.v1.coin_index(chain, 1, 5, to="v2", key=SigningKey.generate()), SignatureInvalid),
        (w.v2, w.v1.coin_index(chain, 2, 5, to="v2"), PreconditionFailed),  # not the epoch
        (w.v2, w.v3.coin_index(chain, 1, 5, to="v2"), PreconditionFailed),  # not the holder
        (w.v2, w.v2.coin_index(chain, 1, 5, to="v2"), Exception),  # to itself
        (w.v2, w.v1.coin_index(chain, 1, 5 + BOUND + 1, to="v2"), LimitExceeded),
    ]
    beyond = pb.CoinIndex(
        ecoin_id=w.coin.ecoin_id,
        epoch=1,
        index=501,
        payword=b"\1" * 32,
        vendor_id="v1",
        to_vendor="v2",
    )
    cases.append((w.v2, seal(beyond, w.v1.key), Insufficient))
    bad_word = pb.CoinIndex(
        ecoin_id=w.coin.ecoin_id,
        epoch=1,
        index=5,
        payword=chain.word(6),
        vendor_id="v1",
        to_vendor="v2",
    )
    cases.append((w.v2, seal(bad_word, w.v1.key), BadPayword))
    codes = []
    for caller, index, expected in cases:
        code, err = h.error(w.record, caller, index)
        assert isinstance(err, expected), (err, expected)
        codes.append(code)
    assert codes[0] == grpc.StatusCode.PERMISSION_DENIED
    assert codes[1] == grpc.StatusCode.INVALID_ARGUMENT
    assert codes[4] == grpc.StatusCode.INVALID_ARGUMENT
    status = w.status()
    assert (status.holder, status.epoch, status.latest_index) == ("v1", 1, 0)
    assert len(w.log()) == 1


def test_record_handoff_of_an_unknown_coin_is_not_found(w: World) -> None:
    index = seal(
        pb.CoinIndex(
            ecoin_id=new_ecoin_id().hex(),
            epoch=1,
            index=1,
            payword=b"\0" * 32,
            vendor_id="v1",
            to_vendor="v2",
        ),
        w.v1.key,
    )
    code, _ = w.h.error(w.record, w.v2, index)
    assert code == grpc.StatusCode.NOT_FOUND


# -- Reclaim ----------------------------------------------------------------------------


def test_reclaim_reopens_the_coin_for_its_holder(w: World) -> None:
    handed_to_v2(w, 5)
    own = w.v1.coin_index(w.coin.chain, 1, 5, to="v2")
    grant = w.reclaim(w.v1, 1, own)
    assert (grant.epoch, grant.holder, grant.base_index) == (2, "v1", 5)
    assert grant.base_word == w.coin.chain.word(5)
    again = w.reclaim(w.v1, 1, own)
    assert again.SerializeToString() == grant.SerializeToString()
    first, second = w.log()
    assert (first.end_index, first.close_reason) == (5, "reclaim")
    assert (second.holder, second.base_index, second.opened_by) == ("v1", 5, "reclaim")
    # The hand-off lost the race.
    code, err = w.h.error(w.record, w.v2, own)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and type(err) is PreconditionFailed


def test_record_handoff_first_makes_the_reclaim_fail(w: World) -> None:
    index = handed_to_v2(w, 5)
    w.record(w.v2, index)
    code, err = w.h.error(w.reclaim, w.v1, 1, index)
    assert code == grpc.StatusCode.FAILED_PRECONDITION and type(err) is PreconditionFailed
    reply = w.checkpoint(w.v1, w.v1.coin_index(w.coin.chain, 1, 5))
    assert reply.results[0].status == bpb.CHECKPOINT_STATUS_CLOSED


def test_reclaim_refusals(w: World) -> None:
    h, chain = w.h, w.coin.chain
    handed_to_v2(w, 5)
    # Signed by someone else than the caller.
    _, err = h.error(w.reclaim, w.v2, 1, w.v1.coin_index(chain, 1, 5))
    assert isinstance(err, SignatureInvalid)
    # The caller does not hold the epoch.
    code, err = h.error(w.reclaim, w.v2, 1, w.v2.coin_index(chain, 1, 5))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    # The CoinIndex is for another epoch than the request names.
    code, _ = h.error(w.reclaim, w.v1, 1, w.v1.coin_index(chain, 2, 5))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    # Below nothing, but a bad word.
    bad = pb.CoinIndex(
        ecoin_id=w.coin.ecoin_id, epoch=1, index=4, payword=chain.word(5), vendor_id="v1"
    )
    _, err = h.error(w.reclaim, w.v1, 1, seal(bad, w.v1.key))
    assert isinstance(err, BadPayword)
    assert len(w.log()) == 1


def test_reclaim_and_record_handoff_race_one_wins(w: World) -> None:
    h = w.h
    for _ in range(4):
        coin = h.buy(w.reader, 50)
        h.acquire(w.v1, coin, 1)
        h.acquire(w.v2, coin, 3)
        index = w.v1.coin_index(coin.chain, 1, 2, to="v2")
        start = threading.Barrier(2)

        def call(fn: Any, *args: Any, start: threading.Barrier = start) -> Any:
            start.wait()
            try:
                return fn(*args)
            except grpc.RpcError as exc:
                return exc

        with ThreadPoolExecutor(2) as pool:
            handoff = pool.submit(call, w.record, w.v2, index)
            reclaim = pool.submit(call, w.reclaim, w.v1, 1, index, coin)
            outcomes = [handoff.result(), reclaim.result()]
        errors = [o for o in outcomes if isinstance(o, grpc.RpcError)]
        grants = [o for o in outcomes if not isinstance(o, grpc.RpcError)]
        assert len(errors) == 1 and len(grants) == 1, outcomes
        assert errors[0].code() == grpc.StatusCode.FAILED_PRECONDITION
        status = w.status(coin)
        assert (status.epoch, status.holder) == (2, grants[0].holder)
        assert [row.epoch for row in w.log(coin)] == [1, 2]


# -- Checkpoint -----------------------------------------------------------------------------


def test_checkpoint_statuses(w: World) -> None:
    h, chain = w.h, w.coin.chain
    h.acquire(w.v1, w.coin, 1)  # v1 holds A
    other = h.buy(w.reader, 20)
    h.acquire(w.v1, other, 1)
    h.acquire(w.v2, other, 3)
    w.record(w.v2, w.v1.coin_index(other.chain, 1, 2, to="v2"))  # v1 no longer holds B
    bad_word = seal(
        pb.CoinIndex(
            ecoin_id=w.coin.ecoin_id, epoch=1, index=6, payword=chain.word(7), vendor_id="v1"
        ),
        w.v1.key,
    )
    unknown = seal(
        pb.CoinIndex(
            ecoin_id=new_ecoin_id().hex(), epoch=1, index=1, payword=b"\0" * 32, vendor_id="v1"
        ),
        w.v1.key,
    )
    h.clock.advance(20)
    reply = w.checkpoint(
        w.v1,
        w.v1.coin_index(chain, 1, 3),  # LEASED
        w.v1.coin_index(chain, 1, 3),  # equal to the latest: LEASED, no hashing
        w.v1.coin_index(chain, 1, 2),  # below the latest: REJECTED
        bad_word,  # REJECTED
        w.v1.coin_index(other.chain, 1, 2),  # not v1's any more: CLOSED
        w.v1.coin_index(chain, 1, 4, key=w.v2.key),  # bad signature: REJECTED
        unknown,  # REJECTED
        w.coin.touchstone,  # not a CoinIndex: REJECTED
        w.v1.coin_index(chain, 1, 3 + BOUND + 1),  # too far: REJECTED
    )
    assert (reply.lease_ttl_s, reply.max_skew_s) == (60, 5)
    got = [(r.ecoin_id, r.epoch, r.status, r.acknowledged_index) for r in reply.results]
    a, b = w.coin.ecoin_id, other.ecoin_id
    leased, closed, rejected = (
        bpb.CHECKPOINT_STATUS_LEASED,
        bpb.CHECKPOINT_STATUS_CLOSED,
        bpb.CHECKPOINT_STATUS_REJECTED,
    )
    assert got == [
        (a, 1, leased, 3),
        (a, 1, leased, 3),
        (a, 1, rejected, 3),
        (a, 1, rejected, 3),
        (b, 1, closed, 2),
        (a, 1, rejected, 0),
        (unknown_id(unknown), 1, rejected, 0),
        ("", 0, rejected, 0),
        (a, 1, rejected, 3),
    ]
    assert all(r.detail for r in reply.results if r.status != leased)
    assert "bad_payword" in reply.results[3].detail
    assert w.coin_row().lease_expires_ms == h.clock.now_ms() + 60_000
    status = w.status()
    assert (status.latest_index, status.latest_word) == (3, chain.word(3))
    # The acknowledged checkpoint is the new latest known word.
    _, err = h.error(h.acquire, w.v2, w.coin, 3)
    assert isinstance(err, AlreadySpent) and (err.index, err.seen) == (3, seen_of(chain.word(3)))
    assert h.acquire(w.v2, w.coin, 4).WhichOneof("result") == "handoff"


def unknown_id(envelope: pb.Envelope) -> str:
    msg = pb.CoinIndex()
    msg.ParseFromString(envelope.payload)
    return msg.ecoin_id


def test_checkpoint_of_a_frozen_coin_is_rejected(w: World) -> None:
    w.h.acquire(w.v1, w.coin, 1)
    w.h.broker.services.freeze_coin(w.coin.ecoin_id)
    lease = w.coin_row().lease_expires_ms
    w.h.clock.advance(10)
    reply = w.checkpoint(w.v1, w.v1.coin_index(w.coin.chain, 1, 2))
    assert reply.results[0].status == bpb.CHECKPOINT_STATUS_REJECTED
    assert "revoked" in reply.results[0].detail and reply.results[0].revoked
    assert w.coin_row().lease_expires_ms == lease


def test_the_owner_freezes_and_unfreezes_a_coin_over_grpc(w: World) -> None:
    request = bpb.FreezeCoinRequest(ecoin_id=w.coin.ecoin_id)
    frozen = w.h.stub.FreezeCoin(request, metadata=w.reader.md)
    assert frozen.frozen and w.h.stub.FreezeCoin(request, metadata=w.reader.md).frozen
    code, err = w.h.error(w.h.acquire, w.v1, w.coin, 1)
    assert (code, err.code) == (grpc.StatusCode.FAILED_PRECONDITION, "revoked")
    # Nobody else may freeze or unfreeze it: another reader, a vendor.
    other = w.h.reader()
    unfreeze = bpb.UnfreezeCoinRequest(ecoin_id=w.coin.ecoin_id)
    code, _ = w.h.error(w.h.stub.UnfreezeCoin, unfreeze, metadata=other.md)
    assert code == grpc.StatusCode.NOT_FOUND
    code, _ = w.h.error(w.h.stub.UnfreezeCoin, unfreeze, metadata=w.v1.md)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert w.status().frozen
    assert not w.h.stub.UnfreezeCoin(unfreeze, metadata=w.reader.md).frozen
    assert w.h.acquire(w.v1, w.coin, 1).WhichOneof("result") == "custody"


def test_checkpoint_limits_its_batch(w: World) -> None:
    w.h.acquire(w.v1, w.coin, 1)
    index = w.v1.coin_index(w.coin.chain, 1, 1)
    assert len(w.checkpoint(w.v1, *[index] * 20).results) == 20
    code, _ = w.h.error(w.checkpoint, w.v1, *[index] * 21)
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = w.h.error(w.checkpoint, w.reader, index)
    assert code == grpc.StatusCode.UNAUTHENTICATED


# -- forced acquisition (RECALLING) ------------------------------------------------------


def _recall_started(w: World) -> None:
    w.h.acquire(w.v1, w.coin, 1)
    w.checkpoint(w.v1, w.v1.coin_index(w.coin.chain, 1, 4))
    assert w.h.acquire(w.v2, w.coin, 6).WhichOneof("result") == "handoff"
    # V1 cannot be reached for the hand-off: V2 forces.
    code, err = w.h.error(w.h.acquire, w.v2, w.coin, 6, force=True)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert isinstance(err, CoinBusy) and 1 <= err.retry_after_s <= 65
    assert w.status().state == bpb.COIN_STATE_RECALLING
    # Others wait; so does the reader's click at V1 once its lease lapses.
    _, err = w.h.error(w.h.acquire, w.v3, w.coin, 6)
    assert isinstance(err, CoinBusy)


def test_a_recall_completes_with_the_holders_final_index(w: World) -> None:
    _recall_started(w)
    lease = w.coin_row().lease_expires_ms
    w.h.clock.advance(5)
    # V1's next checkpoint is answered RECALLED, names V2, and renews nothing.
    reply = w.checkpoint(w.v1, w.v1.coin_index(w.coin.chain, 1, 7))
    [result] = reply.results
    assert (result.status, result.recall_to) == (bpb.CHECKPOINT_STATUS_RECALLED, "v2")
    assert w.coin_row().lease_expires_ms == lease and w.status().latest_index == 7
    # Its final CoinIndex (to V2) closes its epoch there.
    final = w.checkpoint(w.v1, w.v1.coin_index(w.coin.chain, 1, 8, to="v2"))
    assert final.results[0].status == bpb.CHECKPOINT_STATUS_CLOSED
    grant = w.h.acquire(w.v2, w.coin, 9).custody
    assert (grant.epoch, grant.holder, grant.base_index) == (2, "v2", 8)
    with w.h.broker.services.store.begin(read_only=True) as repos:
        first, second = repos.coins.epochs(w.coin.ecoin_id)
    assert (first.end, first.forced_end) == (IndexedWord(8, w.coin.chain.word(8)), None)
    assert (second.opened_by, second.opened_from) == (EpochOpening.RECALL, "v1")


def test_a_silent_holder_is_force_closed_after_its_lease(w: World) -> None:
    _recall_started(w)
    w.h.clock.advance(30)
    _, err = w.h.error(w.h.acquire, w.v2, w.coin, 6)  # the lease may still be live
    assert isinstance(err, CoinBusy)
    w.h.clock.advance(36)  # past the holder's lease + max_skew_s
    grant = w.h.acquire(w.v2, w.coin, 6).custody
    # V2 starts at V1's last checkpoint; V1's epoch ends max_unreported_units above it.
    assert (grant.epoch, grant.holder, grant.base_index) == (2, "v2", 4)
    with w.h.broker.services.store.begin(read_only=True) as repos:
        first, _ = repos.coins.epochs(w.coin.ecoin_id)
    unreported = w.h.broker.services.limits.max_unreported_units
    assert (first.end, first.forced_end) == (None, 4 + unreported)
    # V1 learns it at its next checkpoint and stops.
    late = w.checkpoint(w.v1, w.v1.coin_index(w.coin.chain, 1, 9))
    assert late.results[0].status == bpb.CHECKPOINT_STATUS_CLOSED
