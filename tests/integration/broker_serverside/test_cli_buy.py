"""`netpay wallet buy --server-side` against the real broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from broker.seedvault import SeedVault
from netpay.cli.main import main
from netpay.envelope import open_envelope
from netpay.v1 import statements_pb2 as pb

from .conftest import Harness

LOGIN_PASSWORD = "cli login pass phrase"
WALLET_PASSWORD = "cli wallet pass phrase"


def _netpay(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_buy_server_side_prints_the_coin_and_keeps_nothing(
    h: Harness, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    login_pw = tmp_path / "login.txt"
    login_pw.write_text(LOGIN_PASSWORD + "\n")
    wallet_pw = tmp_path / "wallet.txt"
    wallet_pw.write_text(WALLET_PASSWORD + "\n")
    wallet_dir = tmp_path / "cli-wallet"
    wd = ["wallet", "--wallet-dir", str(wallet_dir)]

    # Not logged in yet: refused.
    code, _, err = _netpay(
        capsys, *wd, "buy", "--units", "5", "--server-side", "--password-file", str(wallet_pw)
    )
    assert code == 2 and "netpay: unauthenticated: not logged in" in err

    code, out, _ = _netpay(
        capsys,
        *wd,
        "register",
        "--broker",
        h.broker.grpc_address,
        "--username",
        "dora",
        "--password-file",
        str(login_pw),
    )
    assert code == 0
    reader_id = json.loads(out)["reader_id"]

    code, out, err = _netpay(
        capsys, *wd, "buy", "--units", "120", "--server-side", "--password-file", str(wallet_pw)
    )
    assert code == 0, err
    coin = json.loads(out)
    assert coin["wallet_kind"] == "server_side"
    assert (coin["n"], coin["value_minor"], coin["amount_minor"]) == (120, 120, 120)
    assert coin["broker_id"] == h.broker.broker_id and coin["expires_at"].endswith("Z")
    assert WALLET_PASSWORD not in out + err

    # The broker sold it to this reader, and it is a server-side coin there.
    status = h.broker.services.get_coin(coin["ecoin_id"], reader_id=reader_id)
    touchstone = open_envelope(status.touchstone, pb.Touchstone, h.broker.public_key)
    assert touchstone.wallet_kind == pb.WALLET_KIND_SERVER_SIDE
    # The wallet keeps no seed nor password; the sign-in works with the password.
    with h.broker.services.store.begin() as repos:
        row = repos.wallets.get(coin["ecoin_id"])
        assert row is not None
        sealed = row.sealed_chain
    chain = SeedVault.open_dir(h.data_dir).open(coin["ecoin_id"], 120, sealed)
    for path in wallet_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert chain.seed not in data and WALLET_PASSWORD.encode() not in data
    v1 = h.vendor("v1")
    assert h.broker.services.wallet_signin(coin["ecoin_id"], WALLET_PASSWORD, "v1").code
    assert v1.vendor_id == "v1"

    # --password-file without --server-side, and --server-side without it, are usage errors.
    code, _, err = _netpay(capsys, *wd, "buy", "--units", "5", "--password-file", str(wallet_pw))
    assert code == 2 and "invalid_argument" in err
    code, _, err = _netpay(capsys, *wd, "buy", "--units", "5", "--server-side")
    assert code == 2 and "invalid_argument" in err
