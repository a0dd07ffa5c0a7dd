"""The walking skeleton end to end: buy, pay per click at two newspapers, hand-off by gRPC.

Real broker and vendors (gRPC on port 0, Flask over loopback, SQLite files),
the real client wallet, one FakeClock.
"""

from __future__ import annotations

import grpc
import pytest
import requests

from broker.server import add_vendor
from netpay.chain import seen_of
from netpay.encoding import b64url_decode
from netpay.envelope import SigningKey, open_envelope
from netpay.header import format_authorization, parse_authorization
from netpay.transport.auth import bearer_metadata, sign_call
from netpay.transport.status import from_rpc_error
from netpay.v1 import broker_pb2, vendor_pb2, vendor_pb2_grpc
from netpay.v1 import statements_pb2 as pb

from .conftest import DEPOSIT_MINOR, World

# article id -> price in cents (vendor/data/articles.json)
PRICE = {"1": 1, "2": 2, "4": 5, "5": 7, "7": 10, "12": 25}
JSON = {"Accept": "application/json"}


def _url(vendor_web: str, article: str) -> str:
    return f"{vendor_web}/articles/{article}"


def _get(url: str, header: str | None = None) -> requests.Response:
    headers = dict(JSON)
    if header is not None:
        headers["Authorization"] = header
    return requests.get(url, headers=headers, timeout=30)


def _receipt(resp: requests.Response) -> pb.Receipt:
    env = pb.Envelope.FromString(b64url_decode(resp.headers["NetPay-Receipt"]))
    receipt = pb.Receipt.FromString(env.payload)
    return receipt


def test_reader_pays_at_two_newspapers_and_the_coin_moves_over_grpc(world: World) -> None:
    coin = world.wallet.buy(300)
    assert world.bank_balance() == DEPOSIT_MINOR - 300

    spent = 0
    for vendor, articles in ((world.daily, ("1", "4", "7")), (world.gazette, ("2", "5", "12"))):
        for article in articles:
            result = world.wallet.read(_url(vendor.web_url, article))
            assert result.status == 200 and result.paid, result
            assert result.receipt_error is None
            assert result.receipt is not None
            assert result.receipt.vendor_id == vendor.vendor_id
            assert (result.receipt.from_index, result.receipt.to_index) == (
                spent,
                spent + PRICE[article],
            )
            assert result.receipt.amount_minor == PRICE[article]
            spent += PRICE[article]
            assert result.balance_words == 300 - spent
            assert b"<html" in result.body.lower()
        status = world.coin_status(coin.ecoin_id)
        assert status.holder == vendor.vendor_id

    # The custody log: epoch 1 at the Daily Hash from the root to 16, closed
    # by the hand-off; epoch 2 at the Gazette from 16.
    status = world.coin_status(coin.ecoin_id)
    assert (status.epoch, status.holder, status.latest_index) == (2, "chain-gazette", 16)
    with world.broker.services.store.begin() as repos:
        epochs = repos.coins.epochs(coin.ecoin_id)
    assert [(e.epoch, e.holder, e.base.index) for e in epochs] == [
        (1, "daily-hash", 0),
        (2, "chain-gazette", 16),
    ]
    assert epochs[0].end is not None and epochs[0].end.index == 16
    assert epochs[1].end is None

    # The balance, right to the cent, seen by every party.
    assert world.bank_balance() == DEPOSIT_MINOR - 300
    [view] = [c for c in world.wallet.coins() if c.ecoin_id == coin.ecoin_id]
    assert (view.words_left, view.value_left_minor, view.accepted_index) == (250, 250, 50)
    history = world.wallet.history()
    assert sum(int(h["amount_minor"]) for h in history) == 50  # type: ignore[call-overload]
    assert [(h["from_index"], h["to_index"]) for h in history] == [
        (0, 1),
        (1, 6),
        (6, 16),
        (16, 18),
        (18, 25),
        (25, 50),
    ]
    daily_words = sum(c.to_index - c.from_index for c in world.daily.services.clicks(coin.ecoin_id))
    gazette_words = sum(
        c.to_index - c.from_index for c in world.gazette.services.clicks(coin.ecoin_id)
    )
    assert (daily_words, gazette_words) == (16, 34)


