"""Redemption: batches, claims and their ranges, window credits, vendor refunds,
expiry refunds, flagged readers and disputes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    func,
    select,
    update,
)
from sqlalchemy.orm import Session

from broker.domain import (
    IndexedWord,
)
from broker.storage.cas import rowcount
from broker.storage.tables import (
    ClaimRangeRow,
    ClaimRow,
    CoinRow,
    DisputeRow,
    ExpiryRefundRow,
    FlaggedReaderRow,
    RedemptionBatchRow,
    VendorRefundRow,
    WindowCreditRow,
)

__all__ = ["RedemptionRepo", "StoredClaim", "StoredCredit", "StoredRange"]


@dataclass(frozen=True)
class StoredClaim:
    claim_id: int
    vendor_id: str
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    paid_units: int
    refund_units: int
    void_units: int
    amount_minor: int
    currency: str
    created_at_ms: int
    batch_id: str


@dataclass(frozen=True)
class StoredRange:
    claim_id: int
    vendor_id: str
    ecoin_id: str
    epoch: int
    from_index: int
    to_index: int
    item_id: str
    time_ms: int
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class StoredCredit:
    vendor_id: str
    ecoin_id: str
    epoch: int
    window_top: int
    consumed_index: int
    refund_units: int
    received_at_ms: int
    claim_id: int | None


class RedemptionRepo:
    """Batches, claims, their ranges, window credits and vendor refunds."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def batch(self, vendor_id: str, batch_id: str) -> RedemptionBatchRow | None:
        return self._s.scalars(
            select(RedemptionBatchRow).where(
                RedemptionBatchRow.vendor_id == vendor_id,
                RedemptionBatchRow.batch_id == batch_id,
            )
        ).first()

    def add_batch(self, vendor_id: str, batch_id: str, request_sha256: bytes, now_ms: int) -> int:
        row = RedemptionBatchRow(
            vendor_id=vendor_id,
            batch_id=batch_id,
            request_sha256=request_sha256,
            response=b"",
            created_at_ms=now_ms,
        )
        self._s.add(row)
        self._s.flush()
        return row.id

    def finish_batch(self, batch_row_id: int, response: bytes) -> None:
        self._s.execute(
            update(RedemptionBatchRow)
            .where(RedemptionBatchRow.id == batch_row_id)
            .values(response=response)
            .execution_options(synchronize_session=False)
        )

    def paid_spans(self, ecoin_id: str) -> list[tuple[int, int, int]]:
        """``(epoch, from, to)`` of every accepted claim of the coin."""
        rows = self._s.execute(
            select(ClaimRow.epoch, ClaimRow.from_index, ClaimRow.to_index)
            .where(ClaimRow.ecoin_id == ecoin_id)
            .order_by(ClaimRow.from_index)
        ).all()
        return [(int(e), int(f), int(t)) for e, f, t in rows]

    def overlapping_claims(self, ecoin_id: str, from_index: int, to_index: int) -> list[int]:
        return list(
            self._s.scalars(
                select(ClaimRow.id).where(
                    ClaimRow.ecoin_id == ecoin_id,
                    ClaimRow.from_index < to_index,
                    ClaimRow.to_index > from_index,
                )
            )
        )

    def coins_due_for_refund(self, before_expiry_ms: int, limit: int) -> list[str]:
        """Coins that expired before ``before_expiry_ms`` and were not refunded yet."""
        return list(
            self._s.scalars(
                select(CoinRow.ecoin_id)
                .outerjoin(ExpiryRefundRow, ExpiryRefundRow.ecoin_id == CoinRow.ecoin_id)
                .where(
                    CoinRow.expires_at_ms <= before_expiry_ms, ExpiryRefundRow.ecoin_id.is_(None)
                )
                .order_by(CoinRow.expires_at_ms, CoinRow.ecoin_id)
                .limit(limit)
            )
        )

    def expiry_refund(self, ecoin_id: str) -> ExpiryRefundRow | None:
        return self._s.get(ExpiryRefundRow, ecoin_id)

    def add_expiry_refund(self, row: ExpiryRefundRow) -> None:
        self._s.add(row)
        self._s.flush()

    def claimed_value(self, ecoin_id: str) -> tuple[int, int]:
        """``(claimed amount, netted window-credit units)`` of a coin."""
        claimed = self._s.scalar(
            select(func.coalesce(func.sum(ClaimRow.amount_minor), 0)).where(
                ClaimRow.ecoin_id == ecoin_id
            )
        )
        netted = self._s.scalar(
            select(func.coalesce(func.sum(WindowCreditRow.refund_units), 0)).where(
                WindowCreditRow.ecoin_id == ecoin_id, WindowCreditRow.claim_id.is_not(None)
            )
        )
        return int(claimed or 0), int(netted or 0)

    def flags(self, reader_id: str, *, for_update: bool = False) -> list[FlaggedReaderRow]:
        stmt = select(FlaggedReaderRow).where(FlaggedReaderRow.reader_id == reader_id)
        if for_update:
            stmt = stmt.with_for_update()
        return list(self._s.scalars(stmt))

    def flag(self, reader_id: str, currency: str, owed_minor: int, now_ms: int) -> None:
        """Add ``owed_minor`` to what the reader owes the broker-loss account."""
        row = self._s.scalars(
            select(FlaggedReaderRow)
            .where(FlaggedReaderRow.reader_id == reader_id, FlaggedReaderRow.currency == currency)
            .with_for_update()
        ).first()
        if row is None:
            self._s.add(
                FlaggedReaderRow(
                    reader_id=reader_id,
                    currency=currency,
                    owed_minor=owed_minor,
                    recovered_minor=0,
                    updated_at_ms=now_ms,
                )
            )
        else:
            row.owed_minor += owed_minor
            row.updated_at_ms = now_ms
        self._s.flush()

    def add_dispute(self, row: DisputeRow) -> None:
        self._s.add(row)
        self._s.flush()

    def claimed_words(self, ecoin_id: str) -> list[IndexedWord]:
        rows = self._s.execute(
            select(ClaimRow.to_index, ClaimRow.payword).where(ClaimRow.ecoin_id == ecoin_id)
        ).all()
        return [IndexedWord(int(i), bytes(w)) for i, w in rows]

    def add_claim(self, row: ClaimRow, ranges: Sequence[ClaimRangeRow]) -> int:
        self._s.add(row)
        self._s.flush()
        for r in ranges:
            r.claim_id = row.id
            self._s.add(r)
        self._s.flush()
        return row.id

    def credits(self, ecoin_id: str, epoch: int) -> list[StoredCredit]:
        rows = self._s.scalars(
            select(WindowCreditRow)
            .where(WindowCreditRow.ecoin_id == ecoin_id, WindowCreditRow.epoch == epoch)
            .order_by(WindowCreditRow.window_top)
        )
        return [_credit(row) for row in rows]

    def credits_of(self, ecoin_ids: Sequence[str]) -> list[StoredCredit]:
        """Every kept window credit of the coins (all epochs)."""
        if not ecoin_ids:
            return []
        rows = self._s.scalars(
            select(WindowCreditRow)
            .where(WindowCreditRow.ecoin_id.in_(list(ecoin_ids)))
            .order_by(WindowCreditRow.id)
        )
        return [_credit(row) for row in rows]

    def add_credit(self, row: WindowCreditRow) -> bool:
        """Keep a credit once; False when one with its (coin, epoch, top) is already kept
        (the caller compares the two)."""
        found = self._s.scalars(
            select(WindowCreditRow).where(
                WindowCreditRow.ecoin_id == row.ecoin_id,
                WindowCreditRow.epoch == row.epoch,
                WindowCreditRow.window_top == row.window_top,
            )
        ).first()
        if found is not None:
            return False
        self._s.add(row)
        self._s.flush()
        return True

    def credit_at(self, ecoin_id: str, epoch: int, window_top: int) -> StoredCredit | None:
        row = self._s.scalars(
            select(WindowCreditRow).where(
                WindowCreditRow.ecoin_id == ecoin_id,
                WindowCreditRow.epoch == epoch,
                WindowCreditRow.window_top == window_top,
            )
        ).first()
        return None if row is None else _credit(row)

    def net_credit(self, ecoin_id: str, epoch: int, window_top: int, claim_id: int) -> bool:
        """Compare-and-set: the credit is netted by ``claim_id``; False when it already was."""
        result = self._s.execute(
            update(WindowCreditRow)
            .where(
                WindowCreditRow.ecoin_id == ecoin_id,
                WindowCreditRow.epoch == epoch,
                WindowCreditRow.window_top == window_top,
                WindowCreditRow.claim_id.is_(None),
            )
            .values(claim_id=claim_id)
            .execution_options(synchronize_session=False)
        )
        return rowcount(result) == 1

    def pending_refund_units(self, ecoin_id: str) -> int:
        """Units of the coin's kept window credits (netted or not): on their way back."""
        total = self._s.scalar(
            select(func.coalesce(func.sum(WindowCreditRow.refund_units), 0)).where(
                WindowCreditRow.ecoin_id == ecoin_id
            )
        )
        return int(total or 0)

    def refund(self, vendor_id: str, refund_id: str) -> VendorRefundRow | None:
        return self._s.scalars(
            select(VendorRefundRow).where(
                VendorRefundRow.vendor_id == vendor_id, VendorRefundRow.refund_id == refund_id
            )
        ).first()

    def refunded_for_receipt(self, vendor_id: str, ecoin_id: str, receipt_to_index: int) -> int:
        total = self._s.scalar(
            select(func.coalesce(func.sum(VendorRefundRow.amount_minor), 0)).where(
                VendorRefundRow.vendor_id == vendor_id,
                VendorRefundRow.ecoin_id == ecoin_id,
                VendorRefundRow.receipt_to_index == receipt_to_index,
            )
        )
        return int(total or 0)

    def refunds_of(self, ecoin_ids: Sequence[str]) -> list[VendorRefundRow]:
        if not ecoin_ids:
            return []
        return list(
            self._s.scalars(
                select(VendorRefundRow).where(VendorRefundRow.ecoin_id.in_(list(ecoin_ids)))
            )
        )

    def add_refund(self, row: VendorRefundRow) -> None:
        self._s.add(row)
        self._s.flush()

    def claimed_range(self, vendor_id: str, ecoin_id: str, to_index: int) -> StoredRange | None:
        """The claimed Receipt range of ``vendor_id`` ending at ``to_index``."""
        found = self.ranges(ecoin_ids=[ecoin_id], vendor_id=vendor_id, to_index=to_index)
        return found[0] if found else None

    def ranges(
        self,
        *,
        ecoin_ids: Sequence[str],
        vendor_id: str | None = None,
        to_index: int | None = None,
        before_ms: int | None = None,
        limit: int = 1000,
    ) -> list[StoredRange]:
        """Claimed Receipt ranges of the coins, newest first."""
        if not ecoin_ids:
            return []
        stmt = (
            select(ClaimRangeRow, ClaimRow.vendor_id, ClaimRow.epoch, ClaimRow.currency)
            .join(ClaimRow, ClaimRow.id == ClaimRangeRow.claim_id)
            .where(ClaimRangeRow.ecoin_id.in_(list(ecoin_ids)))
        )
        if vendor_id is not None:
            stmt = stmt.where(ClaimRow.vendor_id == vendor_id)
        if to_index is not None:
            stmt = stmt.where(ClaimRangeRow.to_index == to_index)
        if before_ms is not None:
            stmt = stmt.where(ClaimRangeRow.time_ms < before_ms)
        stmt = stmt.order_by(ClaimRangeRow.time_ms.desc(), ClaimRangeRow.id.desc()).limit(limit)
        return [
            StoredRange(
                claim_id=r.claim_id,
                vendor_id=vendor,
                ecoin_id=r.ecoin_id,
                epoch=int(epoch),
                from_index=r.from_index,
                to_index=r.to_index,
                item_id=r.item_id,
                time_ms=r.time_ms,
                amount_minor=r.amount_minor,
                currency=currency,
            )
            for r, vendor, epoch, currency in self._s.execute(stmt).all()
        ]

    def claims(
        self,
        *,
        vendor_id: str | None = None,
        ecoin_ids: Sequence[str] | None = None,
        before_ms: int | None = None,
        limit: int = 1000,
    ) -> list[StoredClaim]:
        stmt = select(ClaimRow, RedemptionBatchRow.batch_id).join(
            RedemptionBatchRow, RedemptionBatchRow.id == ClaimRow.batch_row_id
        )
        if vendor_id is not None:
            stmt = stmt.where(ClaimRow.vendor_id == vendor_id)
        if ecoin_ids is not None:
            stmt = stmt.where(ClaimRow.ecoin_id.in_(list(ecoin_ids)))
        if before_ms is not None:
            stmt = stmt.where(ClaimRow.created_at_ms < before_ms)
        stmt = stmt.order_by(ClaimRow.created_at_ms.desc(), ClaimRow.id.desc()).limit(limit)
        return [
            StoredClaim(
                claim_id=row.id,
                vendor_id=row.vendor_id,
                ecoin_id=row.ecoin_id,
                epoch=row.epoch,
                from_index=row.from_index,
                to_index=row.to_index,
                paid_units=row.paid_units,
                refund_units=row.refund_units,
                void_units=row.void_units,
                amount_minor=row.amount_minor,
                currency=row.currency,
                created_at_ms=row.created_at_ms,
                batch_id=batch_id,
            )
            for row, batch_id in self._s.execute(stmt).all()
        ]


def _credit(row: WindowCreditRow) -> StoredCredit:
    return StoredCredit(
        vendor_id=row.vendor_id,
        ecoin_id=row.ecoin_id,
        epoch=row.epoch,
        window_top=row.window_top,
        consumed_index=row.consumed_index,
        refund_units=row.refund_units,
        received_at_ms=row.received_at_ms,
        claim_id=row.claim_id,
    )
