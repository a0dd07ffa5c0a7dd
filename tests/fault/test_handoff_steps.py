"""A hand-off abandoned at every step (protocol.md, "Coin custody", steps 1-3).

The next vendor's side of the hand-off is played by hand, as the vendor
``chain-gazette`` (its vendor token for the broker, its key for the signed
``Vendor.HandOff`` call), so the test can stop between any two steps:

(a) AcquireCoin returned a HandOffGrant, Vendor.HandOff never came: the grant
    expires, the holder keeps paying, a later acquisition works;
(b) Vendor.HandOff done (the holder is HANDING_OFF), RecordHandoff never came:
    the holder refuses payments, reclaims after ``handoff_ttl_s``, the late
    RecordHandoff is refused;
(c) RecordHandoff committed but its reply was lost: repeating it returns the
    original reply, and the next vendor, which never heard, takes the coin
    with the reader's header again.

In each, the holder has a cookie-cache window open with clicks paid from it.
Each test ends with every vendor redeeming, the books balanced and the ledger
equal to the model's, which also checks that no word was paid twice.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import requests

from netpay.chain import Chain
from netpay.envelope import load_or_create_key, open_envelope
from netpay.errors import PreconditionFailed
from netpay.limits import DEFAULT_LIMITS
from netpay.v1 import statements_pb2 as pb
from tests.fault.conftest import JSON, World, error_code, pay_header
from tests.fault.model_ledger import ModelWindow
from vendor.broker_client import GrpcBrokerClient
from vendor.domain import VendorCoinState
from vendor.peer_client import GrpcPeerClient
from vendor.server import VendorHandle
from vendor.services import HandOffResult

HOLDER = "daily-hash"
TAKER = "chain-gazette"


@dataclass
class Taker:
    """The next vendor's custody calls, made one by one."""

    broker: GrpcBrokerClient
    peer: GrpcPeerClient


@dataclass
class Setup:
    v1: VendorHandle
    v2: VendorHandle
    taker: Taker
    chain: Chain
    handle: str  # the reader's window at v1
    window: ModelWindow
    index: int  # the wallet's index after the setup


@pytest.fixture
def setup(world: World) -> Iterator[Setup]:
    v1 = world.start_vendor(HOLDER)
    v2 = world.start_vendor(TAKER)
    taker = Taker(
        GrpcBrokerClient(world.broker.grpc_address, token=world.vendor_token(TAKER)),
        GrpcPeerClient(TAKER, load_or_create_key(world.tmp / TAKER / "vendor.key"), world.clock),
    )
    try:
        chain = world.reader.buy(400)
        index = world.pay(v1, chain, 0, "4")  # (0, 5]: v1 acquires epoch 1
        handle, window = world.open_window(v1, chain, index, 100)  # (5, 105]
        for article in ("3", "7"):  # 13 of the window's 100 words
            assert world.click(v1, handle, article).status_code == 200
        yield Setup(v1, v2, taker, chain, handle, window, index + 100)
    finally:
        taker.broker.close()
        taker.peer.close()


def grant_for(world: World, s: Setup, proof_prev: int, proof_index: int) -> pb.Envelope:
    """The reader's header for ``(proof_prev, proof_index]`` reaches v2, which asks the
    broker for the coin: a HandOffGrant from v1 (the header itself is never used)."""
    world.model.issue(s.chain.ecoin_id.hex(), proof_prev, proof_index)
    reply = s.taker.broker.acquire_coin(
        s.chain.ecoin_id.hex(), proof_index, s.chain.word(proof_index)
    )
    assert reply.WhichOneof("result") == "handoff", reply
    grant = open_envelope(reply.handoff.grant, pb.HandOffGrant, world.broker.public_key)
    assert (grant.from_vendor, grant.to_vendor, grant.epoch) == (HOLDER, TAKER, 1)
    return reply.handoff.grant


def handoff_credit(world: World, handed: HandOffResult) -> pb.WindowCredit:
    assert handed.window_credit is not None
    credit = open_envelope(handed.window_credit, pb.WindowCredit, world.vendor_key(HOLDER))
    assert credit.reason == "handoff"
    return credit


def resend(
    world: World, vendor: VendorHandle, chain: Chain, prev: int, index: int, article: str
) -> pb.Receipt:
    """The same header again (already issued): it must pay now."""
    resp = requests.get(
        f"{vendor.web_url}/articles/{article}",
        headers={**JSON, "Authorization": pay_header(chain, prev, index)},
        timeout=30,
    )
    return world.record(resp, vendor.vendor_id)


def state_at(vendor: VendorHandle, chain: Chain) -> tuple[VendorCoinState, int]:
    stored = vendor.services.coin(chain.ecoin_id.hex())
    assert stored is not None
    return stored.view.state, stored.view.epoch