def test_retry_is_served_again_and_another_article_is_already_spent(world: World) -> None:
    world.wallet.buy(100)
    url = _url(world.daily.web_url, "4")
    header = world.wallet.authorize(url)
    first = _get(url, header)
    assert first.status_code == 200
    again = _get(url, header)
    assert again.status_code == 200
    assert again.headers["NetPay-Receipt"] == first.headers["NetPay-Receipt"]
    assert again.text == first.text
    assert len(world.daily.services.clicks(parse_authorization(header).ecoin_id)) == 1

    other = _get(_url(world.daily.web_url, "7"), header)
    assert other.status_code == 409
    body = other.json()
    assert body["error"] == "already_spent"
    assert body["index"] == 5
    # 1.1: the seen of the word at that index, never the word itself.
    assert b64url_decode(body["seen"]) == seen_of(parse_authorization(header).payword)
    assert "payword" not in body
    assert other.headers["WWW-Authenticate"].startswith("NetPay ")


def test_forged_payword_is_refused_and_the_genuine_header_still_pays(world: World) -> None:
    world.wallet.buy(100)
    world.wallet.read(_url(world.daily.web_url, "1"))  # the Daily Hash now holds the coin
    url = _url(world.daily.web_url, "5")
    header = world.wallet.authorize(url)
    creds = parse_authorization(header)
    forged = format_authorization(type(creds)(creds.ecoin_id, creds.prev, creds.index, bytes(32)))
    bad = _get(url, forged)
    assert bad.status_code == 402
    assert bad.json()["error"] == "bad_payword"
    good = _get(url, header)
    assert good.status_code == 200
    assert _receipt(good).to_index == creds.index


def test_forged_payword_at_a_vendor_that_does_not_hold_the_coin(world: World) -> None:
    world.wallet.buy(100)
    url = _url(world.gazette.web_url, "2")
    header = world.wallet.authorize(url)
    creds = parse_authorization(header)
    forged = format_authorization(
        type(creds)(creds.ecoin_id, creds.prev, creds.index, b"\x01" * 32)
    )
    bad = _get(url, forged)
    assert (bad.status_code, bad.json()["error"]) == (402, "bad_payword")
    assert world.coin_status(creds.ecoin_id).holder == ""  # the forgery took no custody
    assert _get(url, header).status_code == 200


def test_wrong_amount_carries_the_index_to_resync_from(world: World) -> None:
    world.wallet.buy(100)
    world.wallet.read(_url(world.daily.web_url, "1"))
    header = world.wallet.authorize(_url(world.daily.web_url, "4"))  # 5 words
    resp = _get(_url(world.daily.web_url, "7"), header)  # costs 10
    assert resp.status_code == 402
    body = resp.json()
    assert body["error"] == "wrong_amount"
    assert body["index"] == 1
    assert "seen" in body and "payword" not in body
    # Nothing was spent: the same header still pays for what it was made for.
    assert _get(_url(world.daily.web_url, "4"), header).status_code == 200


