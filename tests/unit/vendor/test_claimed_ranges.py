"""How the vendor lists a stored Receipt in its claim: ``(void_from, prev, to)`` with
the void_from it signed, and none when the stored Receipt has none or cannot be
trusted (a run of the daily redemption never stops on one)."""

from __future__ import annotations

from netpay.envelope import SigningKey, seal
from netpay.v1 import statements_pb2 as pb
from vendor.services.redeem import _claimed_range
from vendor.storage import ClickSpan

KEY = SigningKey.generate()
ECOIN = "cd" * 16


def stored(receipt: bytes, frm: int = 8, to: int = 18) -> ClickSpan:
    return ClickSpan(ECOIN, 1, frm, to, b"w" * 32, "7", 1, receipt)


def signed(**fields: int) -> bytes:
    body = pb.Receipt(vendor_id="v", ecoin_id=ECOIN, epoch=1, from_index=8, to_index=18, **fields)
    return seal(body, KEY).SerializeToString()


def listed(click: ClickSpan) -> tuple[int | None, int, int]:
    rng = _claimed_range(ECOIN, click)
    return (rng.void_from if rng.HasField("void_from") else None, rng.from_index, rng.to_index)


def test_a_stored_receipt_is_listed_with_the_void_from_signed_into_it() -> None:
    assert listed(stored(signed(void_from=5))) == (5, 8, 18)
    assert listed(stored(signed(void_from=0))) == (0, 8, 18)  # 0 is a value, not "unset"
    assert listed(stored(signed())) == (None, 8, 18)  # signed before revision 1.1


def test_a_stored_receipt_that_cannot_be_trusted_is_listed_without_one() -> None:
    assert listed(stored(signed(void_from=9))) == (None, 8, 18)  # above prev
    assert listed(stored(b"\xff\x00 not an envelope")) == (None, 8, 18)
