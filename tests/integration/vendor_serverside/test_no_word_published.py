"""A server-side wallet's refusals publish no word of its coin (protocol.md 1.1, change 1).

The broker makes the chain and vendors learn words only by DrawWindow; every
refusal around it — the newspaper's pages for a wallet that cannot pay (JSON and
HTML), the broker's answers to AcquireCoin, DrawWindow and ExchangeWalletCode —
is scanned for every word of the coin (tests/leaks.py).
"""

from __future__ import annotations

import secrets
from pathlib import Path

import requests
from sqlalchemy import select

from broker.seedvault import SeedVault
from netpay.chain import Chain
from netpay.files import read_json
from netpay.transport.auth import bearer_metadata
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from tests.leaks import RefusalScan, seen_text
from vendor.server import VendorHandle
from vendor.storage.tables import WalletSessionRow

from .conftest import Browser, World

ACCEPTS = {"json": "application/json", "html": "text/html"}


def chain_of(world: World, broker_dir: Path, ecoin_id: str, n: int) -> Chain:
    """The coin's chain as the broker keeps it (sealed under its wallet key)."""
    with world.broker.services.store.begin() as repos:
        row = repos.wallets.get(ecoin_id)
        assert row is not None
        sealed = bytes(row.sealed_chain)
    return SeedVault.open_dir(broker_dir).open(ecoin_id, n, sealed)


def stored_grant(vendor: VendorHandle) -> pb.Envelope:
    """The WalletGrant the newspaper keeps with the reader's session."""
    with vendor._engine.connect() as conn:
        [raw] = conn.execute(select(WalletSessionRow.grant)).scalars().all()
    return pb.Envelope.FromString(raw)


def page_refusals(scan: RefusalScan, browser: Browser, vendor: VendorHandle) -> None:
    for kind, accept in ACCEPTS.items():
        dear = browser.read(vendor, "8", Accept=accept)  # 12 cents > the 10 per click
        scan.http(f"above the click limit ({kind})", dear)
        resp = requests.get(
            vendor.web_url + "/articles/1",
            headers={"Accept": accept, "Cookie": "netpay_wallet=" + "A" * 43},
            timeout=30,
        )
        scan.http(f"unknown wallet session ({kind})", resp)
        back = browser.get(
            vendor.web_url + "/netpay/wallet/return",
            params={"next": "/", "state": "forged", "netpay_code": "x" * 43},
            headers={"Accept": accept},
        )
        scan.http(f"wallet return, forged state ({kind})", back)


def test_no_server_side_refusal_carries_a_word_of_the_coin(world: World, tmp_path: Path) -> None:
    world.stub.SetSpendingLimits(
        bpb.SetSpendingLimitsRequest(limit=bpb.SpendingLimit(currency="EUR", max_click_minor=10)),
        metadata=bearer_metadata(world.reader_token),
        timeout=10,
    )
    coin = world.buy(n=300)
    chain = chain_of(world, tmp_path / "broker", coin.ecoin_id, 300)
    scan = RefusalScan()
    scan.add_chain(chain)
    v1 = world.start_vendor("v1", "127.0.0.2")
    world.start_vendor("v2", "127.0.0.3")  # enrolled: its token asks the broker
    browser = world.browser()
    browser.sign_in(v1, coin.ecoin_id)
    assert browser.read(v1, "1", Accept="application/json").status_code == 200  # a window
    latest = world.coin(coin.ecoin_id).latest_index  # the drawn window's top
    assert latest > 1

    page_refusals(scan, browser, v1)

    grant = stored_grant(v1)
    as_v1 = bearer_metadata(str(read_json(tmp_path / "v1" / "vendor.json")["vendor_token"]))
    as_v2 = bearer_metadata(str(read_json(tmp_path / "v2" / "vendor.json")["vendor_token"]))
    ecoin = coin.ecoin_id

    def acquire(label: str, index: int, word: bytes) -> None:
        msg = bpb.AcquireCoinRequest(ecoin_id=ecoin, proof_index=index, proof_word=word)
        scan.refused(label, lambda: world.stub.AcquireCoin(msg, metadata=as_v2))

    acquire("acquire spent", latest - 3, chain.word(latest - 3))
    acquire("acquire spent, made-up word", latest - 3, secrets.token_bytes(32))
    acquire("acquire above, made-up word", latest + 1, secrets.token_bytes(32))
    with_grant = bpb.AcquireCoinRequest(ecoin_id=ecoin, wallet_grant=grant)
    scan.refused(
        "acquire with another vendor's grant",
        lambda: world.stub.AcquireCoin(with_grant, metadata=as_v2),
    )
    for label, caller, epoch, units in (
        ("draw with another vendor's grant", as_v2, 1, 5),
        ("draw in another epoch", as_v1, 7, 5),
        ("draw zero units", as_v1, 1, 0),
        ("draw too many units", as_v1, 1, 600),
    ):
        draw = bpb.DrawWindowRequest(wallet_grant=grant, epoch=epoch, units=units)
        scan.refused(label, lambda d=draw, c=caller: world.stub.DrawWindow(d, metadata=c))
    code = bpb.ExchangeWalletCodeRequest(code="x" * 43)
    scan.refused("unknown wallet code", lambda: world.stub.ExchangeWalletCode(code, metadata=as_v2))

    assert len(scan.refusals) >= 15
    leaks = scan.leaks()
    assert not leaks, "words in refusals:\n" + "\n".join(leaks)
    assert [r.code for r in scan.refusals if r.label.endswith("(json)")] == [
        "limit_exceeded",
        "payment_required",
        "permission_denied",
    ]
    at_broker = seen_text(chain.word(latest))
    named = {r.label: (r.code, r.index, r.seen) for r in scan.refusals if r.label[:4] == "acqu"}
    assert named == {
        "acquire spent": ("already_spent", latest, at_broker),
        "acquire spent, made-up word": ("bad_payword", None, None),
        "acquire above, made-up word": ("bad_payword", None, None),
        "acquire with another vendor's grant": ("permission_denied", None, None),
    }
    for r in scan.refusals:
        if r.label != "acquire spent":
            assert (r.index, r.seen) == (None, None), r
