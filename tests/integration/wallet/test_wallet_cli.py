"""`netpay wallet ...` through `netpay` itself, against the real broker and vendors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from netpay.cli.main import main

PASSWORD = "integration pass phrase"


def _netpay(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_cli_end_to_end(world: Any, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pw = tmp_path / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    wd = ["wallet", "--wallet-dir", str(tmp_path / "cli-wallet")]
    broker = world.broker.grpc_address

    code, out, _ = _netpay(
        capsys,
        *wd,
        "register",
        "--broker",
        broker,
        "--username",
        "cleo",
        "--password-file",
        str(pw),
    )
    assert code == 0 and json.loads(out)["broker_id"] == world.broker.broker_id
    code, out, _ = _netpay(capsys, *wd, "login", "--username", "cleo", "--password-file", str(pw))
    assert code == 0

    code, out, _ = _netpay(capsys, *wd, "buy", "--units", "40")
    assert code == 0
    coin = json.loads(out)
    assert (coin["n"], coin["value_minor"], coin["currency"]) == (40, 40, "EUR")

    a1, a2 = world.articles("daily")[:2]
    code, out, err = _netpay(capsys, *wd, "read", a1["url"])
    assert code == 0
    assert "<html" in out.lower()
    assert f"{40 - a1['amount']} words left" in err

    code, out, _ = _netpay(capsys, *wd, "authorize", a2["url"])
    assert code == 0 and out.count("\n") == 1
    with requests.Session() as s:
        resp = s.get(a2["url"], headers={"Authorization": out.strip()}, timeout=10)
    assert resp.status_code == 200
    assert resp.headers["NetPay-Balance"] == str(40 - a1["amount"] - a2["amount"])

    code, out, _ = _netpay(capsys, *wd, "balance", "--json")
    assert code == 0
    bal = json.loads(out)
    assert bal["bank"] == [{"currency": "EUR", "balance_minor": 10_000 - 40}]
    assert bal["coins"][0]["index"] == a1["amount"] + a2["amount"]

    code, out, _ = _netpay(capsys, *wd, "history", "--json")
    assert code == 0
    assert [json.loads(line)["item_id"] for line in out.splitlines()] == [a1["id"]]

    code, out, err = _netpay(capsys, *wd, "read", a1["url"], "--max-amount", "0")
    assert code == 2 and out == ""
    assert "netpay: limit_exceeded: " in err

    for p in (tmp_path / "cli-wallet").iterdir():
        assert PASSWORD.encode() not in p.read_bytes()
