"""Races on both backends.

* The same payword offered to two vendors' services at once (a thread barrier per
  race), word after word, coin after coin: every word is accepted exactly once,
  the other vendor refuses it (AlreadySpent) — whoever held the coin before.
* Reclaim against RecordHandoff at the broker for the same epoch: exactly one wins.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from sqlalchemy import select

from broker.server import BrokerHandle
from broker.storage import CustodyEpochRow
from netpay.chain import Chain
from netpay.clock import FakeClock
from netpay.envelope import load_or_create_key, seal
from netpay.errors import AlreadySpent, CoinBusy, NetPayError, PreconditionFailed
from netpay.money import Money
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from tests.integration.vendor.conftest import Reader, StartVendor
from tests.integration.vendor_windows.conftest import pay_header
from vendor.broker_client import GrpcBrokerClient
from vendor.domain import Item, VendorCoinState
from vendor.peer_client import GrpcPeerClient
from vendor.server import VendorHandle

from .conftest import coin_view, vendor_token

# COINS * WORDS_PER_COIN races, one word each: 1,000 per backend (the count
# at the service level), 2,000 in all; about 25 s per backend on 2 cores.
COINS = 40
WORDS_PER_COIN = 25
HANDOFF_RACES = 20
ITEM = Item("1", Money(1, "EUR"))
BUSY_RETRIES = 200  # CoinBusy means "retry": the racer asks again at once


@dataclass
class Outcome:
    vendor_id: str
    accepted: bool
    error: NetPayError | None
    busy: int  # CoinBusy answers before the final one


def offer(vendor: VendorHandle, header: str, now_ms: int, go: threading.Barrier) -> Outcome:
    """One racer: wait for the other one, then offer the payword until a final answer."""
    go.wait()
    busy = 0
    while True:
        try:
            vendor.services.pay(header, ITEM, now_ms)
        except CoinBusy as err:
            busy += 1
            if busy > BUSY_RETRIES:
                return Outcome(vendor.vendor_id, False, err, busy)
            continue
        except NetPayError as err:
            return Outcome(vendor.vendor_id, False, err, busy)
        return Outcome(vendor.vendor_id, True, None, busy)


def test_one_payword_offered_to_two_vendors_is_accepted_once(
    backend: str, start: StartVendor, reader: Reader, clock: FakeClock
) -> None:
    v1 = start("daily-hash")
    v2 = start("chain-gazette")
    vendors = (v1, v2)
    chains: list[Chain] = [reader.buy(WORDS_PER_COIN) for _ in range(COINS)]
    wins: Counter[str] = Counter()
    busy = 0
    started = time.monotonic()
    with ThreadPoolExecutor(2) as pool:
        for chain in chains:
            for word in range(1, WORDS_PER_COIN + 1):
                header = pay_header(chain, word - 1, word)
                now_ms = clock.now_ms()
                go = threading.Barrier(2)
                futures = [pool.submit(offer, v, header, now_ms, go) for v in vendors]
                outcomes = [f.result() for f in futures]
                accepted = [o for o in outcomes if o.accepted]
                assert len(accepted) == 1, (chain.ecoin_id.hex(), word, outcomes)
                [lost] = [o for o in outcomes if not o.accepted]
                assert isinstance(lost.error, AlreadySpent), (word, outcomes)
                wins[accepted[0].vendor_id] += 1
                busy += sum(o.busy for o in outcomes)
    elapsed = time.monotonic() - started
    races = COINS * WORDS_PER_COIN
    print(f"{backend}: {races} races in {elapsed:.1f}s, wins {dict(wins)}, coin_busy {busy}")
    assert sum(wins.values()) == races
    assert set(wins) == {"daily-hash", "chain-gazette"}, wins  # the coin changed hands

    # Each vendor's clicks are the words it won; together they are every word once.
    for chain in chains:
        ecoin = chain.ecoin_id.hex()
        spans = sorted(
            (c.from_index, c.to_index, v.vendor_id)
            for v in vendors
            for c in v.services.clicks(ecoin)
        )
        assert [(f, t) for f, t, _ in spans] == [
            (w - 1, w) for w in range(1, WORDS_PER_COIN + 1)
        ], spans
        holders = [v for v in vendors if coin_view(v, ecoin).state is VendorCoinState.HELD]
        assert [h.vendor_id for h in holders] == [reader.coin(chain).holder]
        assert coin_view(holders[0], ecoin).index == WORDS_PER_COIN


def custody_log(broker: BrokerHandle, ecoin: str) -> list[tuple[int, str, int | None, str | None]]:
    """The broker's epochs of a coin: (epoch, holder, end index, close reason)."""
    with broker.services.store.begin(read_only=True) as repos:
        rows = repos.session.scalars(
            select(CustodyEpochRow)
            .where(CustodyEpochRow.ecoin_id == ecoin)
            .order_by(CustodyEpochRow.epoch)
        )
        return [(r.epoch, r.holder, r.end_index, r.close_reason) for r in rows]


