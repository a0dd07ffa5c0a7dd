"""`netpay wallet open-window / windows / read / close-window / balance` on the fake newspaper.

The CLI builds its own Wallet (system clock, real gRPC broker client): the
test's wallet pays one click first, so the vendor certificate is cached and
the commands need no broker.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import pytest

from ewallet_client import cli
from ewallet_client.wallet import Wallet
from netpay.clock import FakeClock
from netpay.errors import NetPayError
from tests.fakes.vendor import FakeVendor
from tests.fakes.wallet_store import shortcuts


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(start_ms=int(time.time() * 1000))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netpay")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_commands(sub)
    return parser


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    args = _parser().parse_args(list(argv))
    try:
        code = args.func(args)
    except NetPayError as err:
        print(f"netpay: {err.code}: {err.detail}", file=sys.stderr)
        code = 2
    out, err = capsys.readouterr()
    return code, out, err


def test_window_commands(
    capsys: pytest.CaptureFixture[str], wallet: Wallet, vendor: FakeVendor
) -> None:
    d = str(wallet.wallet_dir)
    article = vendor.url + "/articles/1"
    assert wallet.read(vendor.url + "/articles/0").receipt is not None  # caches the certificate

    code, out, err = run(
        capsys, "wallet", "--wallet-dir", d, "open-window", article, "--units", "20"
    )
    assert code == 0, err
    window = json.loads(out)
    assert (window["window_from"], window["window_top"], window["words_left"]) == (5, 25, 20)
    assert window["state"] == "open" and "handle" not in window
    handle = shortcuts(wallet).window_handle(window["window_id"])
    assert handle is not None and handle not in out + err

    code, out, err = run(capsys, "wallet", "--wallet-dir", d, "read", article, "--json-receipt")
    assert code == 0, err
    assert out.startswith("<html>")
    line = json.loads(err.strip().splitlines()[-1])
    assert line["window_id"] == window["window_id"] and line["window_words_left"] == 15
    assert (line["receipt"]["from_index"], line["receipt"]["to_index"]) == (5, 10)

    code, out, err = run(capsys, "wallet", "--wallet-dir", d, "balance", "--json")
    assert code == 0
    balance = json.loads(out)
    assert [(w["vendor_id"], w["words_left"]) for w in balance["windows"]] == [("daily", 15)]
    assert handle not in out + err

    code, out, err = run(capsys, "wallet", "--wallet-dir", d, "windows", "--json")
    assert code == 0 and handle not in out
    assert [json.loads(x)["state"] for x in out.splitlines()] == ["open"]
    code, out, _ = run(capsys, "wallet", "--wallet-dir", d, "windows")
    assert code == 0 and "daily" in out and "15 of  20 words left" in out

    code, out, err = run(capsys, "wallet", "--wallet-dir", d, "close-window", vendor.url)
    assert code == 0, err
    closed = json.loads(out)
    assert closed["state"] == "closed" and closed["credit"]["refund_units"] == 15
    assert closed["window_credit"]  # the signed envelope, base64url
    assert "15 words credited back" in err

    code, out, err = run(capsys, "wallet", "--wallet-dir", d, "close-window", vendor.url)
    assert code == 2 and "not_found" in err

    # Only with the explicit flag does the handle leave the store.
    code, out, err = run(
        capsys,
        "wallet",
        "--wallet-dir",
        d,
        "open-window",
        article,
        "--units",
        "5",
        "--print-handle",
    )
    assert code == 0, err
    printed = json.loads(out)
    assert printed["handle"] == shortcuts(wallet).window_handle(printed["window_id"])


def test_open_window_help_says_the_handle_is_a_bearer_secret(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        _parser().parse_args(["wallet", "open-window", "--help"])
    out = capsys.readouterr().out
    assert "BEARER SECRET" in out and "example:" in out
    for name in ("close-window", "windows"):
        with pytest.raises(SystemExit):
            _parser().parse_args(["wallet", name, "--help"])
        assert "example:" in capsys.readouterr().out
