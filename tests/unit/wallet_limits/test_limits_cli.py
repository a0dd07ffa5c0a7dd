"""`netpay wallet limits` and `netpay wallet autoload` (and what read/balance show of them).

The fake broker runs behind a real gRPC server on 127.0.0.1:0, the fake
newspaper on loopback; the CLI builds its own Wallet (system clock) per command.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

from ewallet_client import cli
from netpay.errors import NetPayError
from tests.fakes.broker import FakeBroker
from tests.fakes.vendor import FakeVendor
from tests.fakes.wallet_fixtures import PASSWORD


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netpay")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_commands(sub)
    return parser


def run(capsys: pytest.CaptureFixture[str], wallet_dir: Path, *argv: str) -> tuple[int, str, str]:
    """What `netpay wallet --wallet-dir DIR ARGV` does (netpay.cli.main's error handling)."""
    capsys.readouterr()
    args = _parser().parse_args(["wallet", "--wallet-dir", str(wallet_dir), *argv])
    try:
        code = args.func(args)
    except NetPayError as exc:
        print(f"netpay: {exc.code}: {exc.detail}", file=sys.stderr)
        code = 2
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def registered(
    capsys: pytest.CaptureFixture[str], grpc_broker: str, tmp_path: Path, wallet_dir: Path
) -> Path:
    pw = tmp_path / "pw.txt"
    pw.write_text(PASSWORD + "\n")
    code, _, _ = run(
        capsys,
        wallet_dir,
        "register",
        "--broker",
        grpc_broker,
        "--username",
        "ann",
        "--password-file",
        str(pw),
    )
    assert code == 0
    return wallet_dir


@pytest.mark.parametrize("command", ["limits", "autoload"])
def test_help_has_an_example(capsys: pytest.CaptureFixture[str], command: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["wallet", command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out and f"netpay wallet {command} --currency EUR" in out


def test_limits_are_set_shown_and_cleared(
    capsys: pytest.CaptureFixture[str], wallet_dir: Path
) -> None:
    code, out, err = run(capsys, wallet_dir, "limits", "--json")
    assert code == 0
    [empty] = _lines(out)
    assert empty["currency"] == "EUR" and empty["max_click_minor"] is None
    assert empty["spent_today_minor"] == 0

    code, out, err = run(
        capsys,
        wallet_dir,
        "limits",
        "--currency",
        "EUR",
        "--max-click-minor",
        "50",
        "--max-day-minor",
        "500",
        "--json",
    )
    assert code == 0 and "spending limits in EUR set" in err
    [row] = _lines(out)
    assert {k: row[k] for k in ("currency", "max_click_minor", "max_day_minor")} == {
        "currency": "EUR",
        "max_click_minor": 50,
        "max_day_minor": 500,
    }
    assert row["left_today_minor"] == 500 and row["payments_today"] == 0
    assert isinstance(row["day"], str) and len(row["day"]) == 10

    # One limit changes, the other stays; `none` clears.
    code, out, _ = run(capsys, wallet_dir, "limits", "--max-click-minor", "none", "--json")
    [row] = _lines(out)
    assert (row["max_click_minor"], row["max_day_minor"]) == (None, 500)
    code, out, _ = run(capsys, wallet_dir, "limits", "--currency", "USD", "--max-day-minor", "0")
    assert code == 0 and "max day 0.00 USD" in out
    code, out, _ = run(capsys, wallet_dir, "limits", "--json")
    assert [r["currency"] for r in _lines(out)] == ["EUR", "USD"]
    code, out, _ = run(capsys, wallet_dir, "limits")
    assert "EUR  max click none  max day 5.00 EUR  spent today" in out


def test_bad_limits_exit_2_and_change_nothing(
    capsys: pytest.CaptureFixture[str], wallet_dir: Path
) -> None:
    run(capsys, wallet_dir, "limits", "--max-day-minor", "100")
    code, _, err = run(capsys, wallet_dir, "limits", "--max-day-minor", "10000001")
    assert code == 2 and "netpay: invalid_argument:" in err
    code, _, err = run(capsys, wallet_dir, "limits", "--currency", "eur", "--max-day-minor", "1")
    assert code == 2 and "netpay: malformed: currency" in err
    with pytest.raises(SystemExit) as exit_info:
        run(capsys, wallet_dir, "limits", "--max-click-minor", "lots")
    assert exit_info.value.code == 2
    _, out, _ = run(capsys, wallet_dir, "limits", "--json")
    assert [(r["currency"], r["max_day_minor"]) for r in _lines(out)] == [("EUR", 100)]


def test_autoload_is_set_shown_and_turned_off(
    capsys: pytest.CaptureFixture[str], wallet_dir: Path
) -> None:
    code, out, _ = run(capsys, wallet_dir, "autoload", "--json")
    assert code == 0 and out == ""
    code, out, _ = run(capsys, wallet_dir, "autoload")
    assert "no auto-load agreement" in out
    code, out, err = run(
        capsys,
        wallet_dir,
        "autoload",
        "--currency",
        "EUR",
        "--below-minor",
        "100",
        "--units",
        "250",
        "--unit-value",
        "2",
        "--json",
    )
    assert code == 0 and "auto-load: when the EUR coins fall below 1.00 EUR" in err
    [agreement] = _lines(out)
    assert {k: agreement[k] for k in ("currency", "enabled", "below_minor", "units")} == {
        "currency": "EUR",
        "enabled": True,
        "below_minor": 100,
        "units": 250,
    }
    assert (agreement["unit_value"], agreement["value_minor"], agreement["pending"]) == (
        2,
        500,
        False,
    )
    code, out, _ = run(capsys, wallet_dir, "autoload", "--json")
    assert _lines(out) == [agreement]
    code, out, _ = run(capsys, wallet_dir, "autoload", "--currency", "USD", "--json")
    [usd] = _lines(out)
    assert usd["currency"] == "USD" and usd["enabled"] is False and usd["units"] is None
    code, out, err = run(capsys, wallet_dir, "autoload", "--off", "--json")
    assert code == 0 and "auto-load in EUR is off" in err
    [off] = _lines(out)
    assert off["enabled"] is False and off["below_minor"] == 100
    code, out, _ = run(capsys, wallet_dir, "autoload", "--json")
    assert out == ""


@pytest.mark.parametrize(
    "argv",
    [
        ["--off", "--units", "5"],
        ["--units", "5"],
        ["--below-minor", "5"],
        ["--below-minor", "500", "--units", "100"],  # a coin worth less than the threshold
        ["--below-minor", "5", "--units", "0"],
    ],
)
def test_bad_autoload_terms_exit_2_and_store_nothing(
    capsys: pytest.CaptureFixture[str], wallet_dir: Path, argv: list[str]
) -> None:
    code, out, err = run(capsys, wallet_dir, "autoload", *argv)
    assert code == 2 and "netpay: invalid_argument:" in err and out == ""
    _, out, _ = run(capsys, wallet_dir, "autoload", "--json")
    assert out == ""


def test_read_reports_the_auto_load_and_refuses_past_a_limit(
    capsys: pytest.CaptureFixture[str],
    registered: Path,
    vendor: FakeVendor,
    broker: FakeBroker,
) -> None:
    wallet_dir = registered
    assert run(capsys, wallet_dir, "buy", "--units", "12")[0] == 0
    assert run(capsys, wallet_dir, "autoload", "--below-minor", "10", "--units", "100")[0] == 0
    code, out, err = run(capsys, wallet_dir, "read", vendor.url + "/articles/1")
    assert code == 0 and "article 1" in out
    assert "netpay: auto-load: bought coin" in err and "1.00 EUR" in err
    code, out, _ = run(capsys, wallet_dir, "balance", "--json")
    balance = json.loads(out)
    assert balance["autoload"]["EUR"]["last_error"] is None
    assert balance["wallet_minor"] == {"EUR": 7 + 100}
    assert broker.balances["r-1"] == 10_000 - 112

    # A failed auto-load is a warning; the payment succeeds (exit 0).
    assert run(capsys, wallet_dir, "autoload", "--below-minor", "200", "--units", "200")[0] == 0
    broker.fail_buy_before = [NetPayError("the broker broke")]
    code, out, err = run(capsys, wallet_dir, "authorize", vendor.url + "/articles/2")
    assert code == 0 and out.startswith("NetPay ")
    assert "netpay: warning: auto-load in EUR failed:" in err
    assert "tried again after the next payment" in err
    code, out, _ = run(capsys, wallet_dir, "balance")
    assert "auto-load: when the EUR coins fall below 2.00 EUR" in out
    assert "last attempt failed" in out

    assert run(capsys, wallet_dir, "autoload", "--off")[0] == 0
    assert run(capsys, wallet_dir, "limits", "--max-click-minor", "4")[0] == 0
    code, out, err = run(capsys, wallet_dir, "read", vendor.url + "/articles/3")
    assert code == 2 and out == ""
    assert "netpay: limit_exceeded: 5 EUR minor units is above your limit of 4 per click" in err
