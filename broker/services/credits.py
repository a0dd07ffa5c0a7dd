"""Window credits kept for the reader: the refund of a closed window's unused words.

A vendor's signed WindowCredit reaches the broker two ways: with a hand-off's
CoinIndex (:mod:`broker.services.custody`, RecordHandoff) and in a Redeem
batch (:mod:`broker.services.redemption`). Both parse it here and keep it
once per (coin, epoch, top); a claim later nets it and its units go to the
reader's refund balance.
"""

from __future__ import annotations

from broker.domain import EpochView
from broker.domain.claims import CreditView
from broker.storage import Repos, StoredCredit, WindowCreditRow
from netpay.encoding import check_ecoin_id, check_party_id
from netpay.envelope import open_envelope
from netpay.errors import AlreadyExists, InvalidArgument, PermissionDenied
from netpay.v1 import statements_pb2 as pb

__all__ = ["credit_view", "keep_window_credit", "parse_window_credit"]


def parse_window_credit(envelope: pb.Envelope, signer_key: bytes) -> CreditView:
    """A signed WindowCredit, checked for shape (the signer's id is checked by the caller)."""
    msg = open_envelope(envelope, pb.WindowCredit, signer_key)
    check_party_id(msg.vendor_id)
    check_ecoin_id(msg.ecoin_id)
    if msg.consumed_index > msg.window_top:
        raise InvalidArgument("a window credit's consumed index is above its top")
    if msg.refund_units != msg.window_top - msg.consumed_index:
        raise InvalidArgument("a window credit's refund is not window_top - consumed_index")
    return CreditView(
        vendor_id=msg.vendor_id,
        ecoin_id=msg.ecoin_id,
        epoch=msg.epoch,
        window_top=msg.window_top,
        consumed_index=msg.consumed_index,
        refund_units=msg.refund_units,
    )


def credit_view(stored: StoredCredit) -> CreditView:
    """A kept credit as the redemption rules see it."""
    return CreditView(
        vendor_id=stored.vendor_id,
        ecoin_id=stored.ecoin_id,
        epoch=stored.epoch,
        window_top=stored.window_top,
        consumed_index=stored.consumed_index,
        refund_units=stored.refund_units,
    )


def keep_window_credit(
    repos: Repos, credit: CreditView, envelope: pb.Envelope, epoch: EpochView, now_ms: int
) -> None:
    """Keep a WindowCredit of ``epoch`` for the reader (once; the same credit again is a no-op)."""
    if credit.vendor_id != epoch.holder or credit.epoch != epoch.epoch:
        raise PermissionDenied("the window credit is not from the epoch's holder")
    if credit.consumed_index < epoch.base.index:
        raise InvalidArgument("the window credit lies below the epoch's base")
    if epoch.end_index is not None and credit.window_top > epoch.end_index:
        raise InvalidArgument("the window credit lies above the epoch's end")
    kept = repos.redemption.credit_at(credit.ecoin_id, credit.epoch, credit.window_top)
    if kept is not None:
        if (kept.consumed_index, kept.vendor_id) != (credit.consumed_index, credit.vendor_id):
            raise AlreadyExists("another window credit with this top is already kept")
        return
    repos.redemption.add_credit(
        WindowCreditRow(
            vendor_id=credit.vendor_id,
            ecoin_id=credit.ecoin_id,
            epoch=credit.epoch,
            window_top=credit.window_top,
            consumed_index=credit.consumed_index,
            refund_units=credit.refund_units,
            credit=envelope.SerializeToString(),
            received_at_ms=now_ms,
        )
    )
