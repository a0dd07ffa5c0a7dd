"""Races over HTTP: the same word paid twice at once must be accepted once.

- at two vendors (two real in-process newspapers): the same header sent to both
  at the same instant (a ``threading.Barrier``). Whoever wins, the other gets
  409 ``already_spent`` or ``coin_busy``; the coin changes hands on most races.
- at two gunicorn workers of ONE vendor (``netpay vendor serve --workers 2``):
  two kept-alive connections, each steered to its own worker, pay the same
  word with two different headers (``(p, p+1]`` for article 1 and ``(p, p+2]``
  for article 2); exactly one is accepted. Twin copies of one header are also
  raced: both get the original Receipt, one click is recorded.
- window clicks at v1 racing the hand-off of the coin to v2: every click is
  either paid (a 200 below the credit's consumed index) or refused, and the
  WindowCredit refunds exactly the rest.

Then everything is redeemed, the books balance and the ledger equals the
model's, which also checks that no two Receipts share a word.
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from netpay.chain import Chain
from netpay.sqlstore import make_engine, sqlite_url
from tests.fault.conftest import (
    HTTP_TIMEOUT_S,
    JSON,
    PRICES,
    VendorProcess,
    World,
    pay_header,
    redeem_cli,
)
from tests.workers import Workers
from vendor.storage import ClickRow

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="finds gunicorn workers through /proc"
)

RACE_COINS = 4
RACES_PER_COIN = 50  # 200 races at two vendors
WORKER_RACES = 200  # word races at two workers of one vendor
TWIN_RACES = 20  # the same header twice at once at two workers
BARRIER_TIMEOUT_S = 60
RACE_VENDOR = "race-news"


@dataclass(frozen=True)
class Answer:
    race: int
    status: int
    error: str
    receipt: str  # the NetPay-Receipt header ("" without one)


def _answer(race: int, status: int, body: bytes, receipt: str | None) -> Answer:
    error = ""
    if status != 200:
        try:
            error = str(json.loads(body).get("error", ""))
        except ValueError:
            error = f"<not JSON: {body[:80]!r}>"
    return Answer(race, status, error, receipt or "")


# -- two vendors -------------------------------------------------------------------------


def test_the_same_word_raced_at_two_vendors_is_accepted_once(any_world: World) -> None:
    world = any_world
    v1 = world.start_vendor("daily-hash")
    v2 = world.start_vendor("chain-gazette")
    chains = [world.reader.buy(RACES_PER_COIN + 10) for _ in range(RACE_COINS)]

    def racer(chain: Chain, web_url: str, barrier: threading.Barrier) -> list[Answer]:
        answers = []
        with requests.Session() as http:
            for k in range(RACES_PER_COIN):
                header = pay_header(chain, k, k + 1)  # article 1: one word
                barrier.wait(BARRIER_TIMEOUT_S)
                resp = http.get(
                    f"{web_url}/articles/1",
                    headers={**JSON, "Authorization": header},
                    timeout=HTTP_TIMEOUT_S,
                )
                answers.append(
                    _answer(k, resp.status_code, resp.content, resp.headers.get("NetPay-Receipt"))
                )
        return answers

    with ThreadPoolExecutor(max_workers=2 * RACE_COINS) as pool:
        futures = []
        for chain in chains:
            barrier = threading.Barrier(2)
            futures.append(
                (
                    pool.submit(racer, chain, v1.web_url, barrier),
                    pool.submit(racer, chain, v2.web_url, barrier),
                )
            )
        results = [(f1.result(timeout=300), f2.result(timeout=300)) for f1, f2 in futures]

    outcomes: dict[str, int] = {}
    for chain, (at_v1, at_v2) in zip(chains, results, strict=True):
        ecoin = chain.ecoin_id.hex()
        for a1, a2 in zip(at_v1, at_v2, strict=True):
            world.model.issue(ecoin, a1.race, a1.race + 1)
            winners = [(v, a) for v, a in ((v1, a1), (v2, a2)) if a.status == 200]
            assert len(winners) == 1, (a1, a2)
            [(winner, won)] = winners
            [lost] = [a for a in (a1, a2) if a is not won]
            assert (lost.status, lost.error) in {(409, "already_spent"), (409, "coin_busy")}, lost
            assert lost.receipt == ""
            receipt, raw = world.open_receipt(won.receipt, winner.vendor_id)
            assert (receipt.from_index, receipt.to_index) == (won.race, won.race + 1)
            assert world.model.receipt(winner.vendor_id, receipt, raw)
            key = f"{winner.vendor_id} won, {lost.error}"
            outcomes[key] = outcomes.get(key, 0) + 1
    assert sum(outcomes.values()) == RACE_COINS * RACES_PER_COIN
    print("two-vendor races:", outcomes)
    # Each vendor's click log agrees: one click per word, in total.
    clicks = [
        c for v in (v1, v2) for chain in chains for c in v.services.clicks(chain.ecoin_id.hex())
    ]
    assert len(clicks) == RACE_COINS * RACES_PER_COIN
    world.finish(v1, v2)


WINDOW_ROUNDS = 8
CLICKERS = 3
HANDOFF_RETRIES = 5


def test_window_clicks_racing_a_hand_off_are_paid_or_refunded_never_both(world: World) -> None:
    """Readers click from a window at v1 while the coin moves to v2: the hand-off closes
    the window at a consumed index, and every click is either paid (a 200 below that
    index) or refused; the credit refunds exactly the rest."""
    v1 = world.start_vendor("daily-hash")
    v2 = world.start_vendor("chain-gazette")
    tally: dict[str, int] = {}
    articles = list(PRICES)  # 12 items, 126 words: each is paid once per window

    for _ in range(WINDOW_ROUNDS):
        chain = world.reader.buy(400)
        ecoin = chain.ecoin_id.hex()
        handle, window = world.open_window(v1, chain, 0, 200)
        barrier = threading.Barrier(CLICKERS + 1)

        def clicker(mine: list[str], barrier: threading.Barrier = barrier) -> list[Answer]:
            answers = []
            with requests.Session() as http:
                barrier.wait(BARRIER_TIMEOUT_S)
                for k, article in enumerate(mine):
                    resp = http.get(
                        f"{v1.web_url}/articles/{article}",
                        headers={**JSON, "Cookie": f"netpay_window={handle}"},
                        timeout=HTTP_TIMEOUT_S,
                    )
                    answers.append(
                        _answer(
                            k, resp.status_code, resp.content, resp.headers.get("NetPay-Receipt")
                        )
                    )
            return answers

        header = pay_header(chain, 200, 200 + PRICES["5"])
        world.model.issue(ecoin, 200, 200 + PRICES["5"])

        def mover(barrier: threading.Barrier = barrier, header: str = header) -> tuple[Answer, int]:
            with requests.Session() as http:
                barrier.wait(BARRIER_TIMEOUT_S)
                for busy in range(HANDOFF_RETRIES):
                    resp = http.get(
                        f"{v2.web_url}/articles/5",
                        headers={**JSON, "Authorization": header},
                        timeout=HTTP_TIMEOUT_S,
                    )
                    answer = _answer(
                        0, resp.status_code, resp.content, resp.headers.get("NetPay-Receipt")
                    )
                    if answer.error != "coin_busy":
                        return answer, busy
            return answer, HANDOFF_RETRIES

        with ThreadPoolExecutor(max_workers=CLICKERS + 1) as pool:
            clicks = [pool.submit(clicker, articles[i::CLICKERS]) for i in range(CLICKERS)]
            moved_f = pool.submit(mover)
            answers = [a for f in clicks for a in f.result(timeout=300)]
            moved, busy = moved_f.result(timeout=300)

        assert moved.status == 200, moved
        receipt, raw = world.open_receipt(moved.receipt, "chain-gazette")
        assert receipt.epoch == 2
        paid_clicks = sorted(
            (world.open_receipt(a.receipt, "daily-hash") for a in answers if a.status == 200),
            key=lambda pair: pair[0].from_index,
        )
        for r, r_raw in paid_clicks:  # in window order, as the vendor consumed them
            assert world.model.receipt("daily-hash", r, r_raw)
        assert world.model.receipt("chain-gazette", receipt, raw)
        for a in answers:
            if a.status != 200:
                assert (a.status, a.error) in {(402, "payment_required"), (409, "coin_busy")}, a
        # The hand-off closed the window: its credit is exactly what the 200s left.
        [closed] = v1.services.windows(ecoin)
        assert closed.credit is not None
        world.model.window_closed(window, world.credit_of_bytes(closed.credit, "daily-hash"))
        key = f"{len(paid_clicks)} of {len(articles)} clicks paid"
        tally[key] = tally.get(key, 0) + 1
        tally["hand-off coin_busy retries"] = tally.get("hand-off coin_busy retries", 0) + busy
    print("window clicks racing a hand-off:", tally)
    world.finish(v1, v2)


# -- two gunicorn workers of one vendor ---------------------------------------------------


class Lane:
    """One kept-alive connection pinned to one worker."""

    def __init__(self, workers: Workers, worker: int) -> None:
        self.workers = workers
        self.worker = worker
        self.conn = workers.connection_to(worker)
        self.served: dict[int, int] = {}  # worker pid -> requests answered

    def get(self, race: int, path: str, header: str) -> Answer:
        self.conn.request("GET", path, headers={**JSON, "Authorization": header})
        resp = self.conn.getresponse()
        owner = self.workers.owner(self.conn)  # before reading: the connection is open
        body = resp.read()
        assert owner is not None, "the worker closed the connection"
        self.served[owner] = self.served.get(owner, 0) + 1
        return _answer(race, resp.status, body, resp.getheader("NetPay-Receipt"))

    def close(self) -> None:
        self.conn.close()


def run_pairs(
    lanes: tuple[Lane, Lane],
    plan: Callable[[int], tuple[str, str, str, str]],
    races: int,
    on_result: Callable[[int, Answer, Answer], None],
) -> None:
    """``races`` races, each sending ``plan(k)`` = (path1, header1, path2, header2) on the
    two lanes at once; ``on_result`` sees both answers before the next race starts."""
    barrier = threading.Barrier(2)
    answers: list[list[Answer]] = [[], []]

    def side(i: int) -> None:
        for k in range(races):
            barrier.wait(BARRIER_TIMEOUT_S)  # the plan for race k is ready
            path1, h1, path2, h2 = plan(k)
            path, header = (path1, h1) if i == 0 else (path2, h2)
            answers[i].append(lanes[i].get(k, path, header))
            barrier.wait(BARRIER_TIMEOUT_S)  # both answered
            if i == 0:
                on_result(k, answers[0][k], answers[1][k])

    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = [pool.submit(side, i) for i in (0, 1)]
        for f in futures:
            f.result(timeout=300)


@linux_only
def test_the_same_word_raced_at_two_gunicorn_workers_is_accepted_once(
    any_real_world: World,
    vendor_processes: Callable[[list[str], Path], VendorProcess],
    tmp_path: Path,
) -> None:
    world = any_real_world
    data_dir = tmp_path / RACE_VENDOR
    db_url = world.vendor_db_url(RACE_VENDOR) or sqlite_url(data_dir / "vendor.sqlite")
    vendor = vendor_processes(
        [
            "--data-dir",
            str(data_dir),
            "--db-url",
            db_url,
            "--broker",
            world.broker.grpc_address,
            f"--enroll={world.enroll(RACE_VENDOR)}",
            "--workers",
            "2",
            "--web-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
            "--redeem-at",
            "off",
        ],
        tmp_path / "vendor.log",
    )
    _master, pids = vendor.gunicorn_workers()
    assert len(pids) == 2, pids
    host, port = vendor.web_url.removeprefix("http://").rsplit(":", 1)
    workers = Workers(host, int(port), pids)
    chain = world.reader.buy(WORKER_RACES * 2 + TWIN_RACES * 3 + 20)
    ecoin = chain.ecoin_id.hex()
    # The first payment acquires the coin (one worker), so the races are all local.
    first = requests.get(
        f"{vendor.web_url}/articles/1",
        headers={**JSON, "Authorization": pay_header(chain, 0, 1)},
        timeout=HTTP_TIMEOUT_S,
    )
    world.model.issue(ecoin, 0, 1)
    world.record(first, RACE_VENDOR)
    lanes = (Lane(workers, pids[0]), Lane(workers, pids[1]))
    position = [1]  # the coin's index after the last race
    tally: dict[str, int] = {}
    try:
        # Word races: (p, p+1] for article 1 against (p, p+2] for article 2.
        def word_plan(_k: int) -> tuple[str, str, str, str]:
            p = position[0]
            world.model.issue(ecoin, p, p + 2)
            return (
                "/articles/1",
                pay_header(chain, p, p + 1),
                "/articles/2",
                pay_header(chain, p, p + 2),
            )

        def word_result(k: int, a: Answer, b: Answer) -> None:
            winners = [x for x in (a, b) if x.status == 200]
            assert len(winners) == 1, (k, a, b)
            [won] = winners
            [lost] = [x for x in (a, b) if x is not won]
            assert (lost.status, lost.error) in {(409, "already_spent"), (409, "coin_busy")}, lost
            receipt, raw = world.open_receipt(won.receipt, RACE_VENDOR)
            assert receipt.from_index == position[0]
            assert world.model.receipt(RACE_VENDOR, receipt, raw)
            position[0] = receipt.to_index
            key = f"lane {'ab'[(a, b).index(won)]} won, {lost.error}"
            tally[key] = tally.get(key, 0) + 1

        run_pairs(lanes, word_plan, WORKER_RACES, word_result)

        # Twin races: the very same header on both workers: one purchase.
        def twin_plan(_k: int) -> tuple[str, str, str, str]:
            p = position[0]
            world.model.issue(ecoin, p, p + 3)
            header = pay_header(chain, p, p + 3)
            return "/articles/3", header, "/articles/3", header

        def twin_result(k: int, a: Answer, b: Answer) -> None:
            assert (a.status, b.status) == (200, 200), (k, a, b)
            assert a.receipt == b.receipt, (k, a, b)
            receipt, raw = world.open_receipt(a.receipt, RACE_VENDOR)
            assert (receipt.from_index, receipt.to_index) == (position[0], position[0] + 3)
            assert world.model.receipt(RACE_VENDOR, receipt, raw)
            position[0] = receipt.to_index

        run_pairs(lanes, twin_plan, TWIN_RACES, twin_result)
        served = [lane.served for lane in lanes]
    finally:
        for lane in lanes:
            lane.close()
    print("two-worker races:", tally, "served:", served)
    # Each lane stayed on its own worker: every race was between the two workers.
    assert served == [
        {pids[0]: WORKER_RACES + TWIN_RACES},
        {pids[1]: WORKER_RACES + TWIN_RACES},
    ]
    assert sum(tally.values()) == WORKER_RACES
    # The vendor's click log: one row per purchase, the ranges tile the coin.
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = [
                (int(frm), int(to))
                for frm, to in conn.execute(
                    select(ClickRow.from_index, ClickRow.to_index)
                    .where(ClickRow.ecoin_id == ecoin)
                    .order_by(ClickRow.to_index)
                ).all()
            ]
    finally:
        engine.dispose()
    assert len(rows) == 1 + WORKER_RACES + TWIN_RACES
    assert [frm for frm, _ in rows] == [0] + [to for _, to in rows[:-1]]

    report = redeem_cli(data_dir, db_url)
    assert (report["rejected"], report["pending"]) == (0, 0), report
    world.model.redeemed(RACE_VENDOR, report["paid_minor"].get("EUR", 0))
    assert vendor.stop() == 0, vendor.log.read_text()[-3000:]
    world.check_books({RACE_VENDOR})
