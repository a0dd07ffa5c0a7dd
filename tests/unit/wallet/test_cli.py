"""`netpay wallet ...` against the fake broker behind a real gRPC server and the fake vendor."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from ewallet_client import cli
from netpay.errors import NetPayError
from netpay.header import parse_authorization

PASSWORD = "s3cret pass phrase"
COMMANDS = ["register", "login", "buy", "balance", "history", "read", "authorize"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="netpay")
    sub = parser.add_subparsers(dest="command", required=True)
    cli.add_commands(sub)
    return parser


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """What `netpay ARGV` does (netpay.cli.main's error handling included)."""
    capsys.readouterr()
    args = _parser().parse_args(list(argv))
    try:
        code = args.func(args)
    except NetPayError as err:
        print(f"netpay: {err.code}: {err.detail}", file=sys.stderr)
        code = 2
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pwfile(tmp_path: Path) -> Path:
    p = tmp_path / "pw.txt"
    p.write_text(PASSWORD + "\nsecond line is ignored\n")
    return p


@pytest.fixture
def registered(
    capsys: pytest.CaptureFixture[str], grpc_broker: str, pwfile: Path, wallet_dir: Path
) -> Path:
    code, out, _ = run(
        capsys,
        "wallet",
        "--wallet-dir",
        str(wallet_dir),
        "register",
        "--broker",
        grpc_broker,
        "--username",
        "ann",
        "--password-file",
        str(pwfile),
    )
    assert code == 0
    assert json.loads(out)["reader_id"] == "r-1"
    return wallet_dir


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        _parser().parse_args(["wallet", command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "example:" in out
    assert f"netpay wallet {command}" in out or "$(netpay wallet authorize URL)" in out


def test_register_login_buy_read_history(
    capsys: pytest.CaptureFixture[str],
    registered: Path,
    pwfile: Path,
    vendor: Any,
    broker: Any,
) -> None:
    wd = ["wallet", "--wallet-dir", str(registered)]
    code, out, err = run(capsys, *wd, "login", "--username", "ann", "--password-file", str(pwfile))
    assert code == 0 and "logged in" in err
    assert len(broker.tokens) == 2

    code, out, err = run(capsys, *wd, "buy", "--units", "100")
    assert code == 0
    coin = json.loads(out)
    assert out.count("\n") == 1
    assert {"ecoin_id", "n", "unit_value", "currency", "value_minor", "expires_at"} <= set(coin)
    assert (coin["n"], coin["unit_value"], coin["currency"], coin["value_minor"]) == (
        100,
        1,
        "EUR",
        100,
    )

    url = f"{vendor.url}/articles/42"
    code, out, err = run(capsys, *wd, "read", url)
    assert code == 0
    assert out == "<html><body>article 42</body></html>"
    assert "paid 0.05 EUR to daily" in err and "95 words left" in err

    code, out, err = run(capsys, *wd, "read", f"{vendor.url}/articles/43", "--json-receipt")
    assert code == 0
    line = json.loads(err.strip().splitlines()[-1])
    assert line["receipt"]["from_index"] == 5 and line["receipt"]["to_index"] == 10
    assert line["balance_words"] == 90

    code, out, err = run(capsys, *wd, "history", "--json")
    assert code == 0
    rows = [json.loads(x) for x in out.splitlines()]
    assert [r["item_id"] for r in rows] == ["42", "43"]

    code, out, err = run(capsys, *wd, "balance", "--json")
    assert code == 0
    bal = json.loads(out)
    assert bal["coins"][0]["words_left"] == 90
    assert bal["wallet_minor"] == {"EUR": 90}
    assert bal["bank"] == [{"currency": "EUR", "balance_minor": 10_000 - 100}]

    code, out, _ = run(capsys, *wd, "balance")
    assert code == 0 and "0.90 EUR" in out and "99.00 EUR" in out
    code, out, _ = run(capsys, *wd, "history")
    assert code == 0 and "daily" in out

    for path in registered.iterdir():
        assert PASSWORD.encode() not in path.read_bytes()


def test_authorize_prints_one_header_line(
    capsys: pytest.CaptureFixture[str], registered: Path, vendor: Any
) -> None:
    # --wallet-dir is also accepted after the command
    assert run(capsys, "wallet", "buy", "--units", "20", "--wallet-dir", str(registered))[0] == 0
    code, out, _ = run(
        capsys, "wallet", "--wallet-dir", str(registered), "authorize", f"{vendor.url}/articles/1"
    )
    assert code == 0
    assert out.endswith("\n") and out.count("\n") == 1
    cred = parse_authorization(out.strip())
    assert (cred.prev, cred.index) == (0, 5)


def test_netpay_errors_exit_2_with_their_code(
    capsys: pytest.CaptureFixture[str], registered: Path, vendor: Any, tmp_path: Path
) -> None:
    wd = ["wallet", "--wallet-dir", str(registered)]
    run(capsys, *wd, "buy", "--units", "20")
    code, out, err = run(capsys, *wd, "read", f"{vendor.url}/articles/1", "--max-amount", "4")
    assert code == 2 and out == ""
    assert err.startswith("netpay: limit_exceeded: ")

    code, _, err = run(
        capsys, *wd, "login", "--username", "ann", "--password-file", str(tmp_path / "missing")
    )
    assert code == 2 and err.startswith("netpay: invalid_argument: ")

    bad = tmp_path / "bad.txt"
    bad.write_text("wrong\n")
    code, _, err = run(capsys, *wd, "login", "--username", "ann", "--password-file", str(bad))
    assert code == 2 and err.startswith("netpay: unauthenticated: ")


def test_a_bad_receipt_shows_the_resource_and_exits_2(
    capsys: pytest.CaptureFixture[str], registered: Path, vendor: Any
) -> None:
    from netpay.envelope import SigningKey

    wd = ["wallet", "--wallet-dir", str(registered)]
    run(capsys, *wd, "buy", "--units", "20")
    vendor.receipt_key = SigningKey.generate()
    code, out, err = run(capsys, *wd, "read", f"{vendor.url}/articles/9")
    assert code == 2
    assert "article 9" in out
    assert "netpay: bad_signature:" in err and "warning" in err


def test_read_of_a_missing_page_exits_1(
    capsys: pytest.CaptureFixture[str], registered: Path, vendor: Any
) -> None:
    code, _, err = run(capsys, "wallet", "--wallet-dir", str(registered), "read", f"{vendor.url}/x")
    assert code == 1 and "HTTP 404" in err


def test_password_file_first_line(tmp_path: Path) -> None:
    p = tmp_path / "pw"
    p.write_bytes(b"pass word\r\nnext\n")
    assert cli.read_password_file(str(p)) == "pass word"
    p.write_bytes(b"\n")
    with pytest.raises(NetPayError):
        cli.read_password_file(str(p))
    p.write_bytes(b"x" * 5000)
    with pytest.raises(NetPayError):
        cli.read_password_file(str(p))
