"""kill -9 of a vendor during sustained paid clicks (protocol.md, "The HTTP payment":
a spend is committed durably before the resource is sent; a lost response never
costs a reader).

A real broker (in process, system clock) and the vendor as a real child process
(``netpay vendor serve --workers 2``: the launcher, its gunicorn master and two
workers, in their own process group). Several readers pay sequential words of
their own coins, each on its own thread, without pause. Mid-run, while requests
are in flight, the whole process group gets SIGKILL; then the vendor restarts
on the same data dir (no ``--enroll``: it remembers). Then:

- every click answered 200 before the kill is still there: the same header
  again returns the identical NetPay-Receipt (a retry, nothing new recorded);
- a header that got no answer is sent again: it returns its Receipt (it was
  committed before the kill) or is paid now; no word is accepted twice;
- the readers go on paying; everything redeems with ``netpay vendor redeem``;
  the books balance and every account equals the model's.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests

from netpay.chain import Chain
from netpay.clock import SystemClock
from tests.fault.conftest import (
    HTTP_TIMEOUT_S,
    JSON,
    PRICES,
    VendorProcess,
    World,
    error_code,
    pay_header,
    redeem_cli,
)

VENDOR = "kill-news"
READERS = 4
ACKS_BEFORE_KILL = 40  # clicks answered 200 (all readers) before the SIGKILL
CLICKS_AFTER_RESTART = 8  # per reader
BUSY_RETRIES = 5
WAIT_S = 120
ARTICLES = ("1", "4", "2", "7", "3", "5")


@dataclass
class Click:
    prev: int
    index: int
    article: str
    receipt: str  # the NetPay-Receipt header
    before_kill: bool
    was_unanswered: bool = False


@dataclass
class Run:
    """What the reader threads share with the test."""

    web_url: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: threading.Condition = field(default_factory=threading.Condition)
    acks: int = 0
    in_flight: int = 0
    restarted: threading.Event = field(default_factory=threading.Event)

    def url(self) -> str:
        with self.lock:
            return self.web_url


@dataclass
class ReaderLog:
    chain: Chain
    clicks: list[Click] = field(default_factory=list)
    unanswered: list[tuple[int, int, str]] = field(default_factory=list)


def read_on(run: Run, log: ReaderLog) -> ReaderLog:
    """Pay sequential words without pause; an unanswered header is sent again after the
    restart (the wallet keeps its index: the header is the same purchase)."""
    chain = log.chain
    prev, after, k = 0, 0, 0
    with requests.Session() as http:

        def get(article: str, header: str) -> requests.Response | None:
            with run.acked:
                run.in_flight += 1
            try:
                return http.get(
                    f"{run.url()}/articles/{article}",
                    headers={**JSON, "Authorization": header},
                    timeout=HTTP_TIMEOUT_S,
                )
            except requests.RequestException:
                return None  # no answer: the vendor died under it (or was dead)
            finally:
                with run.acked:
                    run.in_flight -= 1

        while after < CLICKS_AFTER_RESTART:
            article = ARTICLES[k % len(ARTICLES)]
            index = prev + PRICES[article]
            header = pay_header(chain, prev, index)
            before = not run.restarted.is_set()
            resp = get(article, header)
            unanswered = resp is None
            if resp is None:
                log.unanswered.append((prev, index, article))
                assert run.restarted.wait(WAIT_S), "the vendor was not restarted"
                before = False
                http.close()  # the pooled connections went with the old process
                resp = get(article, header)
                assert resp is not None, "the restarted vendor did not answer"
            for _ in range(BUSY_RETRIES):
                if resp is None or error_code(resp) != "coin_busy":
                    break
                resp = get(article, header)
            assert resp is not None
            assert resp.status_code == 200, (resp.status_code, resp.text[:300])
            log.clicks.append(
                Click(prev, index, article, resp.headers["NetPay-Receipt"], before, unanswered)
            )
            with run.acked:
                run.acks += 1
                run.acked.notify_all()
            prev, k = index, k + 1
            if not before:
                after += 1
    return log


def serve_args(data_dir: Path, *first: str) -> list[str]:
    return [
        "--data-dir",
        str(data_dir),
        *first,
        "--workers",
        "2",
        "--web-addr",
        "127.0.0.1:0",
        "--grpc-addr",
        "127.0.0.1:0",
        "--redeem-at",
        "off",
    ]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="pidfd and /proc: Linux only")
def test_a_vendor_killed_mid_run_keeps_every_paid_click_and_pays_each_word_once(
    real_world: World,
    vendor_processes: Callable[[list[str], Path], VendorProcess],
    tmp_path: Path,
) -> None:
    world = real_world
    data_dir = tmp_path / VENDOR
    log_file = tmp_path / "vendor.log"
    token = world.enroll(VENDOR)
    vendor = vendor_processes(
        serve_args(data_dir, "--broker", world.broker.grpc_address, f"--enroll={token}"),
        log_file,
    )
    _master, workers = vendor.gunicorn_workers()
    assert len(workers) == 2
    logs = [ReaderLog(world.reader.buy(2000)) for _ in range(READERS)]
    run = Run(vendor.web_url)

    with ThreadPoolExecutor(max_workers=READERS) as pool:
        futures = [pool.submit(read_on, run, log) for log in logs]
        pids = vendor.group()
        with run.acked:
            # Kill while holding the lock the readers count their requests under: at
            # least one request is out and its answer not yet in the reader's hands.
            assert run.acked.wait_for(
                lambda: run.acks >= ACKS_BEFORE_KILL and run.in_flight >= 1, WAIT_S
            )
            in_flight = run.in_flight
            kill_ms = SystemClock().now_ms()
            vendor.kill_now()  # launcher, gunicorn master and workers, at once
        killed = vendor.kill_group(pids)
        assert len(killed) >= 4, killed
        acks_at_kill = run.acks
        vendor = vendor_processes(serve_args(data_dir), log_file)  # it remembers the rest
        with run.lock:
            run.web_url = vendor.web_url
        run.restarted.set()
        for f in futures:
            f.result(timeout=WAIT_S)

    unanswered = sum(len(log.unanswered) for log in logs)
    print(
        f"acks before the kill: {acks_at_kill} (requests in flight: {in_flight}); "
        f"unanswered headers sent again: {unanswered}"
    )
    assert unanswered >= 1  # the readers were all paying when the vendor died

    # Every click answered before the kill is still there: the same header returns
    # the identical Receipt. So does every header that was sent again.
    def again(pair: tuple[Chain, Click]) -> tuple[Click, str, int]:
        chain, click = pair
        resp = requests.get(
            f"{vendor.web_url}/articles/{click.article}",
            headers={**JSON, "Authorization": pay_header(chain, click.prev, click.index)},
            timeout=HTTP_TIMEOUT_S,
        )
        return click, resp.headers.get("NetPay-Receipt", ""), resp.status_code

    retried = [
        (log.chain, c) for log in logs for c in log.clicks if c.before_kill or c.was_unanswered
    ]
    assert sum(c.before_kill for _, c in retried) >= ACKS_BEFORE_KILL
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        for click, header, status in pool.map(again, retried):
            assert (status, header) == (200, click.receipt), click

    # An unanswered header was either committed before the kill (its Receipt is older)
    # or paid after the restart: both are fine, each word once.
    committed = 0
    for log in logs:
        for click in log.clicks:
            if click.was_unanswered:
                committed += world.open_receipt(click.receipt, VENDOR)[0].time_ms < kill_ms
    print(f"unanswered but committed before the kill: {committed} of {unanswered}")

    # The model: each reader's headers and Receipts, in order. No word twice.
    for log in logs:
        ecoin = log.chain.ecoin_id.hex()
        for click in log.clicks:
            world.model.issue(ecoin, click.prev, click.index)
            receipt, raw = world.open_receipt(click.receipt, VENDOR)
            assert (receipt.from_index, receipt.to_index) == (click.prev, click.index)
            assert world.model.receipt(VENDOR, receipt, raw)
    # The vendor's click log agrees: one row per Receipt, nothing else.
    db = sqlite3.connect(f"file:{data_dir / 'vendor.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        rows = db.execute("SELECT ecoin_id, from_index, to_index FROM vendor_clicks").fetchall()
    finally:
        db.close()
    assert sorted(rows) == sorted((p.ecoin_id, p.from_index, p.to_index) for p in world.model.paid)

    report = redeem_cli(data_dir)
    assert (report["rejected"], report["pending"]) == (0, 0), report
    world.model.redeemed(VENDOR, report["paid_minor"].get("EUR", 0))
    assert vendor.stop() == 0, log_file.read_text()[-3000:]
    assert "Traceback" not in log_file.read_text(), log_file.read_text()[-3000:]
    world.check_books({VENDOR})
