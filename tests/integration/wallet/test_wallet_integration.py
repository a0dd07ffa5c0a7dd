"""The client wallet against the real broker and real vendors (gRPC + HTTP on 127.0.0.1:0)."""

from __future__ import annotations

import shutil
from typing import Any

import pytest
import requests

from broker.server import BrokerConfig, start_broker
from ewallet_client import Wallet
from ewallet_client.broker_client import BrokerClient
from netpay.encoding import b64url_decode
from netpay.envelope import open_envelope
from netpay.errors import LimitExceeded, PermissionDenied
from netpay.header import parse_authorization
from netpay.v1 import statements_pb2 as pb
from tests.fakes.wallet_store import shortcuts

PASSWORD = "integration pass phrase"


def _vendor_key(world: Any, vendor_id: str) -> bytes:
    """The vendor's key as the broker certifies it (checked independently of the wallet)."""
    with BrokerClient(world.broker.grpc_address) as client:
        env = client.get_vendor_certificate(vendor_id)
    cert = open_envelope(env, pb.VendorCertificate, world.broker.public_key)
    return cert.public_key


def _receipt(raw_b64: str, key: bytes) -> pb.Receipt:
    return open_envelope(pb.Envelope.FromString(b64url_decode(raw_b64)), pb.Receipt, key)


def test_register_buy_read_two_articles(world: Any, wallet: Wallet) -> None:
    coin = wallet.buy(100)
    assert wallet.bank_balances() == [{"currency": "EUR", "balance_minor": 10_000 - 100}]
    a1, a2 = world.articles("daily")[:2]

    r1 = wallet.read(a1["url"])
    r2 = wallet.read(a2["url"])
    for r, article in ((r1, a1), (r2, a2)):
        assert r.status == 200 and r.receipt is not None and r.receipt_error is None
        assert r.amount_paid_minor == article["amount"]
        assert r.receipt.item_id == article["id"]
        assert r.vendor_balance_words == r.balance_words
    assert r1.receipt is not None and r2.receipt is not None
    assert (r1.receipt.from_index, r1.receipt.to_index) == (0, a1["amount"])
    assert r2.receipt.from_index == r1.receipt.to_index
    spent = a1["amount"] + a2["amount"]
    assert r2.balance_words == 100 - spent

    [view] = wallet.coins()
    assert (view.ecoin_id, view.index, view.accepted_index) == (coin.ecoin_id, spent, spent)
    assert (view.last_vendor, view.value_left_minor) == ("daily", 100 - spent)

    key = _vendor_key(world, "daily")
    history = wallet.history()
    assert [h["item_id"] for h in history] == [a1["id"], a2["id"]]
    for h in history:
        receipt = _receipt(str(h["receipt"]), key)
        assert (receipt.ecoin_id, receipt.vendor_id) == (coin.ecoin_id, "daily")

    # A free page costs nothing.
    free = wallet.read(world.vendors["daily"].web_url + "/articles/free")
    assert free.status == 200 and not free.paid
    assert wallet.coins()[0].index == spent


def test_authorize_and_a_plain_http_client_pays(world: Any, wallet: Wallet) -> None:
    wallet.buy(50)
    a1, a2 = world.articles("daily")[:2]
    header = wallet.authorize(a1["url"])
    with requests.Session() as s:
        resp = s.get(a1["url"], headers={"Authorization": header}, timeout=10)
        assert resp.status_code == 200
        receipt = _receipt(resp.headers["NetPay-Receipt"], _vendor_key(world, "daily"))
        assert (receipt.from_index, receipt.to_index) == (0, a1["amount"])
        # The same header again is the same purchase: the same receipt, nothing new spent.
        again = s.get(a1["url"], headers={"Authorization": header}, timeout=10)
        assert again.status_code == 200
        assert again.headers["NetPay-Receipt"] == resp.headers["NetPay-Receipt"]
    r = wallet.read(a2["url"])
    assert r.receipt is not None
    assert r.receipt.from_index == a1["amount"]