def test_a_grant_never_used_expires_and_the_holder_keeps_paying(world: World, setup: Setup) -> None:
    s = setup
    grant = grant_for(world, s, s.index, s.index + 2)  # v2 never calls HandOff
    # The holder keeps paying from the reader's window.
    assert world.click(s.v1, s.handle, "1").status_code == 200
    assert state_at(s.v1, s.chain) == (VendorCoinState.HELD, 1)

    world.advance(DEFAULT_LIMITS.handoff_grant_ttl_s + 1)
    with pytest.raises(PreconditionFailed, match="expired"):
        s.taker.peer.hand_off(s.v1.grpc_address, grant)
    assert state_at(s.v1, s.chain) == (VendorCoinState.HELD, 1)
    assert world.click(s.v1, s.handle, "2").status_code == 200

    # A later acquisition works: the reader moves to v2 (from its own index: the 2
    # words of the unused header are void), which takes the coin over.
    index = world.pay(s.v2, s.chain, s.index + 2, "5")
    assert world.model.paid[-1].epoch == 2
    # v1 learns that its epoch ended when it next asks the broker.
    assert state_at(s.v1, s.chain) == (VendorCoinState.HANDING_OFF, 1)
    [window] = s.v1.services.windows(s.chain.ecoin_id.hex())
    assert window.credit is not None
    credit = world.credit_of_bytes(window.credit, HOLDER)
    assert credit.reason == "handoff"
    world.model.window_closed(s.window, credit)
    # And back to v1: a new epoch there.
    world.pay(s.v1, s.chain, index, "1")
    assert world.model.paid[-1].epoch == 3

    assert world.model.void_units(s.chain.ecoin_id.hex()) == 2
    world.finish(s.v1, s.v2)


def test_a_coin_paid_per_click_above_an_open_window_can_be_handed_off(
    world: World, setup: Setup
) -> None:
    """The reader pays per click at v1 with the coin whose window is open there (a CLI
    read while the browser holds the window), then moves to v2."""
    s = setup
    index = world.pay(s.v1, s.chain, s.index, "4")  # (105, 110]: above the window's top
    moved = world.send(s.v2, s.chain, index, "1")
    # The window's credit (its top below the coin's index) travels with the CoinIndex.
    assert moved.status_code == 200, moved.text
    world.model.window_closed(s.window)
    world.finish(s.v1, s.v2)


def test_a_handoff_never_recorded_is_reclaimed_and_the_late_record_refused(
    world: World, setup: Setup
) -> None:
    s = setup
    grant = grant_for(world, s, s.index, s.index + 2)
    handed = s.taker.peer.hand_off(s.v1.grpc_address, grant)
    index_msg = open_envelope(handed.coin_index, pb.CoinIndex, world.vendor_key(HOLDER))
    assert (index_msg.epoch, index_msg.index, index_msg.to_vendor) == (1, s.index, TAKER)
    # The hand-off closed the window in the same step: its credit came along.
    world.model.window_closed(s.window, handoff_credit(world, handed))
    assert state_at(s.v1, s.chain) == (VendorCoinState.HANDING_OFF, 1)
    # The holder restarts (same data dir): HANDING_OFF and the signed CoinIndex were
    # stored durably, so a repeated HandOff returns the same CoinIndex and credit.
    s.v1.stop()
    s.v1 = world.start_vendor(HOLDER, enroll=False)
    assert state_at(s.v1, s.chain) == (VendorCoinState.HANDING_OFF, 1)
    again = s.taker.peer.hand_off(s.v1.grpc_address, grant)
    assert again.coin_index.SerializeToString() == handed.coin_index.SerializeToString()
    assert again.window_credit is not None and handed.window_credit is not None
    assert again.window_credit.SerializeToString() == handed.window_credit.SerializeToString()

    # v2 never records it. The holder accepts nothing meanwhile.
    prev = s.index + 2
    busy = world.send(s.v1, s.chain, prev, "1")
    assert (busy.status_code, error_code(busy)) == (409, "coin_busy"), busy.text
    assert world.click(s.v1, s.handle, "1").status_code == 402  # the window is closed

    world.advance(DEFAULT_LIMITS.handoff_ttl_s + 1)
    assert s.v1.services.reclaim_due() == 1
    assert state_at(s.v1, s.chain) == (VendorCoinState.HELD, 2)
    with pytest.raises(PreconditionFailed):
        s.taker.broker.record_handoff(handed.coin_index, handed.window_credit)
    status = world.reader.coin(s.chain)
    assert (status.holder, status.epoch) == (HOLDER, 2)

    # The header refused with coin_busy pays now, in the reclaimed epoch.
    assert resend(world, s.v1, s.chain, prev, prev + 1, "1").epoch == 2
    index = world.pay(s.v1, s.chain, prev + 1, "2")
    # And a later hand-off to v2 works.
    moved = world.send(s.v2, s.chain, index, "3")
    assert moved.status_code == 200, moved.text
    assert world.receipt_of(moved, TAKER)[0].epoch == 3

    assert world.model.void_units(s.chain.ecoin_id.hex()) == 2
    world.finish(s.v1, s.v2)