def race(*calls: Callable[[], object]) -> list[object]:
    """Run the calls at once (a barrier); each returns its result or its NetPayError."""
    go = threading.Barrier(len(calls))

    def run(call: Callable[[], object]) -> object:
        go.wait()
        try:
            return call()
        except NetPayError as err:
            return err

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_reclaim_and_record_handoff_race_one_wins(
    backend: str,
    start: StartVendor,
    broker: BrokerHandle,
    reader: Reader,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    v1 = start("daily-hash")
    start("chain-gazette")
    v1_broker = GrpcBrokerClient(broker.grpc_address, token=vendor_token(tmp_path / "daily-hash"))
    v2_dir = tmp_path / "chain-gazette"
    v2_broker = GrpcBrokerClient(broker.grpc_address, token=vendor_token(v2_dir))
    v2_peer = GrpcPeerClient("chain-gazette", load_or_create_key(v2_dir / "vendor.key"), clock)
    winners: Counter[str] = Counter()
    try:
        for _ in range(HANDOFF_RACES):
            chain = reader.buy(50)
            ecoin = chain.ecoin_id.hex()
            v1.services.pay(pay_header(chain, 0, 2), Item("2", Money(2, "EUR")), clock.now_ms())
            # v2 gets the grant and v1's CoinIndex (v1 is now HANDING_OFF) ...
            reply = v2_broker.acquire_coin(ecoin, 3, chain.word(3))
            assert reply.WhichOneof("result") == "handoff"
            handed = v2_peer.hand_off(v1.grpc_address, reply.handoff.grant).coin_index
            # ... and records the hand-off just as v1, tired of waiting, reclaims.
            own = seal(
                pb.CoinIndex(
                    ecoin_id=ecoin,
                    epoch=1,
                    index=2,
                    payword=chain.word(2),
                    vendor_id="daily-hash",
                    issued_at_ms=clock.now_ms(),
                ),
                v1.services._ports.identity.key,
            )
            outcomes = race(
                partial(v2_broker.record_handoff, handed, None),
                partial(v1_broker.reclaim, ecoin, 1, own),
            )
            errors = [o for o in outcomes if isinstance(o, NetPayError)]
            grants = [o for o in outcomes if not isinstance(o, NetPayError)]
            assert len(errors) == 1 and len(grants) == 1, outcomes
            assert isinstance(errors[0], PreconditionFailed), errors
            [grant] = grants
            assert isinstance(grant, bpb.CustodyGrant)
            assert (grant.epoch, grant.base_index) == (2, 2)
            how = "handoff" if grant.holder == "chain-gazette" else "reclaim"
            assert custody_log(broker, ecoin) == [
                (1, "daily-hash", 2, how),
                (2, grant.holder, None, None),
            ]
            status = reader.coin(chain)
            assert (status.epoch, status.holder) == (2, grant.holder)
            winners[grant.holder] += 1
    finally:
        v1_broker.close()
        v2_broker.close()
        v2_peer.close()
    print(f"{backend}: Reclaim vs RecordHandoff winners {dict(winners)}")
    assert sum(winners.values()) == HANDOFF_RACES
