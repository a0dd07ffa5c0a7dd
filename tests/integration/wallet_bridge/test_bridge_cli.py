"""`netpay wallet bridge | approve-origin | revoke-origin | origins` through `netpay` itself."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import requests

from netpay.cli.main import main


def _netpay(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_approve_list_and_revoke_origins(world: Any, capsys: pytest.CaptureFixture[str]) -> None:
    wd = ["wallet", "--wallet-dir", str(world.tmp / "wallet")]
    daily = world.origin("daily")
    code, out, _ = _netpay(capsys, *wd, "approve-origin", daily + "/articles/1", "--max-day", "50")
    assert code == 0
    assert json.loads(out) == {
        "origin": daily,
        "max_click_minor": None,
        "max_day_minor": 50,
        "approved_at_ms": json.loads(out)["approved_at_ms"],
    }
    code, out, _ = _netpay(
        capsys, *wd, "approve-origin", "https://News.Example", "--max-click", "9"
    )
    assert code == 0 and json.loads(out)["origin"] == "https://news.example:443"

    # Spend through the bridge, then list with today's spending.
    art = world.article("daily")
    assert world.post(world.bridge.url, art["url"], origin=daily).ok
    code, out, _ = _netpay(capsys, *wd, "origins", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["origin"] for r in rows] == [daily, "https://news.example:443"]
    assert rows[0]["spent_today_minor"] == {"EUR": art["amount"]}
    assert rows[1]["spent_today_minor"] == {} and rows[1]["max_click_minor"] == 9
    code, out, _ = _netpay(capsys, *wd, "origins")
    assert code == 0 and daily in out and "max day 50" in out

    code, out, _ = _netpay(capsys, *wd, "revoke-origin", "https://news.example")
    assert code == 0 and json.loads(out) == {"origin": "https://news.example:443", "revoked": True}
    code, _, err = _netpay(capsys, *wd, "revoke-origin", "https://news.example")
    assert code == 2 and "not_found" in err

    for bad in (
        ["approve-origin", "http://news.example"],  # plain HTTP outside loopback
        ["approve-origin", "ftp://127.0.0.1"],
        ["approve-origin", daily, "--max-click", "0"],
    ):
        code, _, err = _netpay(capsys, *wd, *bad)
        assert code == 2 and "invalid_argument" in err, bad


def test_the_bridge_refuses_a_non_loopback_address(
    world: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    wd = ["wallet", "--wallet-dir", str(world.tmp / "wallet")]
    for listen in ("0.0.0.0:0", "[::]:0", "localhost:0", "10.0.0.1:0"):
        code, out, err = _netpay(capsys, *wd, "bridge", "--listen", listen)
        assert code == 2 and "loopback" in err and out == "", listen


def test_the_bridge_process_prints_its_ready_line_and_stops_on_sigterm(
    world: Any, tmp_path: Path
) -> None:
    world.approve("daily")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "netpay.cli.main",
            "wallet",
            "--wallet-dir",
            str(world.tmp / "wallet"),
            "bridge",
            "--listen",
            "127.0.0.1:0",
            "--max-click",
            "50",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(proc.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(30)
        assert line and line[0], "no ready line"
        ready = json.loads(line[0])
        assert list(ready) == ["bridge"] and ready["bridge"].startswith("http://127.0.0.1:")
        art = world.article("daily")
        resp = world.post(ready["bridge"], art["url"], origin=world.origin("daily"))
        assert resp.status_code == 200, resp.text
        status = requests.get(
            ready["bridge"] + "/v1/status", headers={"Origin": world.origin("daily")}, timeout=10
        ).json()
        assert status["max_click_minor"] == 50
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
        proc.stderr.close()  # type: ignore[union-attr]
