"""`netpay demo --json` and the wallet CLI, as a script or a load tester drives them.

Everything runs as real child processes: the demo launcher, the broker, two
vendors under gunicorn, and `netpay wallet` commands.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

pytestmark = pytest.mark.e2e

NETPAY = [sys.executable, "-m", "netpay.cli.main"]
READY_TIMEOUT_S = 120


class Demo:
    def __init__(self, data_dir: Path | None) -> None:
        where = [] if data_dir is None else ["--data-dir", str(data_dir)]
        self.proc = subprocess.Popen(
            [*NETPAY, "demo", "--json", *where],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=READY_TIMEOUT_S):
                self.proc.kill()
                pytest.fail("netpay demo printed no ready line")
        line = self.proc.stdout.readline()
        assert line, f"netpay demo exited with {self.proc.wait()}"
        self.info: dict[str, Any] = json.loads(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.close()
        return code

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        assert self.proc.stdout is not None
        self.proc.stdout.close()


@pytest.fixture
def demo_dir(tmp_path: Path) -> Path:
    return tmp_path / "demo"


@pytest.fixture
def demo(demo_dir: Path) -> Iterator[Demo]:
    d = Demo(demo_dir)
    try:
        yield d
    finally:
        d.close()


def wallet(info: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NETPAY, "wallet", "--wallet-dir", info["wallet_dir"], *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def words_left(info: dict[str, Any]) -> int:
    out = wallet(info, "balance", "--json")
    assert out.returncode == 0, out.stderr
    coins = json.loads(out.stdout)["coins"]
    return sum(int(c["n"]) - int(c["index"]) for c in coins)


def port_is_closed(url: str) -> bool:
    host, port = url.removeprefix("http://").split(":")
    with socket.socket() as s:
        return s.connect_ex((host, int(port))) != 0


def test_demo_json_line_then_pay_with_the_wallet_cli(demo: Demo, demo_dir: Path) -> None:
    info = demo.info
    assert set(info) == {"broker", "vendors", "wallet_dir"}
    assert set(info["broker"]) == {"grpc", "web", "data_dir"}
    portal = info["broker"]["web"]
    assert portal.startswith("http://127.0.0.1:")
    directory = requests.get(portal + "/newspapers", timeout=30)
    assert directory.status_code == 200
    assert "The Daily Hash" in directory.text and "The Chain Gazette" in directory.text
    assert [v["vendor_id"] for v in info["vendors"]] == ["daily-hash", "chain-gazette"]
    for v in info["vendors"]:
        assert set(v) == {"vendor_id", "name", "grpc", "web", "data_dir"}
        assert v["web"].startswith("http://127.0.0.1:")
    daily, gazette = (v["web"] for v in info["vendors"])
    before = words_left(info)
    assert before == 1000  # the demo reader's coin

    read = wallet(info, "read", f"{daily}/articles/3")
    assert read.returncode == 0, read.stderr
    assert "<html" in read.stdout.lower()
    assert "paid 0.03 EUR to daily-hash" in read.stderr
    assert "997 words left" in read.stderr

    header = wallet(info, "authorize", f"{daily}/articles/4")
    assert header.returncode == 0, header.stderr
    assert header.stdout.count("\n") == 1 and header.stdout.startswith("NetPay ")
    paid = requests.get(
        f"{daily}/articles/4", headers={"Authorization": header.stdout.strip()}, timeout=30
    )
    assert paid.status_code == 200 and "NetPay-Receipt" in paid.headers

    # The other newspaper, served by gunicorn workers, takes the coin over gRPC.
    read2 = wallet(info, "read", f"{gazette}/articles/2")
    assert read2.returncode == 0, read2.stderr
    assert words_left(info) == before - 3 - 5 - 2

    # A price above the cap is refused and costs nothing.
    capped = wallet(info, "read", "--max-amount", "10", f"{gazette}/articles/12")
    assert capped.returncode == 2 and "limit_exceeded" in capped.stderr
    assert words_left(info) == before - 10

    assert demo.stop() == 0
    assert all(port_is_closed(v["web"]) for v in info["vendors"])

    # A second run reuses the data dir: same reader, same coin, same balance.
    again = Demo(demo_dir)
    try:
        assert again.info["wallet_dir"] == info["wallet_dir"]
        assert words_left(again.info) == before - 10
        read3 = wallet(again.info, "read", f"{again.info['vendors'][0]['web']}/articles/1")
        assert read3.returncode == 0, read3.stderr
        assert words_left(again.info) == before - 11
    finally:
        assert again.stop() == 0


def test_demo_without_data_dir_removes_its_temporary_state() -> None:
    d = Demo(None)
    state = Path(d.info["wallet_dir"]).parent
    assert state.is_dir()
    d.proc.send_signal(signal.SIGINT)
    assert d.proc.wait(timeout=60) == 0
    d.close()
    assert not state.exists()