def test_a_lost_record_handoff_reply_is_repeated_and_the_coin_not_stranded(
    world: World, setup: Setup
) -> None:
    s = setup
    proof_prev, proof_index = s.index, s.index + 2
    grant = grant_for(world, s, proof_prev, proof_index)
    handed = s.taker.peer.hand_off(s.v1.grpc_address, grant)
    world.model.window_closed(s.window, handoff_credit(world, handed))
    first = s.taker.broker.record_handoff(handed.coin_index, handed.window_credit)
    # The reply is lost; v2 repeats the call and gets the original reply.
    second = s.taker.broker.record_handoff(handed.coin_index, handed.window_credit)
    assert (first.epoch, first.base_index, first.holder) == (2, s.index, TAKER)
    assert (second.epoch, second.base_index, second.base_word, second.holder) == (
        first.epoch,
        first.base_index,
        first.base_word,
        first.holder,
    )
    status = world.reader.coin(s.chain)
    assert (status.holder, status.epoch) == (TAKER, 2)

    # v2 itself never stored the epoch (its process lost the reply). The reader's
    # header reaches it again: the broker renews v2's custody, and it pays.
    assert s.v2.services.coin(s.chain.ecoin_id.hex()) is None
    receipt = resend(world, s.v2, s.chain, proof_prev, proof_index, "2")
    assert (receipt.epoch, receipt.from_index, receipt.to_index) == (2, proof_prev, proof_index)
    # v1, still HANDING_OFF, learns its epoch is over when the reader comes back.
    assert state_at(s.v1, s.chain) == (VendorCoinState.HANDING_OFF, 1)
    back = world.send(s.v1, s.chain, proof_index, "1")
    assert back.status_code == 200, back.text
    assert world.receipt_of(back, HOLDER)[0].epoch == 3

    assert world.model.void_units(s.chain.ecoin_id.hex()) == 0
    world.finish(s.v1, s.v2)


RACE_ROUNDS = 20


def test_a_reclaim_racing_the_late_record_handoff_has_one_winner(
    world: World, setup: Setup
) -> None:
    """Whichever of Reclaim and RecordHandoff commits first wins; the loser is refused
    and learns it. The reader's header, sent again to v2, pays either way."""
    s = setup
    world.close_window(s.v1, s.handle, s.window)  # the setup's coin waits meanwhile
    won: dict[str, int] = {}
    for _ in range(RACE_ROUNDS):
        chain = world.reader.buy(50)
        ecoin = chain.ecoin_id.hex()
        prev = world.pay(s.v1, chain, 0, "4")
        world.model.issue(ecoin, prev, prev + 2)
        reply = s.taker.broker.acquire_coin(ecoin, prev + 2, chain.word(prev + 2))
        handed = s.taker.peer.hand_off(s.v1.grpc_address, reply.handoff.grant)
        world.advance(DEFAULT_LIMITS.handoff_ttl_s + 1)
        barrier = threading.Barrier(2)

        def record(barrier: threading.Barrier = barrier, handed: HandOffResult = handed) -> str:
            barrier.wait(30)
            try:
                s.taker.broker.record_handoff(handed.coin_index, handed.window_credit)
            except PreconditionFailed:
                return "refused"
            return "recorded"

        def reclaim(barrier: threading.Barrier = barrier) -> int:
            barrier.wait(30)
            return s.v1.services.reclaim_due()

        with ThreadPoolExecutor(max_workers=2) as pool:
            recorded = pool.submit(record)
            reclaimed = pool.submit(reclaim)
            outcome, changed = recorded.result(timeout=60), reclaimed.result(timeout=60)
        assert changed == 1  # reclaimed, or closed: the hand-off committed first
        status = world.reader.coin(chain)
        if outcome == "recorded":
            assert (status.holder, status.epoch) == (TAKER, 2)
            assert state_at(s.v1, chain) == (VendorCoinState.CLOSED, 1)
        else:
            assert (status.holder, status.epoch) == (HOLDER, 2)
            assert state_at(s.v1, chain) == (VendorCoinState.HELD, 2)
        won[outcome] = won.get(outcome, 0) + 1
        # The reader's header pays at v2 either way (renewed, or taken over from v1).
        receipt = resend(world, s.v2, chain, prev, prev + 2, "2")
        assert receipt.epoch == (2 if outcome == "recorded" else 3)
        world.pay(s.v1, chain, prev + 2, "1")  # and back at v1
    print("reclaim vs late RecordHandoff:", won)
    assert sum(won.values()) == RACE_ROUNDS
    world.pay(s.v1, s.chain, s.index, "2")
    world.finish(s.v1, s.v2)
