"""Refunds for returned goods (``vendor_refunds``) and the paid clicks they refund.

:class:`RefundRepo` stores a signed VendorRefund, finds the click it refunds
(the click log or a window's clicks) and moves refunds between states with
a compare-and-set whose new state comes from
:func:`vendor.domain.refund_transition`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from netpay.encoding import b64url_encode
from vendor.domain import ClaimStatus, RefundEvent, RefundStatus, refund_transition
from vendor.storage.tables import (
    ClaimStateRow,
    ClickRow,
    VendorRefundRow,
    WindowClickRow,
    WindowRow,
    rowcount,
)

__all__ = [
    "BatchedRefund",
    "PaidClick",
    "PendingRefund",
    "RefundRecord",
    "RefundRepo",
    "refund_record",
]


@dataclass(frozen=True)
class RefundRecord:
    """A stored refund and where it is (``status``: see :class:`RefundStatus`)."""

    refund_id: str
    ecoin_id: str
    epoch: int
    receipt_to_index: int
    item_id: str
    amount_minor: int
    currency: str
    reason: str
    status: str
    batch_id: str | None
    result_reason: str | None
    result_detail: str | None
    created_at_ms: int
    finished_at_ms: int | None
    envelope: bytes  # serialized Envelope(VendorRefund)
    created: bool = False  # False: the same refund id was recorded before

    def as_json(self) -> dict[str, object]:
        return {
            "refund_id": self.refund_id,
            "ecoin_id": self.ecoin_id,
            "epoch": self.epoch,
            "receipt_to_index": self.receipt_to_index,
            "item_id": self.item_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "reason": self.reason,
            "status": self.status,
            "batch_id": self.batch_id,
            "result_reason": self.result_reason,
            "result_detail": self.result_detail,
            "created_at_ms": self.created_at_ms,
            "finished_at_ms": self.finished_at_ms,
            "created": self.created,
            "vendor_refund": b64url_encode(self.envelope),
        }


def refund_record(row: VendorRefundRow, *, created: bool = False) -> RefundRecord:
    return RefundRecord(
        refund_id=row.refund_id,
        ecoin_id=row.ecoin_id,
        epoch=int(row.epoch),
        receipt_to_index=row.receipt_to_index,
        item_id=row.item_id,
        amount_minor=int(row.amount_minor),
        currency=row.currency,
        reason=row.reason,
        status=row.status,
        batch_id=row.batch_id,
        result_reason=row.result_reason,
        result_detail=row.result_detail,
        created_at_ms=int(row.created_at_ms),
        finished_at_ms=None if row.finished_at_ms is None else int(row.finished_at_ms),
        envelope=row.refund,
        created=created,
    )


@dataclass(frozen=True)
class PaidClick:
    """What a refund needs to know of the click whose Receipt it refunds."""

    epoch: int
    item_id: str
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class BatchedRefund:
    """A BATCHED refund waiting for the broker's answer in its batch."""

    row_id: int
    refund_id: str
    ecoin_id: str
    epoch: int
    receipt_to_index: int
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class PendingRefund:
    """A PENDING refund and the claim that covers its click, if any."""

    row_id: int
    refund_id: str
    ecoin_id: str
    epoch: int
    receipt_to_index: int
    envelope: bytes  # serialized Envelope(VendorRefund)
    claim_status: ClaimStatus | None
    claim_reason: str | None


