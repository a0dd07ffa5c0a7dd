"""`netpay vendor redeem` and `netpay broker reconcile`, run as the real command."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from broker.domain import AccountRef
from broker.server import BrokerConfig, start_broker

from .conftest import pay


def netpay(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netpay.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_redeem_then_reconcile_from_the_command_line(
    start, broker, broker_dir: Path, reader, clock, tmp_path: Path
) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(120)
    pay(v1, chain, 0, "4")
    pay(v1, chain, 5, "7")

    done = netpay("vendor", "redeem", "--data-dir", str(tmp_path / "daily-hash"), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert (report["accepted"], report["rejected"], report["pending"]) == (1, 0, 0)
    assert report["paid_minor"] == {"EUR": 15}
    again = netpay("vendor", "redeem", "--data-dir", str(tmp_path / "daily-hash"), "--json")
    assert json.loads(again.stdout)["batches"] == []

    day = datetime.fromtimestamp(clock.now_ms() / 1000, tz=UTC).date().isoformat()
    ledger_csv = tmp_path / "ledger.csv"
    books = netpay(
        "broker",
        "reconcile",
        "--data-dir",
        str(broker_dir),
        "--day",
        day,
        "--json",
        "--csv",
        str(ledger_csv),
    )
    assert books.returncode == 0, books.stderr
    line = json.loads(books.stdout)
    assert line["conservation_cents"] == {"EUR": 0}
    assert line["disputes"] == [] and line["balanced"] is True
    assert line["reader_debits_cents"] == {"EUR": 120}
    assert line["redeemed_cents"] == {"EUR": 15}
    assert line["outstanding_cents"] == {"EUR": 105}
    assert line["vendor_paid_cents"] == {"EUR": 15}
    with ledger_csv.open(newline="") as f:
        rows = list(csv.DictReader(f))
    kinds = {r["kind"] for r in rows}
    assert {"demo_deposit", "buy_coin", "redeem", "payout"} == kinds
    assert sum(int(r["amount_minor"]) for r in rows) == 0  # every transaction balances

    bad_day = netpay("broker", "reconcile", "--data-dir", str(broker_dir), "--day", "22-11-2026")
    assert bad_day.returncode != 0 and "YYYY-MM-DD" in bad_day.stderr


def test_redeem_with_the_broker_down_keeps_the_batch_and_pays_it_once_later(
    start, broker, broker_dir: Path, reader, clock, tmp_path: Path
) -> None:
    v1 = start("daily-hash")
    chain = reader.buy(100)
    pay(v1, chain, 0, "7")
    address = broker.grpc_address
    broker.stop()

    down = netpay("vendor", "redeem", "--data-dir", str(tmp_path / "daily-hash"), "--json")
    assert down.returncode == 3, down.stderr
    assert json.loads(down.stdout)["pending"] == 1

    restarted = start_broker(BrokerConfig(data_dir=broker_dir, grpc_addr=address), clock=clock)
    try:
        up = netpay("vendor", "redeem", "--data-dir", str(tmp_path / "daily-hash"), "--json")
        assert up.returncode == 0, up.stderr
        report = json.loads(up.stdout)
        assert [b["retried"] for b in report["batches"]] == [True]
        assert report["paid_minor"] == {"EUR": 10} and report["pending"] == 0
        assert (
            netpay(
                "vendor", "redeem", "--data-dir", str(tmp_path / "daily-hash"), "--json"
            ).returncode
            == 0
        )
        with restarted.services.store.begin(read_only=True) as repos:
            assert repos.ledger.balance_minor(AccountRef.vendor_bank("daily-hash", "EUR")) == 10
    finally:
        restarted.stop()
