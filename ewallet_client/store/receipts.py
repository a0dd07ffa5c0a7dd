"""The receipts aggregate: verified receipts, and the headers not yet seen accepted.

A receipt is kept once per (vendor, coin, to index). An outstanding header
is a range ``(prev, index]`` the wallet put in a header; it is settled (gone)
when a receipt, an opened window or a resync covers it.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from ewallet_client.store.tables import MAX_URL_CHARS, OutstandingRow, ReceiptRow
from netpay.encoding import b64url_encode
from netpay.v1 import statements_pb2 as pb

__all__ = ["ReceiptRepo"]


def _receipt_json(r: ReceiptRow) -> dict[str, object]:
    return {
        "vendor_id": r.vendor_id,
        "ecoin_id": r.ecoin_id,
        "epoch": r.epoch,
        "from_index": r.from_index,
        "to_index": r.to_index,
        "amount_minor": r.amount_minor,
        "currency": r.currency,
        "item_id": r.item_id,
        "time_ms": r.time_ms,
        "url": r.url,
        "receipt": b64url_encode(r.envelope),
    }


class ReceiptRepo:
    """Receipts and outstanding headers."""

    def __init__(self, session: Session) -> None:
        self._s = session

    def add(self, receipt: pb.Receipt, *, envelope: bytes, url: str, now_ms: int) -> bool:
        """Keep a verified receipt; False when the same one is already kept."""
        seen = self._s.scalar(
            select(ReceiptRow.id).where(
                ReceiptRow.vendor_id == receipt.vendor_id,
                ReceiptRow.ecoin_id == receipt.ecoin_id,
                ReceiptRow.to_index == receipt.to_index,
            )
        )
        if seen is not None:
            return False
        self._s.add(
            ReceiptRow(
                vendor_id=receipt.vendor_id,
                ecoin_id=receipt.ecoin_id,
                epoch=receipt.epoch,
                from_index=receipt.from_index,
                to_index=receipt.to_index,
                amount_minor=receipt.amount_minor,
                currency=receipt.currency,
                item_id=receipt.item_id,
                time_ms=receipt.time_ms,
                url=url[:MAX_URL_CHARS],
                envelope=envelope,
                stored_at_ms=now_ms,
            )
        )
        return True

    def all_json(self) -> list[dict[str, object]]:
        """Every receipt, oldest first, as JSON-ready objects."""
        rows = self._s.scalars(select(ReceiptRow).order_by(ReceiptRow.id)).all()
        return [_receipt_json(r) for r in rows]

    def outstanding_words(self, ecoin_id: str) -> int:
        """Words in the coin's headers not seen accepted."""
        total = self._s.scalar(
            select(func.coalesce(func.sum(OutstandingRow.index - OutstandingRow.prev), 0)).where(
                OutstandingRow.ecoin_id == ecoin_id
            )
        )
        return int(total or 0)

    def add_outstanding(
        self, *, ecoin_id: str, prev: int, index: int, vendor_id: str, url: str, now_ms: int
    ) -> None:
        self._s.add(
            OutstandingRow(
                ecoin_id=ecoin_id,
                prev=prev,
                index=index,
                vendor_id=vendor_id,
                url=url[:MAX_URL_CHARS],
                issued_at_ms=now_ms,
            )
        )

    def settle(self, ecoin_id: str, up_to_index: int) -> None:
        """The coin's headers at or below ``up_to_index`` are no longer outstanding."""
        self._s.execute(
            delete(OutstandingRow).where(
                OutstandingRow.ecoin_id == ecoin_id, OutstandingRow.index <= up_to_index
            )
        )
