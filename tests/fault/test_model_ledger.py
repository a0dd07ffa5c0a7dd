"""The model ledger itself: it must catch a word paid twice, a Receipt beyond what
the wallet issued and a redemption that pays the wrong amount, and it must
account void words and open windows in the float."""

from __future__ import annotations

import pytest

from netpay.v1 import statements_pb2 as pb
from tests.fault.model_ledger import ModelLedger

COIN = "00" * 16
OTHER = "11" * 16


def receipt(vendor: str, frm: int, to: int, *, epoch: int = 1, ecoin: str = COIN) -> pb.Receipt:
    return pb.Receipt(
        vendor_id=vendor,
        ecoin_id=ecoin,
        epoch=epoch,
        from_index=frm,
        to_index=to,
        amount_minor=to - frm,
        currency="EUR",
        item_id="x",
    )


def paid(model: ModelLedger, vendor: str, frm: int, to: int, **kw: object) -> bool:
    r = receipt(vendor, frm, to, **kw)  # type: ignore[arg-type]
    return model.receipt(vendor, r, r.SerializeToString())


@pytest.fixture
def model() -> ModelLedger:
    m = ModelLedger(deposit_minor=1000)
    m.purchase(COIN, 100)
    m.purchase(OTHER, 50)
    return m


def test_a_retry_counts_once_and_a_word_paid_twice_is_caught(model: ModelLedger) -> None:
    model.issue(COIN, 0, 10)
    assert paid(model, "a", 0, 5)
    assert not paid(model, "a", 0, 5)  # the same Receipt again: a retry
    with pytest.raises(AssertionError, match="paid twice"):
        paid(model, "b", 4, 6)  # word 5 again, at another vendor
    with pytest.raises(AssertionError, match="above what the wallet issued"):
        paid(model, "a", 10, 11)


def test_void_and_unspent_words_stay_in_the_float(model: ModelLedger) -> None:
    model.issue(COIN, 0, 5)
    assert paid(model, "a", 0, 5)
    model.issue(COIN, 5, 7)  # a header never used
    model.issue(COIN, 7, 9)
    assert paid(model, "b", 7, 9, epoch=2)
    assert model.void_units(COIN) == 2
    model.redeemed("a", 5)
    model.redeemed("b", 2)
    assert model.vendor_bank_minor("a") == 5 and model.vendor_bank_minor("b") == 2
    assert model.float_minor() == 150 - 7
    assert model.reader_bank_minor() == 1000 - 150
    with pytest.raises(AssertionError, match="the model says 0"):
        model.redeemed("a", 1)  # nothing new to claim


def test_an_open_window_holds_back_its_epoch_and_a_closed_one_nets_its_credit(
    model: ModelLedger,
) -> None:
    model.issue(COIN, 0, 3)
    assert paid(model, "a", 0, 3)
    model.issue(COIN, 3, 23)
    window = model.window_opened("a", COIN, 1, 3, 23)
    assert paid(model, "a", 3, 8)  # a window click
    with pytest.raises(AssertionError):
        paid(model, "a", 9, 10)  # not from the window's consumed index
    model.issue(COIN, 23, 25)
    assert paid(model, "a", 23, 25)  # a click above the window, same epoch
    assert model.redeemable_minor("a") == 3  # the open window stops the claim
    model.redeemed("a", 3)
    model.window_closed(window)
    assert window.refund_units == 15
    assert model.redeemable_minor("a") == 5 + 2
    model.redeemed("a", 7)
    assert model.reader_refund_minor() == 15
    assert model.float_minor() == 150 - 10 - 15
    with pytest.raises(AssertionError, match="closed window"):
        paid(model, "a", 8, 9)