def test_abandoned_hand_off_is_reclaimed(world: World) -> None:
    """A third vendor takes the grant, gets the CoinIndex, and vanishes before RecordHandoff."""
    coin = world.wallet.buy(100)
    world.wallet.read(_url(world.daily.web_url, "1"))
    ecoin = coin.ecoin_id

    # The third vendor enrolls like any other.
    key = SigningKey.generate()
    token = add_vendor(world.broker_dir, "third")
    reg = world.stub.RegisterVendor(
        broker_pb2.RegisterVendorRequest(
            enrollment_token=token,
            public_key=key.public_key,
            grpc_address="127.0.0.1:1",
            web_origin="http://127.0.0.1:1",
        )
    )
    third = bearer_metadata(reg.vendor_token)

    # A genuine pending payment is its proof; the broker answers with a grant.
    header = world.wallet.authorize(_url(world.daily.web_url, "4"))
    creds = parse_authorization(header)
    reply = world.stub.AcquireCoin(
        broker_pb2.AcquireCoinRequest(
            ecoin_id=ecoin, proof_index=creds.index, proof_word=creds.payword
        ),
        metadata=third,
    )
    assert reply.WhichOneof("result") == "handoff"
    request = vendor_pb2.HandOffRequest(grant=reply.handoff.grant)
    method = "/netpay.v1.Vendor/HandOff"
    with grpc.insecure_channel(world.daily.grpc_address) as ch:
        ci_env = (
            vendor_pb2_grpc.VendorStub(ch)
            .HandOff(
                request,
                metadata=sign_call(key, "third", method, request, world.clock.now_ms()),
                timeout=10,
            )
            .coin_index
        )
        # Repeating the call returns the same CoinIndex.
        again = (
            vendor_pb2_grpc.VendorStub(ch)
            .HandOff(
                request,
                metadata=sign_call(key, "third", method, request, world.clock.now_ms()),
                timeout=10,
            )
            .coin_index
        )
    assert again == ci_env
    coin_index = open_envelope(ci_env, pb.CoinIndex, _daily_key(world))
    assert (coin_index.index, coin_index.to_vendor, coin_index.epoch) == (1, "third", 1)

    # While HANDING_OFF the Daily Hash accepts nothing: the reader is told to retry.
    busy = _get(_url(world.daily.web_url, "4"), header)
    assert busy.status_code == 409
    assert busy.json()["error"] == "coin_busy"
    assert "Retry-After" in busy.headers

    # Not yet due: nothing is reclaimed.
    assert world.daily.services.reclaim_due() == 0
    world.clock.advance(31)  # handoff_ttl_s = 30
    assert world.daily.services.reclaim_due() == 1
    with world.broker.services.store.begin() as repos:
        epochs = repos.coins.epochs(ecoin)
    assert [(e.epoch, e.holder, e.base.index) for e in epochs] == [
        (1, "daily-hash", 0),
        (2, "daily-hash", 1),
    ]
    assert epochs[0].end is not None and epochs[0].end.index == 1

    # The vanished vendor comes back too late: the epoch it was handed is closed.
    with pytest.raises(grpc.RpcError) as info:
        world.stub.RecordHandoff(broker_pb2.RecordHandoffRequest(coin_index=ci_env), metadata=third)
    assert from_rpc_error(info.value).code == "failed_precondition"

    # And the reader's header, refused while the coin was busy, now pays.
    paid = _get(_url(world.daily.web_url, "4"), header)
    assert paid.status_code == 200
    assert (_receipt(paid).epoch, _receipt(paid).to_index) == (2, 6)


def _daily_key(world: World) -> bytes:
    reply = world.stub.GetVendorCertificate(
        broker_pb2.GetVendorCertificateRequest(vendor_id="daily-hash")
    )
    cert = open_envelope(reply.certificate, pb.VendorCertificate, world.broker.public_key)
    return cert.public_key


def test_unpaid_request_gets_the_challenge(world: World) -> None:
    resp = requests.get(_url(world.daily.web_url, "7"), headers=JSON, timeout=10)
    assert resp.status_code == 402
    assert resp.headers["WWW-Authenticate"] == (
        f'NetPay realm="daily-hash", amount="10", currency="EUR", broker="{world.broker.broker_id}"'
    )
    assert resp.json()["error"] == "payment_required"
    html = requests.get(_url(world.daily.web_url, "7"), headers={"Accept": "text/html"}, timeout=10)
    assert html.status_code == 402 and "text/html" in html.headers["Content-Type"]
    listing = requests.get(world.daily.web_url + "/api/articles", timeout=10).json()
    assert {a["id"]: a["amount"] for a in listing}["7"] == 10
    assert all(set(a) >= {"id", "title", "amount", "currency", "url"} for a in listing)
