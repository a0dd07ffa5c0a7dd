"""The wallet's checks of a Receipt's ``void_from`` (revision 1.1): the vendor's
index before the payment, at or below the ``prev`` the wallet sent; for a window
click the previous click's ``to``. What the wallet cannot know (where the vendor's
index stood) it does not guess."""

from __future__ import annotations

from typing import Any

import pytest

from ewallet_client import Wallet
from ewallet_client.domain import check_receipt, check_window_receipt
from netpay.errors import SignatureInvalid
from netpay.v1 import statements_pb2 as pb

ECOIN = "ab" * 16


def receipt(frm: int, to: int, void_from: int | None) -> pb.Receipt:
    signed = pb.Receipt(
        vendor_id="v1",
        ecoin_id=ECOIN,
        epoch=1,
        from_index=frm,
        to_index=to,
        amount_minor=to - frm,
        currency="EUR",
        item_id="1",
    )
    if void_from is not None:
        signed.void_from = void_from
    return signed


def paid(signed: pb.Receipt, frm: int = 8, to: int = 13) -> None:
    check_receipt(
        signed,
        vendor_id="v1",
        ecoin_id=ECOIN,
        from_index=frm,
        to_index=to,
        amount_minor=to - frm,
        currency="EUR",
    )


def from_window(signed: pb.Receipt) -> None:
    check_window_receipt(
        signed,
        vendor_id="v1",
        ecoin_id=ECOIN,
        epoch=1,
        window_from=20,
        window_top=50,
        unit_value_minor=1,
        currency="EUR",
        max_amount_minor=100,
    )


def test_a_paid_clicks_void_from_is_anywhere_at_or_below_prev() -> None:
    for void_from in (0, 5, 8, None):  # None: a receipt signed before revision 1.1
        paid(receipt(8, 13, void_from))
    with pytest.raises(SignatureInvalid, match="void_from 9 is above prev 8"):
        paid(receipt(8, 13, 9))


def test_a_window_clicks_void_from_is_the_previous_clicks_to() -> None:
    for void_from in (0, 18, 20, None):  # the first click: the opening's skipped words
        from_window(receipt(20, 25, void_from))
    from_window(receipt(25, 30, 25))
    from_window(receipt(25, 30, None))
    for frm, void_from in ((25, 20), (25, 24), (25, 26), (20, 21)):
        with pytest.raises(SignatureInvalid, match="void_from"):
            from_window(receipt(frm, frm + 5, void_from))


def _article(vendor: Any) -> str:
    return vendor.url + "/articles/1"


def test_a_receipt_whose_void_from_is_above_prev_is_reported(wallet: Wallet, vendor: Any) -> None:
    wallet.buy(100)
    vendor.receipt_tamper = {"void_from": 1}  # the wallet paid (0, 5]
    result = wallet.read(_article(vendor))
    assert result.status == 200 and result.receipt is None
    assert isinstance(result.receipt_error, SignatureInvalid)
    assert "void_from" in result.receipt_error.detail
    assert wallet.history() == []
    vendor.receipt_tamper = {"void_from": 5}  # the next click, (5, 10]: no void words
    assert wallet.read(_article(vendor)).receipt is not None
