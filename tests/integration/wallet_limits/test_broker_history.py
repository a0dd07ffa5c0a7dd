"""`netpay wallet history --broker`: the reader's money history kept at the broker."""

from __future__ import annotations

import json

import pytest

from netpay.cli.main import main

from .conftest import World


def test_the_broker_history_lists_the_purchase_and_the_redeemed_click(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    coin = world.wallet.buy(100)
    assert world.wallet.read(world.article(5)).status == 200
    before = world.wallet.broker_history()
    assert [(e["kind"], e["amount_minor"]) for e in before] == [("purchase", -100)]
    assert world.vendor.redeemer.redeem().paid_minor == {"EUR": 5}

    entries = world.wallet.broker_history(ecoin_id=coin.ecoin_id)
    assert [(e["kind"], e["vendor_id"], e["amount_minor"]) for e in entries] == [
        ("click", "daily", -5),
        ("purchase", "", -100),
    ]
    code = main(
        ["wallet", "--wallet-dir", str(world.tmp / "wallet"), "history", "--broker", "--json"]
    )
    assert code == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["kind"] for line in lines] == ["click", "purchase"]
    assert lines[0]["to_index"] - lines[0]["from_index"] == 5