def test_an_unused_header_leaves_void_words_and_the_next_read_pays(
    world: Any, wallet: Wallet
) -> None:
    wallet.buy(50)
    a1 = world.articles("daily")[0]
    unused = parse_authorization(wallet.authorize(a1["url"]))
    r = wallet.read(a1["url"])
    assert r.receipt is not None
    assert r.receipt.from_index == unused.index  # (0, unused.index] are void
    assert wallet.coins()[0].accepted_index == r.receipt.to_index


def test_the_coin_moves_to_a_second_vendor(world: Any, wallet: Wallet) -> None:
    wallet.buy(100)
    d = world.articles("daily")[0]
    g = world.articles("gazette")[0]
    r1 = wallet.read(d["url"])
    r2 = wallet.read(g["url"])
    assert r1.receipt is not None and r2.receipt is not None
    assert r2.receipt.vendor_id == "gazette"
    assert r2.receipt.from_index == r1.receipt.to_index
    assert r2.receipt.epoch > r1.receipt.epoch
    assert wallet.coins()[0].last_vendor == "gazette"
    _receipt(str(wallet.history()[-1]["receipt"]), _vendor_key(world, "gazette"))


def test_a_copy_of_the_wallet_spends_and_the_original_resyncs(world: Any, wallet: Wallet) -> None:
    wallet.buy(100)
    wallet.close()
    copy_dir = world.tmp / "wallet-copy"
    shutil.copytree(world.tmp / "wallet", copy_dir)
    a1, a2 = world.articles("daily")[:2]
    with Wallet(copy_dir) as copy:
        spent = copy.read(a2["url"])
        assert spent.receipt is not None
    with Wallet(world.tmp / "wallet") as original:
        assert original.coins()[0].index == 0
        r = original.read(a1["url"])
        # the vendor said already_spent with its index and seen (1.1: never the word);
        # the seen is that of this coin's word there, so the wallet moved up and paid
        assert r.receipt is not None
        assert r.receipt.from_index == spent.receipt.to_index
        assert any("spent up to" in w for w in r.warnings)


def test_the_original_resyncs_on_the_brokers_seen_at_another_newspaper(
    world: Any, wallet: Wallet
) -> None:
    """The copy spent at the Daily, which checkpointed: the original, behind, pays the
    Gazette, which asks the broker for the coin with the reader's spent word. The
    broker's already_spent names its latest index and seen (never the word), the
    Gazette passes it on, and the wallet moves up only because the seen is that of
    its own word there."""
    wallet.buy(100)
    wallet.close()
    copy_dir = world.tmp / "wallet-copy"
    shutil.copytree(world.tmp / "wallet", copy_dir)
    daily, gazette = world.articles("daily"), world.articles("gazette")
    with Wallet(copy_dir) as copy:
        spent = copy.read(daily[-1]["url"])
        assert spent.receipt is not None
    assert world.vendors["daily"].services.checkpoint_all().leased == 1
    with Wallet(world.tmp / "wallet") as original:
        r = original.read(gazette[0]["url"])
        assert r.receipt is not None
        assert r.receipt.from_index == spent.receipt.to_index
        assert any(f"spent up to {spent.receipt.to_index}" in w for w in r.warnings)


def test_the_cap_and_a_foreign_broker_are_refused(world: Any, wallet: Wallet) -> None:
    wallet.buy(20)
    article = world.articles("daily")[-1]
    with pytest.raises(LimitExceeded):
        wallet.read(article["url"], max_amount_minor=article["amount"] - 1)
    assert wallet.coins()[0].index == 0

    other = start_broker(BrokerConfig(data_dir=world.tmp / "other-broker"))
    try:
        with pytest.raises(PermissionDenied, match="broker key changed"):
            wallet.login(other.grpc_address, "ann", PASSWORD)
    finally:
        other.stop()
    assert shortcuts(wallet).settings().broker_addr == world.broker.grpc_address
