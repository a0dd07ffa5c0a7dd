"""Refunds for returned goods (``netpay vendor refund``): the vendor gives a
reader money back for a paid click.

:meth:`Refunds.record` signs a VendorRefund and stores it PENDING; the next
redemption batch that can carry it (redeem.py) nets it from the vendor's
payout. Needs no broker.
"""

from __future__ import annotations

import logging
import re
import secrets

from netpay.clock import Clock
from netpay.encoding import check_ecoin_id
from netpay.envelope import seal
from netpay.errors import AlreadyExists, InvalidArgument, NotFound, PreconditionFailed
from netpay.v1 import statements_pb2 as pb
from vendor.domain import ClaimStatus
from vendor.services.ports import UnitOfWorkFactory, VendorIdentity
from vendor.storage import PaidClick, RefundRecord, VendorUnit

__all__ = ["MAX_REFUND_REASON_CHARS", "RefundRecord", "Refunds"]

log = logging.getLogger("vendor.redemption")

MAX_REFUND_REASON_CHARS = 200  # the broker's limit
_REFUND_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")  # the broker's grammar
_MAX_INDEX = 2**32 - 1
_MAX_REFUND_MINOR = 10**12


def _check_refund_input(
    ecoin_id: str, receipt_to_index: int, amount_minor: int, reason: str, refund_id: str | None
) -> tuple[str, str]:
    """Checked (reason, refund_id); InvalidArgument on bad input."""
    check_ecoin_id(ecoin_id)
    for name, value, top in (
        ("receipt to-index", receipt_to_index, _MAX_INDEX),
        ("amount", amount_minor, _MAX_REFUND_MINOR),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= top:
            raise InvalidArgument(f"the {name} must be a whole number in 1..{top}")
    text = reason.strip()
    if not 0 < len(text) <= MAX_REFUND_REASON_CHARS or not text.isprintable():
        raise InvalidArgument(
            f"a refund reason is 1..{MAX_REFUND_REASON_CHARS} printable characters"
        )
    if refund_id is None:
        refund_id = secrets.token_hex(16)
    elif not _REFUND_ID.fullmatch(refund_id):
        raise InvalidArgument("a refund id is 1..64 characters of [A-Za-z0-9_-]")
    return text, refund_id


class Refunds:
    """Record refunds for paid clicks, and list them."""

    def __init__(self, uow: UnitOfWorkFactory, identity: VendorIdentity, clock: Clock) -> None:
        self._uow = uow
        self._id = identity
        self._clock = clock

    def record(
        self,
        *,
        ecoin_id: str,
        receipt_to_index: int,
        amount_minor: int,
        reason: str,
        refund_id: str | None = None,
    ) -> RefundRecord:
        """Record (and sign) a refund of ``amount_minor`` for the paid click whose
        Receipt ends at ``receipt_to_index`` of ``ecoin_id``.

        The click is looked up in the click log and the window clicks; an unknown
        receipt is NotFound, one whose claim the broker refused PreconditionFailed,
        and an amount above what the click paid less its earlier refunds
        InvalidArgument. The refund is stored ``pending``; the next redemption
        batch that can carry it nets it. ``refund_id`` defaults to a random one;
        the same id again with the same refund returns the stored one
        (``created=False``), with another refund AlreadyExists.
        """
        text, refund_id = _check_refund_input(
            ecoin_id, receipt_to_index, amount_minor, reason, refund_id
        )
        now_ms = self._clock.now_ms()
        with self._uow() as unit:
            unit.redemption.lock(now_ms)  # one writer of refunds and batches at a time
            stored = unit.refunds.by_refund_id(refund_id)
            if stored is not None:
                same = (
                    stored.ecoin_id,
                    stored.receipt_to_index,
                    stored.amount_minor,
                    stored.reason,
                )
                if same != (ecoin_id, receipt_to_index, amount_minor, text):
                    raise AlreadyExists(f"refund {refund_id} was recorded for another refund")
                return stored
            click = _refundable_click(unit, ecoin_id, receipt_to_index, amount_minor)
            envelope = self._sign(
                refund_id, click, ecoin_id, receipt_to_index, amount_minor, text, now_ms
            )
            record = unit.refunds.add(
                refund_id=refund_id,
                click=click,
                ecoin_id=ecoin_id,
                receipt_to_index=receipt_to_index,
                amount_minor=amount_minor,
                reason=text,
                envelope=envelope,
                now_ms=now_ms,
            )
            unit.commit()
        log.info("refund %s of %d %s recorded", refund_id, amount_minor, click.currency)
        return record

    def _sign(
        self,
        refund_id: str,
        click: PaidClick,
        ecoin_id: str,
        receipt_to_index: int,
        amount_minor: int,
        reason: str,
        now_ms: int,
    ) -> bytes:
        """The serialized Envelope(VendorRefund)."""
        return seal(
            pb.VendorRefund(
                vendor_id=self._id.vendor_id,
                ecoin_id=ecoin_id,
                epoch=click.epoch,
                receipt_to_index=receipt_to_index,
                amount_minor=amount_minor,
                currency=click.currency,
                reason=reason,
                time_ms=now_ms,
                refund_id=refund_id,
            ),
            self._id.key,
        ).SerializeToString()

    def refunds(self, *, limit: int = 1000) -> list[RefundRecord]:
        """The newest refunds first."""
        with self._uow(read_only=True) as unit:
            return unit.refunds.newest(limit=limit)


def _refundable_click(
    unit: VendorUnit, ecoin_id: str, receipt_to_index: int, amount_minor: int
) -> PaidClick:
    """The paid click a refund of ``amount_minor`` may be given for."""
    click = unit.refunds.paid_click(ecoin_id, receipt_to_index)
    if click is None:
        raise NotFound(f"no paid click of coin {ecoin_id} ends at index {receipt_to_index}")
    claim = unit.redemption.covering_claim(ecoin_id, click.epoch, receipt_to_index)
    if claim is not None and claim.status is ClaimStatus.REJECTED:
        raise PreconditionFailed(
            f"the broker refused the claim of this click ({claim.reason}): nothing was paid"
        )
    earlier = unit.refunds.refunded_minor(ecoin_id, receipt_to_index)
    if earlier + amount_minor > click.amount_minor:
        raise InvalidArgument(
            f"the click paid {click.amount_minor} {click.currency} minor units and "
            f"{earlier} were refunded already: at most {click.amount_minor - earlier} "
            "can be refunded"
        )
    return click
