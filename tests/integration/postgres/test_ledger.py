"""The ledger on both backends: clicks at two vendors with a hand-off, a
cookie-cache window closed by that hand-off, daily redemption at both vendors,
one stored batch retried 100 times, and books that balance to the cent."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from broker.domain import AccountRef
from broker.server import BrokerHandle
from netpay.chain import Chain
from netpay.clock import FakeClock
from netpay.errors import AlreadyExists
from netpay.v1 import broker_pb2 as bpb
from tests.integration.redemption.conftest import balance, books
from tests.integration.vendor.conftest import Reader, StartVendor
from tests.integration.vendor_windows.conftest import (
    JSON,
    click,
    handle_of,
    open_window,
    pay_header,
)
from vendor.broker_client import GrpcBrokerClient
from vendor.domain import VendorCoinState
from vendor.server import VendorHandle
from vendor.storage import RedemptionBatchRow

from .conftest import coin_view, vendor_token

SENDERS = 4
PRICE = {"1": 1, "2": 2, "3": 3, "4": 5, "5": 7, "7": 10}  # the demo articles, in words


def pay(vendor: VendorHandle, chain: Chain, prev: int, article: str) -> requests.Response:
    resp = requests.get(
        f"{vendor.web_url}/articles/{article}",
        headers={**JSON, "Authorization": pay_header(chain, prev, prev + PRICE[article])},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return resp


def test_clicks_windows_hand_off_and_redemption_balance_the_books(
    backend: str,
    start: StartVendor,
    broker: BrokerHandle,
    reader: Reader,
    clock: FakeClock,
    tmp_path: Path,
) -> None:
    v1 = start("daily-hash")
    v2 = start("chain-gazette")
    chain = reader.buy(300)
    ecoin = chain.ecoin_id.hex()
    pay(v1, chain, 0, "4")  # (0, 5]
    pay(v1, chain, 5, "7")  # (5, 15]
    opened = open_window(v1.web_url, chain, 15, 40)  # (15, 55] in the reader's cookie
    assert opened.status_code == 200, opened.text
    handle = handle_of(opened)
    for article in ("4", "7"):  # 15 of the window's 40 words
        assert click(v1.web_url, article, handle).status_code == 200
    # The reader moves on: the hand-off to v2 closes the window; 25 words go back.
    pay(v2, chain, 55, "2")  # (55, 57]
    pay(v2, chain, 57, "5")  # (57, 64]
    assert coin_view(v1, ecoin).state is VendorCoinState.HANDING_OFF
    closed = click(v1.web_url, "1", handle)  # the window is closed
    assert closed.status_code == 402, closed.text
    assert "the window is closed" in closed.json()["detail"]
    assert reader.coin(chain).holder == "chain-gazette"

    assert v1.redeemer.redeem().paid_minor == {"EUR": 30}  # 5 + 10 + the window's 15
    assert v2.redeemer.redeem().paid_minor == {"EUR": 9}
    assert v1.redeemer.redeem().batches == []  # nothing new: nothing sent, nothing paid

    # v2 stores a batch, then "crashes" before it hears the reply: the batch is sent
    # 100 times, by 4 senders at once (a concurrent duplicate must get the stored reply).
    pay(v2, chain, 64, "7")  # (64, 74]
    built = v2.redeemer._build_batch()
    assert built is not None
    batch_id, request = built
    client = GrpcBrokerClient(broker.grpc_address, token=vendor_token(tmp_path / "chain-gazette"))
    go = threading.Barrier(SENDERS)

    def send(_: int) -> set[bytes]:
        go.wait()
        return {client.redeem(request).SerializeToString() for _ in range(100 // SENDERS)}

    try:
        with ThreadPoolExecutor(SENDERS) as pool:
            replies = set().union(*pool.map(send, range(SENDERS)))
        assert len(replies) == 1
        [result] = bpb.RedeemResponse.FromString(replies.pop()).results
        assert result.status == bpb.CLAIM_STATUS_ACCEPTED
        with pytest.raises(AlreadyExists):  # the same batch id with other claims
            client.redeem(bpb.RedeemRequest(batch_id=batch_id, claims=request.claims[:0]))
    finally:
        client.close()
    again = v2.redeemer.redeem()  # after the restart: the stored reply, paid once
    assert [b.retried for b in again.batches] == [True]
    assert again.paid_minor == {"EUR": 10}
    with v2.services._ports.uow(read_only=True) as unit:
        row = unit.session.get(RedemptionBatchRow, batch_id)
        assert row is not None and row.state == "done"

    assert balance(broker, AccountRef.vendor_bank("daily-hash", "EUR")) == 30
    assert balance(broker, AccountRef.vendor_bank("chain-gazette", "EUR")) == 19
    report = books(broker, clock)
    assert report.conservation_cents == {"EUR": 0}, (backend, report.as_json())
    assert report.balanced, report.as_json()
    assert report.disputes == []
    assert report.redeemed_cents == {"EUR": 49}
    assert report.refunded_cents == {"EUR": 25}
    assert balance(broker, AccountRef.broker_float("EUR")) == 300 - 49 - 25
