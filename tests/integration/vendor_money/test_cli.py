"""`netpay vendor refund`, `netpay vendor redeem` and `netpay vendor history`,
run as the real command beside a vendor serving in process."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from netpay.errors import InvalidArgument
from vendor.offline import history_now, refund_now

from .conftest import books, money, pay


def netpay(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netpay.cli.main", *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_refund_redeem_and_history_from_the_command_line(
    start, broker, reader, clock, tmp_path: Path
) -> None:
    v1 = start("daily-hash")
    data_dir = str(tmp_path / "daily-hash")
    chain = reader.buy(120)
    ecoin = chain.ecoin_id.hex()
    ten = pay(v1, chain, 0, "7")
    pay(v1, chain, ten, "4")

    done = netpay("vendor", "redeem", "--data-dir", data_dir, "--json")
    assert done.returncode == 0, done.stderr
    first = json.loads(done.stdout)
    assert first["paid_minor"] == {"EUR": 15}
    assert first["refunds"] == {"accepted": 0, "rejected": 0}

    args = ["vendor", "refund", "--data-dir", data_dir, "--ecoin", ecoin, "--receipt-to", "10"]
    made = netpay(*args, "--amount-minor", "4", "--reason", "page torn", "--refund-id", "r-1")
    assert made.returncode == 0, made.stderr
    assert made.stdout == "" and "refund r-1 recorded: 0.04 EUR for item 7" in made.stderr
    again = netpay(
        *args, "--amount-minor", "4", "--reason", "page torn", "--refund-id", "r-1", "--json"
    )
    assert again.returncode == 0, again.stderr
    record = json.loads(again.stdout)
    assert {k: record[k] for k in ("refund_id", "status", "amount_minor", "currency")} == {
        "refund_id": "r-1",
        "status": "pending",
        "amount_minor": 4,
        "currency": "EUR",
    }
    assert (record["created"], record["item_id"], record["receipt_to_index"]) == (False, "7", 10)
    too_much = netpay(*args, "--amount-minor", "7", "--reason", "the rest and more", "--json")
    assert too_much.returncode == 2 and too_much.stdout == ""
    assert "netpay: invalid_argument:" in too_much.stderr and "at most 6" in too_much.stderr

    netted = netpay("vendor", "redeem", "--data-dir", data_dir, "--json")
    assert netted.returncode == 0, netted.stderr
    second = json.loads(netted.stdout)
    assert second["refunds"] == {"accepted": 1, "rejected": 0}
    assert second["refunded_minor"] == {"EUR": 4} and second["paid_minor"] == {"EUR": -4}
    [batch] = second["batches"]
    assert batch["refunds"] == {"sent": 1, "accepted": 1, "rejected": 0}
    assert money(broker, "daily-hash") == {"bank": 15, "payable": -4, "reader_refund": 4}
    assert books(broker, clock).conservation_cents == {"EUR": 0}

    out = tmp_path / "history.csv"
    listed = netpay("vendor", "history", "--data-dir", data_dir, "--json", "--csv", str(out))
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["kind"], r["status"]) for r in rows] == [
        ("batch", "done"),  # the refund's batch
        ("refund", "accepted"),
        ("batch", "done"),  # the first redemption
        ("claim", "accepted"),
    ]
    assert (rows[0]["claims"], rows[0]["refunds"]) == (0, 1)
    assert rows[1]["batch_id"] == rows[0]["batch_id"]
    assert (rows[1]["amount_minor"], rows[1]["refund_id"], rows[1]["refund_reason"]) == (
        -4,
        "r-1",
        "page torn",
    )
    claim = rows[3]
    assert (claim["ecoin_id"], claim["from_index"], claim["to_index"]) == (ecoin, 0, 15)
    assert (claim["amount_minor"], claim["currency"], claim["units"]) == (15, "EUR", 15)
    assert [r["time_ms"] for r in rows] == sorted((r["time_ms"] for r in rows), reverse=True)
    with out.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["kind"], r["amount_minor"], r["reason"]) for r in table] == [
        ("batch", "", ""),
        ("refund", "-4", ""),
        ("batch", "", ""),
        ("claim", "15", ""),
    ]

    short = netpay("vendor", "history", "--data-dir", data_dir, "--limit", "2")
    assert short.returncode == 0, short.stderr
    lines = short.stdout.splitlines()
    assert len(lines) == 2 and "batch" in lines[0] and "refund r-1" in lines[1]
    assert "-0.04 EUR" in lines[1]
    with pytest.raises(InvalidArgument, match=r"limit is 1\.\.10000"):
        history_now(Path(data_dir), limit=0)
    with pytest.raises(InvalidArgument, match="no enrolled vendor"):
        history_now(tmp_path / "nobody")
    with pytest.raises(InvalidArgument, match="no enrolled vendor"):
        refund_now(
            tmp_path / "nobody", ecoin_id=ecoin, receipt_to_index=10, amount_minor=1, reason="x"
        )