class RefundRepo:
    """Refunds and their moves, in one unit of work (the unit commits)."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def by_refund_id(self, refund_id: str) -> RefundRecord | None:
        row = self._session.scalars(
            select(VendorRefundRow).where(VendorRefundRow.refund_id == refund_id)
        ).first()
        return refund_record(row) if row is not None else None

    def paid_click(self, ecoin_id: str, to_index: int) -> PaidClick | None:
        """The click whose Receipt ends at ``to_index``: the click log, else a window's."""
        found = self._session.execute(
            select(
                ClickRow.epoch, ClickRow.item_id, ClickRow.amount_minor, ClickRow.currency
            ).where(ClickRow.ecoin_id == ecoin_id, ClickRow.to_index == to_index)
        ).first()
        if found is None:
            found = self._session.execute(
                select(
                    WindowRow.epoch,
                    WindowClickRow.item_id,
                    WindowClickRow.amount_minor,
                    WindowClickRow.currency,
                )
                .join(WindowRow, WindowRow.id == WindowClickRow.window_id)
                .where(WindowRow.ecoin_id == ecoin_id, WindowClickRow.to_index == to_index)
                .order_by(WindowClickRow.id.desc())
                .limit(1)
            ).first()
        if found is None:
            return None
        epoch, item_id, amount, currency = found
        return PaidClick(int(epoch), str(item_id), int(amount), str(currency))

    def refunded_minor(self, ecoin_id: str, receipt_to_index: int) -> int:
        """What the refunds of one Receipt add up to, refused ones aside."""
        return int(
            self._session.scalar(
                select(func.coalesce(func.sum(VendorRefundRow.amount_minor), 0)).where(
                    VendorRefundRow.ecoin_id == ecoin_id,
                    VendorRefundRow.receipt_to_index == receipt_to_index,
                    VendorRefundRow.status != RefundStatus.REJECTED.value,
                )
            )
            or 0
        )

    def add(
        self,
        *,
        refund_id: str,
        click: PaidClick,
        ecoin_id: str,
        receipt_to_index: int,
        amount_minor: int,
        reason: str,
        envelope: bytes,
        now_ms: int,
    ) -> RefundRecord:
        """Store a new refund, PENDING."""
        row = VendorRefundRow(
            refund_id=refund_id,
            ecoin_id=ecoin_id,
            epoch=click.epoch,
            receipt_to_index=receipt_to_index,
            item_id=click.item_id,
            amount_minor=amount_minor,
            currency=click.currency,
            reason=reason,
            refund=envelope,
            status=refund_transition(None, RefundEvent.RECORDED).value,
            batch_id=None,
            created_at_ms=now_ms,
        )
        self._session.add(row)
        self._session.flush()
        return refund_record(row, created=True)

    def newest(self, *, limit: int) -> list[RefundRecord]:
        rows = self._session.scalars(
            select(VendorRefundRow).order_by(VendorRefundRow.id.desc()).limit(limit)
        ).all()
        return [refund_record(r) for r in rows]

    def pending_count(self) -> int:
        return int(
            self._session.scalar(
                select(func.count())
                .select_from(VendorRefundRow)
                .where(VendorRefundRow.status == RefundStatus.PENDING.value)
            )
            or 0
        )

    def batched(self, refund_id: str, batch_id: str) -> BatchedRefund | None:
        """The refund ``refund_id`` if it is BATCHED in ``batch_id``."""
        row = self._session.scalars(
            select(VendorRefundRow).where(
                VendorRefundRow.refund_id == refund_id,
                VendorRefundRow.batch_id == batch_id,
                VendorRefundRow.status == RefundStatus.BATCHED.value,
            )
        ).first()
        if row is None:
            return None
        return BatchedRefund(
            row_id=row.id,
            refund_id=row.refund_id,
            ecoin_id=row.ecoin_id,
            epoch=int(row.epoch),
            receipt_to_index=row.receipt_to_index,
            amount_minor=int(row.amount_minor),
            currency=row.currency,
        )

    def pending_with_claims(self, *, limit: int) -> list[PendingRefund]:
        """PENDING refunds, oldest first, each with the claim covering its click."""
        rows = self._session.execute(
            select(VendorRefundRow, ClaimStateRow.status, ClaimStateRow.reason)
            .outerjoin(
                ClaimStateRow,
                and_(
                    ClaimStateRow.ecoin_id == VendorRefundRow.ecoin_id,
                    ClaimStateRow.epoch == VendorRefundRow.epoch,
                    ClaimStateRow.from_index < VendorRefundRow.receipt_to_index,
                    ClaimStateRow.to_index >= VendorRefundRow.receipt_to_index,
                ),
            )
            .where(VendorRefundRow.status == RefundStatus.PENDING.value)
            .order_by(VendorRefundRow.id)
            .limit(limit)
        ).all()
        return [
            PendingRefund(
                row_id=refund.id,
                refund_id=refund.refund_id,
                ecoin_id=refund.ecoin_id,
                epoch=int(refund.epoch),
                receipt_to_index=refund.receipt_to_index,
                envelope=refund.refund,
                claim_status=None if status is None else ClaimStatus(status),
                claim_reason=reason,
            )
            for refund, status, reason in rows
        ]

    # -- moves (compare-and-set on the status) -----------------------------------------

    def move(
        self, row_id: int, before: RefundStatus, event: RefundEvent, /, **values: object
    ) -> int:
        """Move one refund in ``before`` on ``event``; how many moved (0 or 1)."""
        return self._move(VendorRefundRow.id == row_id, before, event, values)

    def move_many(
        self,
        row_ids: Sequence[int],
        before: RefundStatus,
        event: RefundEvent,
        /,
        **values: object,
    ) -> int:
        """Move the refunds ``row_ids`` that are in ``before``; how many moved."""
        return self._move(VendorRefundRow.id.in_(list(row_ids)), before, event, values)

    def move_batch(
        self, batch_id: str, before: RefundStatus, event: RefundEvent, /, **values: object
    ) -> int:
        """Move every refund of ``batch_id`` that is in ``before``; how many moved."""
        return self._move(VendorRefundRow.batch_id == batch_id, before, event, values)

    def _move(
        self, where: Any, before: RefundStatus, event: RefundEvent, values: dict[str, object]
    ) -> int:
        after = refund_transition(before, event)
        result = self._session.execute(
            update(VendorRefundRow)
            .where(where, VendorRefundRow.status == before.value)
            .values(status=after.value, **values)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result)
