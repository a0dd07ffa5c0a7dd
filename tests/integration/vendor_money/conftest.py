"""A real broker and real vendors in process (reused from tests/integration/vendor
through tests/integration/redemption), plus the helpers of the refund tests."""

from __future__ import annotations

import secrets

import requests

from broker.domain import AccountRef
from netpay.chain import Chain, new_ecoin_id, new_seed
from netpay.transport.auth import bearer_metadata
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb
from tests.integration.redemption.conftest import (  # noqa: F401 (fixtures, re-exported)
    JSON,
    Reader,
    StartVendor,
    balance,
    books,
    broker,
    broker_dir,
    broker_stub,
    click,
    clock,
    close,
    handle_of,
    open_window,
    pay_header,
    reader,
    reader_id,
    start,
)

# The packaged articles' prices (vendor/data/articles.json), in EUR minor units.
PRICE = {"1": 1, "2": 2, "3": 3, "4": 5, "5": 7, "7": 10}


def pay(vendor, chain: Chain, prev: int, article: str, price: int | None = None) -> int:
    """Pay one article from ``prev``; returns the receipt's to-index."""
    index = prev + (PRICE[article] if price is None else price)
    resp = requests.get(
        f"{vendor.web_url}/articles/{article}",
        headers={**JSON, "Authorization": pay_header(chain, prev, index)},
        timeout=30,
    )
    assert resp.status_code == 200, resp.text
    return index


def buy(account: Reader, n: int, currency: str) -> Chain:
    chain = Chain.make(new_ecoin_id(), n, new_seed())
    account.stub.BuyCoin(
        bpb.BuyCoinRequest(
            request_id=secrets.token_hex(8),
            ecoin_id=chain.ecoin_id.hex(),
            root=chain.root,
            n=n,
            unit_value_minor=1,
            currency=currency,
            wallet_kind=pb.WALLET_KIND_CLIENT_SIDE,
        ),
        metadata=bearer_metadata(account.token),
        timeout=10,
    )
    return chain


def money(broker_handle, vendor_id: str, currency: str = "EUR") -> dict[str, int]:
    """The vendor's bank and payable accounts and the reader's refund balance."""
    owner = reader_id(broker_handle)
    return {
        "bank": balance(broker_handle, AccountRef.vendor_bank(vendor_id, currency)),
        "payable": balance(broker_handle, AccountRef.vendor_payable(vendor_id, currency)),
        "reader_refund": balance(broker_handle, AccountRef.reader_refund(owner, currency)),
    }
