"""Vendor refunds (goods returned), netted in a Redeem batch.

A vendor gives back part of a Receipt it redeemed: the amount moves from the
vendor's payable account to the reader's refund balance, once per (vendor,
refund id); the same refund sent again is answered with its first result.
Called by :mod:`broker.services.redemption` inside the batch's unit of work,
each refund in its own savepoint.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from broker.domain import AccountRef, Transaction
from broker.storage import Repos, StoredCoin, VendorRefundRow
from netpay.encoding import check_currency, check_ecoin_id
from netpay.envelope import open_envelope
from netpay.errors import (
    AlreadyExists,
    InvalidArgument,
    NetPayError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
)
from netpay.v1 import broker_pb2 as bpb
from netpay.v1 import statements_pb2 as pb

__all__ = ["net_vendor_refunds"]

_REFUND_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_REASON_MAX_CHARS = 200


def net_vendor_refunds(
    repos: Repos,
    envelopes: Sequence[pb.Envelope],
    key: bytes,
    caller: str,
    batch_row_id: int,
    now_ms: int,
    paid: dict[str, int],
) -> list[bpb.RefundResult]:
    """Net the batch's refunds, each in its own savepoint; ``paid`` (per currency) loses
    what they give back. A refusal of the refund itself is its result; a malformed
    one (signature, vendor, id) refuses the batch."""
    results = []
    for refund_envelope in envelopes:
        with repos.savepoint() as saved:
            result = _vendor_refund(repos, refund_envelope, key, caller, batch_row_id, now_ms, paid)
        if saved.duplicate:
            # A concurrent twin of this batch won a unique key: Redeem answers it.
            raise AlreadyExists("a record with that key already exists")
        results.append(result)
    return results


def _rejected_refund(refund_id: str, err: NetPayError) -> bpb.RefundResult:
    return bpb.RefundResult(
        refund_id=refund_id,
        status=bpb.CLAIM_STATUS_REJECTED,
        reason=err.code,
        detail=err.detail[:_REASON_MAX_CHARS],
    )


def _vendor_refund(
    repos: Repos,
    refund_envelope: pb.Envelope,
    key: bytes,
    caller: str,
    batch_row_id: int,
    now_ms: int,
    paid: dict[str, int],
) -> bpb.RefundResult:
    """A VendorRefund of the batch: the vendor gives back part of a redeemed Receipt."""
    msg = open_envelope(refund_envelope, pb.VendorRefund, key)
    if msg.vendor_id != caller:
        raise PermissionDenied("a vendor refund must name the caller")
    if not _REFUND_ID.fullmatch(msg.refund_id):
        raise InvalidArgument("refund_id must be 1..64 characters of [A-Za-z0-9_-]")
    try:
        stored = _refundable_coin(repos, caller, msg, refund_envelope)
    except NetPayError as err:
        return _rejected_refund(msg.refund_id, err)
    if stored is None:
        # The same refund again (a vendor resending it): its first result.
        return bpb.RefundResult(
            refund_id=msg.refund_id,
            status=bpb.CLAIM_STATUS_ACCEPTED,
            detail="netted in an earlier batch",
        )
    repos.redemption.add_refund(
        VendorRefundRow(
            vendor_id=caller,
            refund_id=msg.refund_id,
            ecoin_id=msg.ecoin_id,
            receipt_to_index=msg.receipt_to_index,
            amount_minor=msg.amount_minor,
            currency=msg.currency,
            refund=refund_envelope.SerializeToString(),
            batch_row_id=batch_row_id,
            created_at_ms=now_ms,
        )
    )
    repos.ledger.post(
        Transaction.transfer(
            "vendor_refund",
            f"vendor_refund:{caller}:{msg.refund_id}",
            now_ms,
            source=AccountRef.vendor_payable(caller, msg.currency),
            destination=AccountRef.reader_refund(stored.owner, msg.currency),
            amount_minor=msg.amount_minor,
        )
    )
    paid[msg.currency] -= msg.amount_minor
    return bpb.RefundResult(refund_id=msg.refund_id, status=bpb.CLAIM_STATUS_ACCEPTED)


def _refundable_coin(
    repos: Repos, caller: str, msg: pb.VendorRefund, refund_envelope: pb.Envelope
) -> StoredCoin | None:
    """The coin a vendor refund pays back to, after its checks; None when the same
    refund was netted before. Every refusal is a NetPayError."""
    check_ecoin_id(msg.ecoin_id)
    check_currency(msg.currency)
    if len(msg.reason) > _REASON_MAX_CHARS:
        raise InvalidArgument(f"a refund reason has at most {_REASON_MAX_CHARS} characters")
    if msg.amount_minor <= 0:
        raise InvalidArgument("a refund is a positive amount")
    earlier = repos.redemption.refund(caller, msg.refund_id)
    if earlier is not None:
        if earlier.refund == refund_envelope.SerializeToString():
            return None
        raise AlreadyExists(f"refund id {msg.refund_id} was used for another refund")
    stored = repos.coins.get(msg.ecoin_id)
    if stored is None:
        raise NotFound(f"no coin {msg.ecoin_id}")
    if stored.currency != msg.currency:
        raise InvalidArgument("the refund's currency is not the coin's")
    paid_range = repos.redemption.claimed_range(caller, msg.ecoin_id, msg.receipt_to_index)
    if paid_range is None:
        raise PreconditionFailed(
            "no redeemed receipt of this vendor ends at that index: redeem it first"
        )
    already = repos.redemption.refunded_for_receipt(caller, msg.ecoin_id, msg.receipt_to_index)
    if already + msg.amount_minor > paid_range.amount_minor:
        raise InvalidArgument(
            f"the receipt paid {paid_range.amount_minor}; {already} is already refunded"
        )
    return stored
